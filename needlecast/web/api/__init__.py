"""The REST API under /api/v1 (FastAPI): JSON in and out, described by its OpenAPI 3.1 document at
/api/v1/openapi.json.

Contract:
- Every request names an API key (`Authorization: Bearer KEY`): a missing or wrong key is 401, a key without
  the scope an endpoint needs is 403 (the table is `needlecast.accounts.roles.SCOPE_ACTIONS`), and each key
  makes at most `[api] requests_per_minute` requests (429 with `Retry-After`).
- Every error is one JSON shape, `{"error": {"code", "message", "field"}}`, naming the field and the fix; a body
  that is not what the schema says is 422; a body deeper than 32 levels is 400 and one above
  `[api] max_body_bytes` is 413, before it is parsed. No input reaches a 500.
- A write (POST, PUT, DELETE) with an `Idempotency-Key` header is done once: the same key and body again get
  the first answer, replayed; the same key with another body is 422. The answer is stored before it is
  sent; a twin that arrives while the first is being done is 409; a failure frees the key.
- Every change goes through `needlecast.actions` (the same calls as the console and the command line: the
  key's permission checked, the change audited as the key); every figure comes from `needlecast.readmodels`.

Layout: handlers are module-level functions, one module per resource (`contacts` with suppressions,
`campaigns` with segments, `events`, `reports`); what they share (the app's state, the caller, permissions)
is `deps`; the one error shape is `errors`; idempotent replays and body limits are `web.idempotency`.
"""

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from needlecast.config import Workspace
from needlecast.readmodels.contact_pages import contact_vocabulary
from needlecast.readmodels.segments import FrameCache
from needlecast.web.api import campaigns, contacts, errors, events, journeys, reports
from needlecast.web.api.deps import ApiState
from needlecast.web.idempotency import Guard
from needlecast.web.limits import Window
from needlecast.web.senders import Senders


def _with_concerns(document: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The document with this workspace's vocabulary as the only concerns a contact takes (as the server checks:
    the schemas are the same for every clinic, the vocabulary is not)."""
    field = document["components"]["schemas"]["ContactIn"]["properties"]["concerns"]
    for option in field.get("anyOf", [field]):
        if option.get("type") == "array":
            if names:
                option["items"] = {"type": "string", "enum": list(names)}
            else:  # a vocabulary without concerns: an empty enum is not valid JSON Schema
                option["maxItems"] = 0
    return document


def api_app(workspace: Workspace, engine: Engine, senders: Senders, frames: FrameCache | None = None) -> FastAPI:
    """The API, mounted by `web.app` at /api/v1; `frames` is the web app's shared audience frame."""
    app = FastAPI(
        title="needlecast API",
        version="1",
        description="Contacts, suppressions, segments, campaigns, events from the clinic's systems, and reports.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses=errors.ERRORS,
        servers=[{"url": "/api/v1"}],
    )
    app.add_middleware(Guard, engine=engine, limit=workspace.settings.api.max_body_bytes)
    vocabulary = contact_vocabulary(workspace)
    app.state.api = ApiState(
        workspace=workspace,
        engine=engine,
        senders=senders,
        frames=frames or FrameCache(engine),
        vocabulary=vocabulary,
        window=Window(workspace.settings.api.requests_per_minute, 60),
    )
    app.openapi = lambda: _with_concerns(FastAPI.openapi(app), vocabulary.names)  # type: ignore[method-assign]
    errors.install(app)
    for resource in (contacts, campaigns, journeys, events, reports):
        # The routes themselves, not `include_router`'s lazy branch: the 405's `Allow` (`allowed_methods`)
        # and the route tests read `app.routes` as a flat list of routes with their methods.
        app.router.routes.extend(resource.router.routes)
    return app
