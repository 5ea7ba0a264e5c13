"""The API's idempotent writes and body limits, as ASGI middleware in front of the API's router.

Contract (`Guard(app, engine, limit)`): a body above `limit` bytes is 413 and one deeper than 32 levels is
400, before it is parsed. A write (POST, PUT, DELETE, PATCH) with an `Idempotency-Key` header is done once per
key and caller: the same key and body again get the first answer, replayed (`Idempotent-Replayed: true`); the
same key with another body is 422. The answer is stored before it is sent; a twin that arrives while the first
is being done is 409 with `Retry-After`; a failure (any status outside 2xx) frees the key. Errors are the API's
one JSON shape (`web.api.errors.error`).
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import Engine, delete, select, update
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from needlecast.errors import BodyTooDeep
from needlecast.store.helpers import insert_new, utcnow
from needlecast.store.schema import idempotency_keys
from needlecast.tracking.events import check_depth
from needlecast.web.api.errors import error as _error

WRITES = ("POST", "PUT", "DELETE", "PATCH")
PENDING = 0  # the status of an idempotency key whose first request is still being done
PENDING_SECONDS = 300


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
