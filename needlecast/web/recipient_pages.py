"""Recipient-facing pages and the SendGrid webhook: unsubscribe, preferences, confirmation, events.

Routes:
    GET  /healthz                 liveness and database check
    POST /webhooks/sendgrid       the signed Event Webhook (2xx only after the commit, 5xx on failure)
    GET  /u/{token}               unsubscribe confirmation page (a GET or HEAD alone changes nothing)
    POST /u/{token}               RFC 8058 one-click unsubscribe: body List-Unsubscribe=One-Click -> 200
    GET  /p/{token}, POST         preference page: topics, pause 30 days, leave everything
    GET  /confirm/{token}         double opt-in: a page with a confirm button (a GET or HEAD changes nothing,
                                  so mail scanners that follow links confirm nobody)
    POST /confirm/{token}         the button: confirms (CSRF field and Origin check, as the preference form)

Safe by default: a body size limit, signed tokens compared in constant time (a forged or truncated one, or
one of an erased person, is a 404), a CSRF field and an Origin check on the preference and confirm forms, no cookies, no
redirects, and error pages and logs without personal data. Database work runs in the thread pool. Links
and forms are relative or built from `[tracking] public_base_url`, so the app works behind a reverse proxy
under any path.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from needlecast import signing
from needlecast.audience import recipient_changes
from needlecast.audience.consent import confirm
from needlecast.audience.signup import CONFIRM_PREFIX, apply_confirmation
from needlecast.audience.suppression import is_erased
from needlecast.campaign.send.guardrails import after_events
from needlecast.config import Workspace, signing_secret
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import BodyTooDeep, EventFormatError, NotFound, TokenInvalid, WebhookRejected
from needlecast.fleet.status import fleet_status
from needlecast.store.helpers import utcnow
from needlecast.tracking.events import parse_sendgrid
from needlecast.tracking.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, ingest, load_public_key
from needlecast.tracking.webhook import verify_signature as verify_webhook
from needlecast.web.common import Pages, read_limited, same_origin, small_form

log = logging.getLogger("needlecast.web")


def webhook_key_text(workspace: Workspace) -> str:
    return os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY", "") or workspace.settings.tracking.webhook_public_key


def webhook_mode(workspace: Workspace) -> str:
    """How the webhook treats SendGrid's events: "signed" (a verification key is set: only signed, fresh
    requests are taken), "outbox" (no key, nothing is really sent: unsigned events are taken, for the demo
    and tests), "unsigned" (no key, taken unsigned because `[tracking] accept_unsigned_events` says so), or
    "refused" (no key: every event is refused with 403, because forged events could settle unknown rows as
    sent or suppress real leads)."""
    if webhook_key_text(workspace):
        return "signed"
    if workspace.settings.delivery.backend == "outbox":
        return "outbox"
    return "unsigned" if workspace.settings.tracking.accept_unsigned_events else "refused"


def tracking_routes(workspace: Workspace, engine: Engine, pages: Pages) -> list[Route]:
    """The recipient-facing routes and the webhook (see the module docstring)."""
    settings = workspace.settings
    tracking = settings.tracking
    secret = signing_secret(required=settings.delivery.backend == "sendgrid")
    key_text = webhook_key_text(workspace)
    webhook_key = load_public_key(key_text) if key_text else None
    mode = webhook_mode(workspace)
    if mode == "refused":
        log.warning("no webhook verification key configured: SendGrid's events are refused until one is set")
    vocabulary = load_vocabulary_for(workspace)
    guard_events = after_events(settings.deliverability)  # a campaign may pause itself on bounces/complaints
    public = urlsplit(tracking.public_base_url)
    page_context = {
        "clinic": settings.clinic.name,
        "address": settings.clinic.postal_address,
        "lang": settings.clinic.language,
    }

    def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return pages.response(name, status, {**page_context, **context})

    def token_of(request: Request, kind: str) -> signing.TokenPayload:
        try:
            return signing.verify(secret, kind, request.path_params["token"])
        except TokenInvalid:
            raise HTTPException(404) from None

    def live_token(request: Request, kind: str) -> signing.TokenPayload:
        """The token's payload; 404 for a forged one, and for one of an erased person (their links die with
        their data). Reads the store: call it in the thread pool."""
        payload = token_of(request, kind)
        with engine.connect() as conn:
            if is_erased(conn, payload.contact_id):
                raise HTTPException(404)
        return payload

    def csrf_for(token: str) -> str:
        return hmac.new(secret, b"csrf|" + token.encode(), hashlib.sha256).hexdigest()[:32]

    def database_answers() -> bool:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def sending() -> dict[str, Any]:
        """Who sends (ids and heartbeat ages only: host names and pids are for `needlecast status`)."""
        status = fleet_status(engine, workspace.settings.delivery.lease_seconds)

        def brief(info: Any) -> dict[str, Any]:
            return {"id": info.id, "heartbeat_age_seconds": info.heartbeat_age_seconds}

        return {
            "leader": brief(status.leader) if status.leader else None,
            "standbys": len(status.standbys),
            "workers": [brief(worker) for worker in status.workers],
            "queue": {"queued": status.queued, "due": status.due},
        }

    async def health(_request: Request) -> Response:
        if not await run_in_threadpool(database_answers):
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", **await run_in_threadpool(sending)})

    async def sendgrid_webhook(request: Request) -> Response:
        body = await read_limited(request, tracking.max_body_bytes)
        if mode == "refused":
            return PlainTextResponse(
                "events must be signed: set the Event Webhook's verification key in needlecast", status_code=403
            )
        if webhook_key is not None:
            try:
                verify_webhook(
                    webhook_key,
                    request.headers.get(SIGNATURE_HEADER),
                    request.headers.get(TIMESTAMP_HEADER),
                    body,
                    time.time(),
                    tracking.webhook_max_age_seconds,
                )
            except WebhookRejected as err:
                log.warning("webhook refused: %s", err)
                return PlainTextResponse("forbidden", status_code=403)
        try:
            parsed = await run_in_threadpool(parse_sendgrid, body)
        except BodyTooDeep:
            return PlainTextResponse("the JSON body is nested too deeply", status_code=400)
        except EventFormatError:
            return PlainTextResponse("expected a JSON array of events", status_code=400)
        try:
            result = await run_in_threadpool(ingest, engine, parsed, guard_events)
        except Exception as err:  # the database failed: SendGrid retries the whole batch
            log.error("webhook: %d events not stored (%s); SendGrid will retry", len(parsed.events), type(err).__name__)
            return PlainTextResponse("not stored, retry later", status_code=503)
        log.info(
            "webhook: %d events stored, %d duplicates, %d rejected, %d suppressions",
            result.stored,
            result.duplicates,
            result.rejected,
            result.suppressed,
        )
        return JSONResponse({"stored": result.stored, "duplicates": result.duplicates, "rejected": result.rejected})

    async def unsubscribe_page(request: Request) -> Response:
        payload = await run_in_threadpool(live_token, request, signing.UNSUBSCRIBE)
        if request.method in ("GET", "HEAD"):  # only the POST of RFC 8058 changes anything
            preferences = f"../p/{request.path_params['token']}"
            return page("unsubscribe.html", title="Unsubscribe", done=False, preferences_url=preferences)
        form = await small_form(request)
        if form.get("List-Unsubscribe") != "One-Click":
            return page(
                "message.html",
                status=400,
                title="Unsubscribe",
                message="This link expects the one-click unsubscribe form.",
            )

        def unsubscribe() -> None:
            with engine.begin() as conn:
                recipient_changes.unsubscribe(conn, payload.contact_id, payload.campaign)

        await run_in_threadpool(unsubscribe)
        return page("unsubscribe.html", title="Unsubscribe", done=True)

    async def preferences_page(request: Request) -> Response:
        payload = await run_in_threadpool(live_token, request, signing.PREFERENCES)
        token = request.path_params["token"]
        saved = ""
        if request.method == "POST":
            form = await small_form(request)
            valid = hmac.compare_digest(str(form.get("csrf", "")), csrf_for(token))
            if not valid or not same_origin(request, {public.netloc}):
                return page(
                    "message.html",
                    status=403,
                    title="Your email preferences",
                    message="This form has expired. Please open the link from your email again.",
                )
            action = form.get("action")
            chosen = [str(c) for c in form.getlist("concern") if c in vocabulary.names]
            saved = await run_in_threadpool(_save_preferences, payload, str(action or ""), chosen)
        contact = await run_in_threadpool(_contact, payload.contact_id)
        if contact is None:
            return page(
                "message.html",
                title="Your email preferences",
                message="We hold no data about you any more, so there is nothing to change.",
            )
        mine = set(filter(None, contact["concerns"].split(";"))) if contact["concern_consent"] else set()
        concerns = [{"name": c.name, "label": c.label, "chosen": c.name in mine} for c in vocabulary.concerns]
        return page(
            "preferences.html",
            title="Your email preferences",
            concerns=concerns,
            csrf=csrf_for(token),
            saved=saved,
        )

    def _save_preferences(payload: signing.TokenPayload, action: str, chosen: list[str]) -> str:
        with engine.begin() as conn:
            if action == "leave":
                recipient_changes.unsubscribe(conn, payload.contact_id, payload.campaign)
                return "You are unsubscribed from everything."
            if action == "pause":
                until = recipient_changes.pause(conn, payload.contact_id)
                return f"Emails are paused until {until:%d %B %Y}."
            recipient_changes.set_concerns(conn, payload.contact_id, chosen)
            return "Your choices are saved."

    def _contact(contact_id: int) -> dict[str, Any] | None:
        with engine.connect() as conn:
            return recipient_changes.contact_by_id(conn, contact_id)

    def _confirm(token: str) -> None:
        with engine.begin() as conn:
            payload = signing.verify(secret, signing.CONFIRM, token)
            if is_erased(conn, payload.contact_id):
                raise NotFound("that confirmation link belongs to a contact who was erased")
            if payload.campaign.startswith(CONFIRM_PREFIX):  # a signup form's request
                request_id = payload.campaign.removeprefix(CONFIRM_PREFIX)
                if not request_id.isdigit():
                    raise NotFound("that confirmation link is not one of ours")
                apply_confirmation(conn, payload.contact_id, int(request_id), utcnow())
            else:
                confirm(conn, token, secret)

    def _confirmable(token: str) -> None:
        """`TokenInvalid` for a bad or expired link, `NotFound` for one of an erased person; else nothing."""
        payload = signing.verify(secret, signing.CONFIRM, token)
        with engine.connect() as conn:
            if is_erased(conn, payload.contact_id):
                raise NotFound("that confirmation link belongs to a contact who was erased")

    async def confirm_page(request: Request) -> Response:
        token = request.path_params["token"]
        title = "Confirm your subscription"
        try:
            if request.method in ("GET", "HEAD"):  # a scanner following the link must not confirm anyone
                await run_in_threadpool(_confirmable, token)
                return page("confirm.html", title=title, csrf=csrf_for(token))
            form = await small_form(request)
            if not hmac.compare_digest(str(form.get("csrf", "")), csrf_for(token)) or not same_origin(
                request, {public.netloc}
            ):
                return page(
                    "message.html",
                    status=403,
                    title=title,
                    message="This form has expired. Please open the link from your email again.",
                )
            await run_in_threadpool(_confirm, token)
        except TokenInvalid:
            return page(
                "message.html", status=404, title=title, message="This confirmation link is not valid or has expired."
            )
        except NotFound:
            raise HTTPException(404) from None
        return page(
            "message.html",
            title="Subscription confirmed",
            message=f"Thank you. You will now receive emails from {settings.clinic.name}.",
        )

    return [
        Route("/healthz", health),
        Route("/webhooks/sendgrid", sendgrid_webhook, methods=["POST"]),
        Route("/u/{token}", unsubscribe_page, methods=["GET", "POST"]),
        Route("/p/{token}", preferences_page, methods=["GET", "POST"]),
        Route("/confirm/{token}", confirm_page, methods=["GET", "POST"]),
    ]
