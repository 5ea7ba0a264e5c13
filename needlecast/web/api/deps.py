"""What every API handler shares: the app's state (`ApiState` on `request.app.state.api`), the caller (one
actor per request, from its API key, rate-limited per key), the permission an endpoint needs, and the
annotated path and header parameters the OpenAPI document describes.

Contract: `Depends(allowed("contacts.write"))` resolves the caller (401 without a live key, 429 beyond
`[api] requests_per_minute`) and refuses one without the named action (403) before the handler runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi import Path as FastPath
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from needlecast.config import Workspace
from needlecast.errors import AuthenticationFailed, Throttled
from needlecast.readmodels.campaigns import ID_PATTERN
from needlecast.readmodels.contact_pages import Vocabulary
from needlecast.readmodels.segments import FrameCache
from needlecast.web.actors import Actor, api_key_actor, require
from needlecast.web.limits import Window
from needlecast.web.senders import Senders


@dataclass(frozen=True)
class ApiState:
    """The API's shared state, built once by `api_app`."""

    workspace: Workspace
    engine: Engine
    senders: Senders
    frames: FrameCache  # the web app's shared audience frame, for plans and segment sizes
    vocabulary: Vocabulary  # the workspace's concerns, read when the app was built (as the document says)
    window: Window  # the per-key request counter


def state(request: Request) -> ApiState:
    found: ApiState = request.app.state.api
    return found


bearer = HTTPBearer(auto_error=False, scheme_name="apiKey", description="An API key from `needlecast apikey create`")


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Actor:
    if credentials is None or not credentials.credentials.strip():
        raise AuthenticationFailed("send the API key as `Authorization: Bearer KEY` (needlecast apikey create)")
    api = state(request)
    actor = api_key_actor(api.engine, credentials.credentials.strip())
    wait = api.window.hit(f"key:{actor.id}")
    if wait:
        raise Throttled(
            f"more than {api.workspace.settings.api.requests_per_minute} requests a minute for this key",
            retry_after=wait,
        )
    return actor


def allowed(action: str) -> Callable[[Actor], Actor]:
    """A dependency: the caller, when it may do `action` (see the module contract)."""

    def check(actor: Annotated[Actor, Depends(caller)]) -> Actor:
        require(actor, action)
        return actor

    return check


Api = Annotated[ApiState, Depends(state)]
ContactId = Annotated[int, FastPath(ge=1, le=2**63 - 1, description="The contact's id")]
CampaignId = Annotated[str, FastPath(pattern=ID_PATTERN, description="The campaign's id (its file's `id`)")]
Key = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes a retried write do its work once (the same key and body get the first answer)",
    ),
]
