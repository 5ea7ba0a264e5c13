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
- Every change goes through `needlecast.actions` or the same library calls as the console and the
  command line, and is audited as the key.
"""

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine, delete, select, update
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from needlecast.accounts import apikeys, audit
from needlecast.accounts.roles import Actor, require
from needlecast.actions import campaigns as campaigns_actions
from needlecast.actions import contacts as contacts_actions
from needlecast.audience.contacts import ConsentChange, ContactUpdate, find_contact, upsert_contact
from needlecast.audience.events import ContactEvent, EventProblem, store_events, validate_event
from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.profile import contact_profile_by_id
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.loader import ID_PATTERN
from needlecast.campaign.overview import campaign_overview, campaign_overviews
from needlecast.campaign.plan.preview import build_plans, summary_rows
from needlecast.campaign.send.state import ACTIVE, CANCELLED, PAUSED
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import (
    AddressErased,
    AuthenticationFailed,
    BodyTooDeep,
    CampaignBlocked,
    CampaignFileError,
    ConfigurationError,
    InvalidAddress,
    InvalidRequest,
    NeedlecastError,
    NotFound,
    PermissionDenied,
    Throttled,
)
from needlecast.store.helpers import insert_new, utcnow
from needlecast.store.schema import contacts, idempotency_keys, suppressions
from needlecast.tracking.events import check_depth
from needlecast.web.api import schemas as s
from needlecast.web.common import allowed_methods
from needlecast.web.limits import Window
from needlecast.web.senders import Senders

log = logging.getLogger("needlecast.api")
WRITES = ("POST", "PUT", "DELETE", "PATCH")
PENDING = 0  # the status of an idempotency key whose first request is still being done
PENDING_SECONDS = 300
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorOut, "description": text}
    for code, text in (
        (400, "Unreadable body"),
        (401, "Missing or wrong API key"),
        (403, "The key lacks the scope"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Body too large"),
        (422, "Invalid request: the field and the fix"),
        (429, "Too many requests: see Retry-After"),
    )
}


def _error(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status, headers=headers
    )


def _field_of(message: str) -> str | None:
    """A library message that starts with "field: ..." names the field (`InvalidRequest("email: ...")`)."""
    head, sep, _ = message.partition(": ")
    return head if sep and head.replace("_", "").isalnum() and len(head) < 40 else None


class Guard:
    """ASGI middleware of the API: body size and depth before parsing, and idempotent replays."""

    def __init__(self, app: ASGIApp, engine: Engine, limit: int) -> None:
        self.app = app
        self.engine = engine
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.limit:
                await _error(413, "too_large", f"the body is larger than {self.limit} bytes")(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        try:
            check_depth(bytes(body))
        except BodyTooDeep as err:
            await _error(400, "too_deep", str(err))(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        key = headers.get("idempotency-key", "")
        replay_key = None
        if scope["method"] in WRITES and key:
            if len(key) > 200:
                await _error(422, "invalid", "Idempotency-Key is longer than 200 characters", "Idempotency-Key")(
                    scope, receive, send
                )
                return
            actor = hashlib.sha256(headers.get("authorization", "").encode()).hexdigest()
            request_hash = hashlib.sha256(f"{scope['method']} {scope['path']}\n".encode() + bytes(body)).hexdigest()
            stored = await run_in_threadpool(self._reserve, actor, key, request_hash)
            if stored is not None:
                await self._answer_taken_key(stored, request_hash)(scope, receive, send)
                return
            replay_key = (actor, key)

        sent = False

        async def replay_body() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        if replay_key is None:
            await self.app(scope, replay_body, send)
            return
        # The answer is held back until it is stored, so a retry that follows the answer always finds it.
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, replay_body, hold)
        finally:
            status = next((m["status"] for m in held if m["type"] == "http.response.start"), 0)
            answer = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            await run_in_threadpool(self._settle, *replay_key, status, answer)
        for message in held:
            await send(message)

    @staticmethod
    def _answer_taken_key(stored: tuple[str, int, str], request_hash: str) -> JSONResponse:
        request_seen, status, answer = stored
        if request_seen != request_hash:
            return _error(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with another request; use a new key for a new request",
                "Idempotency-Key",
            )
        if status == PENDING:
            return _error(
                409,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being done; retry after it has been answered",
                "Idempotency-Key",
                headers={"Retry-After": "1"},
            )
        return JSONResponse(json.loads(answer), status_code=status, headers={"Idempotent-Replayed": "true"})

    def _reserve(self, actor: str, key: str, request_hash: str) -> tuple[str, int, str] | None:
        """Reserve `key` for this request (None), or return what holds it: (request hash, status, answer),
        status PENDING while the first request is being done. A reservation older than `PENDING_SECONDS`
        belongs to a request that died unanswered and is taken over.

        The reservation is one INSERT ... ON CONFLICT DO NOTHING: of concurrent twins exactly one reserves
        the key and the others read what holds it; none fails on the key (nor is logged by the server)."""
        now = utcnow()
        where = (idempotency_keys.c.actor == actor, idempotency_keys.c.key == key)
        reservation = {
            "actor": actor,
            "key": key,
            "request_hash": request_hash,
            "status": PENDING,
            "body": "",
            "created_at": now,
        }
        with self.engine.begin() as conn:
            while True:
                if insert_new(conn, idempotency_keys, reservation, idempotency_keys.c.key) is not None:
                    return None
                row = conn.execute(
                    select(
                        idempotency_keys.c.request_hash,
                        idempotency_keys.c.status,
                        idempotency_keys.c.body,
                        idempotency_keys.c.created_at,
                    )
                    .where(*where)
                    .with_for_update()
                ).first()
                if row is None:
                    continue  # freed meanwhile (its request failed): reserve it again
                stale = row[1] == PENDING and (now - row[3]).total_seconds() > PENDING_SECONDS
                if not stale:
                    return (row[0], int(row[1]), row[2])
                conn.execute(delete(idempotency_keys).where(*where))

    def _settle(self, actor: str, key: str, status: int, answer: bytes) -> None:
        """Keep a success's answer for replays; free the key after a failure so that a retry is done anew."""
        where = (idempotency_keys.c.actor == actor, idempotency_keys.c.key == key)
        with self.engine.begin() as conn:
            if 200 <= status < 300:
                conn.execute(update(idempotency_keys).where(*where).values(status=status, body=answer.decode("utf-8")))
            else:
                conn.execute(delete(idempotency_keys).where(*where))


# A page's cursor is the position after which the next page starts, as unpadded base64url: a contact id as
# 8 bytes (11 characters, the first bit clear, so at most the id column's 2**63 - 1) and a suppression's hash as
# its 32 bytes (43 characters). The patterns say exactly that, so the document describes every cursor the API
# takes and any string that matches one decodes to a position: no other length, no trailing bytes, no number
# the database cannot hold. An empty cursor is the first page.
ID_CURSOR = r"^([A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048])?$"
HASH_CURSOR = r"^([A-Za-z0-9_-]{42}[AEIMQUYcgkosw048])?$"
CURSOR_HELP = "Leave out for the first page; then pass `next_cursor` of the page before, as it was given"


def _encode(position: bytes) -> str:
    return base64.urlsafe_b64encode(position).decode().rstrip("=")


def _decode(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def _id_cursor(contact_id: int) -> str:
    return _encode(contact_id.to_bytes(8, "big"))


def _after_id(cursor: str | None) -> int:
    """The contact id a page starts after (0: the first page), from a cursor `ID_CURSOR` lets through."""
    return int.from_bytes(_decode(cursor), "big") if cursor else 0


def _hash_cursor(email_hash: str) -> str:
    return _encode(bytes.fromhex(email_hash))


def _after_hash(cursor: str | None) -> str:
    """The suppression hash a page starts after ("": the first page), from a cursor `HASH_CURSOR` lets through."""
    return _decode(cursor).hex() if cursor else ""


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


def api_app(workspace: Workspace, engine: Engine, senders: Senders, frames: FrameCache | None = None) -> Any:
    app = FastAPI(
        title="needlecast API",
        version="1",
        description="Contacts, suppressions, segments, campaigns, events from the clinic's systems, and reports.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses=ERRORS,
        servers=[{"url": "/api/v1"}],
    )
    app.add_middleware(Guard, engine=engine, limit=workspace.settings.api.max_body_bytes)
    window = Window(workspace.settings.api.requests_per_minute, 60)
    audience = frames or FrameCache(engine)
    vocabulary = load_vocabulary_for(workspace)
    app.openapi = lambda: _with_concerns(FastAPI.openapi(app), vocabulary.names)  # type: ignore[method-assign]

    # -- errors: one shape ----------------------------------------------------------------------------------

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")  # our validators' own words
        return _error(422, "invalid", message, ".".join(location) or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(app.routes, request.scope)
        return _error(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        # The field is the path parameter that named the missing thing (or the body field the lookup says).
        named = [key for key, value in request.path_params.items() if exc.name and str(value) == exc.name]
        return _error(404, "not_found", str(exc), named[0] if named else exc.field or None)

    @app.exception_handler(NeedlecastError)
    async def library_error(_request: Request, exc: NeedlecastError) -> JSONResponse:
        message = str(exc)
        if isinstance(exc, AuthenticationFailed):
            return _error(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
        if isinstance(exc, PermissionDenied):
            return _error(403, "forbidden", message)
        if isinstance(exc, Throttled):
            return _error(429, "rate_limited", message, headers={"Retry-After": str(max(1, int(exc.retry_after)))})
        if isinstance(exc, CampaignFileError):
            return _error(409, "campaign_file", message, exc.field)
        if isinstance(exc, CampaignBlocked):
            return _error(409, "blocked", message)
        if isinstance(exc, AddressErased):
            return _error(409, "erased", message, "email")
        if isinstance(exc, InvalidRequest | InvalidAddress):
            return _error(
                422, "invalid", message, _field_of(message) or ("email" if isinstance(exc, InvalidAddress) else None)
            )
        return _error(422, "invalid", message)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled API error: %s", type(exc).__name__)  # no request data: it may be personal
        return _error(500, "internal", "something went wrong on our side; please try again later")

    @app.exception_handler(ConfigurationError)
    async def configuration_error(_request: Request, exc: ConfigurationError) -> JSONResponse:
        return _error(503, "not_configured", str(exc))

    # -- who is calling ---------------------------------------------------------------------------------------

    bearer = HTTPBearer(
        auto_error=False, scheme_name="apiKey", description="An API key from `needlecast apikey create`"
    )

    def caller(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Actor:
        if credentials is None or not credentials.credentials.strip():
            raise AuthenticationFailed("send the API key as `Authorization: Bearer KEY` (needlecast apikey create)")
        with engine.begin() as conn:
            actor = apikeys.resolve(conn, credentials.credentials.strip())
        wait = window.hit(f"key:{actor.id}")
        if wait:
            raise Throttled(
                f"more than {workspace.settings.api.requests_per_minute} requests a minute for this key",
                retry_after=wait,
            )
        return actor

    def allowed(action: str) -> Callable[[Actor], Actor]:
        def check(actor: Annotated[Actor, Depends(caller)]) -> Actor:
            require(actor, action)
            return actor

        return check

    ContactId = Annotated[int, FastPath(ge=1, le=2**63 - 1, description="The contact's id")]
    CampaignId = Annotated[str, FastPath(pattern=ID_PATTERN, description="The campaign's id (its file's `id`)")]
    Key = Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Makes a retried write do its work once (the same key and body get the first answer)",
        ),
    ]

    # -- contacts ---------------------------------------------------------------------------------------------

    def contact_out(conn: Any, contact_id: int) -> s.ContactOut:
        p = contact_profile_by_id(conn, contact_id, unmasked=True)
        return s.ContactOut(
            id=p.id,
            email=p.email,
            first_name=p.first_name,
            last_name=p.last_name,
            status=p.status,
            concerns=p.concerns,
            time_zone=p.time_zone,
            lists=p.lists,
            tags=p.tags,
            attributes=p.attributes,
            marketing_consent=p.marketing_consent,
            concern_consent=p.concern_consent,
            suppressed=p.suppressed,
            signed_up_at=p.signed_up_at,
        )

    @app.post(
        "/contacts",
        response_model=s.ContactOut,
        status_code=200,
        tags=["contacts"],
        summary="Create or update a contact by address",
    )
    def upsert(
        body: s.ContactIn, actor: Annotated[Actor, Depends(allowed("contacts.write"))], idempotency_key: Key = None
    ) -> s.ContactOut:
        def consent(change: s.ConsentIn | None) -> ConsentChange | None:
            if change is None:
                return None
            if change.at is not None and change.at.tzinfo is None:
                raise InvalidRequest("at: give the time with a time zone (Z or an offset)")
            return ConsentChange(change.granted, change.source, change.wording_version, change.at)

        update_ = ContactUpdate(
            body.email,
            body.first_name,
            body.last_name,
            tuple(body.concerns) if body.concerns is not None else None,
            body.time_zone,
            tuple(body.lists),
            tuple(body.tags),
            dict(body.attributes),
            consent(body.marketing_consent),
            consent(body.concern_consent),
        )
        with engine.begin() as conn:
            contact_id, created = upsert_contact(conn, update_, vocabulary, utcnow())
            audit.record(conn, actor, "contact.upserted", f"contact:#{contact_id}", created=created)
            return contact_out(conn, contact_id)

    @app.get("/contacts", response_model=s.ContactPage, tags=["contacts"], summary="List contacts, by id")
    def contact_list(
        actor: Annotated[Actor, Depends(allowed("contacts.view_unmasked"))],
        cursor: Annotated[str | None, Query(pattern=ID_CURSOR, description=CURSOR_HELP)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> s.ContactPage:
        after = _after_id(cursor)
        with engine.connect() as conn:
            ids = [
                int(i)
                for i in conn.execute(
                    select(contacts.c.id).where(contacts.c.id > after).order_by(contacts.c.id).limit(limit + 1)
                ).scalars()
            ]
            items = [contact_out(conn, i) for i in ids[:limit]]
        return s.ContactPage(items=items, next_cursor=_id_cursor(ids[limit - 1]) if len(ids) > limit else None)

    @app.get("/contacts/{contact_id:int}", response_model=s.ContactOut, tags=["contacts"], summary="One contact")
    def contact_get(
        contact_id: ContactId, actor: Annotated[Actor, Depends(allowed("contacts.view_unmasked"))]
    ) -> s.ContactOut:
        with engine.connect() as conn:
            return contact_out(conn, contact_id)

    @app.post(
        "/contacts/lookup",
        response_model=s.ContactOut,
        tags=["contacts"],
        summary="Find a contact by address (in the body, so that no address is in a URL)",
    )
    def contact_lookup(
        body: s.LookupIn, actor: Annotated[Actor, Depends(allowed("contacts.view_unmasked"))]
    ) -> s.ContactOut:
        with engine.connect() as conn:
            found = find_contact(conn, body.email)
            if found is None:
                raise NotFound("no contact with that address", what="contact", field="email")
            return contact_out(conn, int(found["id"]))

    @app.delete(
        "/contacts/{contact_id:int}",
        response_model=s.ErasureOut,
        tags=["contacts"],
        summary="Erase a person: their data is deleted, the address stays suppressed",
    )
    def contact_erase(
        contact_id: ContactId, actor: Annotated[Actor, Depends(allowed("contacts.erase"))], idempotency_key: Key = None
    ) -> s.ErasureOut:
        with engine.connect() as conn:
            email = contact_profile_by_id(conn, contact_id, unmasked=True).email
        return s.ErasureOut(erased=contacts_actions.erase_contact(engine, actor, email))

    # -- suppressions -------------------------------------------------------------------------------------------

    @app.post(
        "/suppressions",
        response_model=s.SuppressionAdded,
        tags=["suppressions"],
        summary="Suppress an address: it is never mailed again",
    )
    def suppression_add(
        body: s.SuppressionIn,
        actor: Annotated[Actor, Depends(allowed("contacts.suppress"))],
        idempotency_key: Key = None,
    ) -> s.SuppressionAdded:
        return s.SuppressionAdded(
            suppressed=contacts_actions.suppress_contact(
                engine, actor, body.email, body.reason, source=f"api ({actor.name})"
            )
        )

    @app.get(
        "/suppressions",
        response_model=s.SuppressionPage,
        tags=["suppressions"],
        summary="The suppression list (keyed hashes: the addresses are not kept)",
    )
    def suppression_list(
        actor: Annotated[Actor, Depends(allowed("contacts.view"))],
        cursor: Annotated[str | None, Query(pattern=HASH_CURSOR, description=CURSOR_HELP)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> s.SuppressionPage:
        after = _after_hash(cursor)
        with engine.connect() as conn:
            rows = (
                conn.execute(
                    select(suppressions)
                    .where(suppressions.c.email_hash > after)
                    .order_by(suppressions.c.email_hash)
                    .limit(limit + 1)
                )
                .mappings()
                .all()
            )
        items = [s.SuppressionOut(**dict(r)) for r in rows[:limit]]
        nxt = _hash_cursor(rows[limit - 1]["email_hash"]) if len(rows) > limit else None
        return s.SuppressionPage(items=items, next_cursor=nxt)

    # -- segments and campaigns ------------------------------------------------------------------------------------

    @app.get("/segments", response_model=list[s.SegmentOut], tags=["segments"], summary="Each segment's size")
    def segment_list(actor: Annotated[Actor, Depends(allowed("audiences.view"))]) -> list[s.SegmentOut]:
        from needlecast.audience.segments import load_segments

        defined = load_segments(workspace.audiences_dir / "segments.yaml", vocabulary.names)
        now = datetime.now(UTC)
        with engine.connect() as conn:
            results = [audience.segment(conn, segment, now) for segment in defined.values()]
        out = []
        for segment, result in zip(defined.values(), results, strict=True):
            variants = result.members["variant"].value_counts()
            out.append(
                s.SegmentOut(
                    segment=segment.name,
                    members=result.size,
                    variants={str(k): int(v) for k, v in variants.items()},
                    excluded={k: int(v) for k, v in result.excluded.items()},
                )
            )
        return out

    def campaign_out(item: Any) -> s.CampaignOut:
        return s.CampaignOut(
            id=item.id,
            name=item.name,
            kind=item.kind,
            segment=item.segment,
            file=item.file,
            state=item.state,
            note=item.note,
            counts=item.counts,
            next_send=item.next_send,
            next_send_note=item.next_send_note,
            ab_tests=item.ab_tests,
        )

    @app.get("/campaigns", response_model=list[s.CampaignOut], tags=["campaigns"], summary="Every campaign")
    def campaign_list(actor: Annotated[Actor, Depends(allowed("campaigns.view"))]) -> list[s.CampaignOut]:
        ctx = CampaignContext.load(workspace)
        with engine.connect() as conn:
            return [campaign_out(i) for i in campaign_overviews(ctx, conn, datetime.now(UTC))]

    @app.get(
        "/campaigns/{campaign_id}",
        response_model=s.CampaignOut,
        tags=["campaigns"],
        summary="One campaign with its ledger counts",
    )
    def campaign_get(
        campaign_id: CampaignId, actor: Annotated[Actor, Depends(allowed("campaigns.view"))]
    ) -> s.CampaignOut:
        ctx = CampaignContext.load(workspace)
        with engine.connect() as conn:
            return campaign_out(campaign_overview(ctx, conn, campaign_id, datetime.now(UTC)))

    @app.get(
        "/campaigns/{campaign_id}/plan",
        response_model=s.PlanOut,
        tags=["campaigns"],
        summary="Who gets what and when, and what would stop it",
    )
    def campaign_plan(
        campaign_id: CampaignId,
        actor: Annotated[Actor, Depends(allowed("campaigns.view"))],
        days: Annotated[int, Query(ge=1, le=3650)] = 14,
    ) -> s.PlanOut:
        plan = build_plans(workspace, engine, campaign_id, days, datetime.now(UTC), audience=audience).plans[0]
        rows = [
            s.PlanRow(
                day=str(r["day"]),
                step=str(r["step"]),
                variant=str(r["variant"]),
                arm=str(r["arm"]),
                recipients=int(r["recipients"]),
            )
            for r in summary_rows(plan).to_dict("records")
        ]
        return s.PlanOut(
            id=campaign_id,
            days=days,
            emails=rows,
            new_enrolments=len(plan.new_enrolments),
            excluded={k: int(v) for k, v in plan.excluded.items()},
            deferred={k: int(v) for k, v in plan.deferred.items()},
            notes=plan.notes,
        )

    def status_change(status: str) -> Callable[..., s.CampaignOut]:
        def change(
            campaign_id: CampaignId,
            actor: Annotated[Actor, Depends(allowed("campaigns.schedule"))],
            idempotency_key: Key = None,
        ) -> s.CampaignOut:
            campaigns_actions.set_campaign_status(engine, workspace, actor, campaign_id, status)
            ctx = CampaignContext.load(workspace)
            with engine.connect() as conn:
                return campaign_out(campaign_overview(ctx, conn, campaign_id, datetime.now(UTC)))

        return change

    for verb, status in (("pause", PAUSED), ("resume", ACTIVE), ("cancel", CANCELLED)):
        app.post(
            f"/campaigns/{{campaign_id}}/{verb}",
            response_model=s.CampaignOut,
            tags=["campaigns"],
            summary=f"{verb.capitalize()} a scheduled campaign",
            name=f"campaign_{verb}",
        )(status_change(status))

    # -- events from the clinic's systems -----------------------------------------------------------------------

    @app.post(
        "/events",
        response_model=s.EventsOut,
        tags=["events"],
        summary="Bookings and other events from the clinic's systems, stored once per id",
    )
    def events_add(
        body: s.EventsIn, actor: Annotated[Actor, Depends(allowed("events.write"))], idempotency_key: Key = None
    ) -> s.EventsOut:
        good: list[ContactEvent] = []
        bad: list[EventProblem] = []
        for index, item in enumerate(body.events):
            result = validate_event(item, index)
            if isinstance(result, EventProblem):
                bad.append(result)
            else:
                good.append(result)
        with engine.begin() as conn:
            stored = store_events(conn, good, f"api:{actor.name}", utcnow())
            audit.record(
                conn,
                actor,
                "events.stored",
                "events",
                stored=stored.stored,
                duplicates=stored.duplicates,
                dropped=stored.dropped,
                rejected=len(bad),
            )
        return s.EventsOut(
            stored=stored.stored,
            duplicates=stored.duplicates,
            dropped=stored.dropped,
            rejected=[s.EventProblemOut(index=p.index, field=p.field, message=p.message) for p in bad],
        )

    # -- reports ------------------------------------------------------------------------------------------------

    @app.get(
        "/reports/{campaign_id}",
        response_model=s.ReportOut,
        tags=["reports"],
        summary="A campaign's funnel, A/B test, deliverability health and conversions",
    )
    def report_get(campaign_id: CampaignId, actor: Annotated[Actor, Depends(allowed("reports.view"))]) -> s.ReportOut:
        from needlecast.reports import load_report
        from needlecast.reports.export import records

        ctx = CampaignContext.load(workspace)
        ctx.campaign(campaign_id)
        data = load_report(
            engine,
            campaign_id,
            subjects=ctx.arm_subjects(),
            attribution=workspace.settings.attribution,
            time_zone=workspace.settings.clinic.time_zone,
        )
        return s.ReportOut(
            campaign=campaign_id,
            funnel=records(data.funnel),
            ab_test=records(data.ab),
            health=records(data.health),
            conversions=records(data.conversions),
        )

    return app
