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

Layout: each handler is a module-level function of (`Site`, request); `tracking_routes` builds the `Site`
(the workspace, the store, the secret, the webhook's key) once and binds it to each route.

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
import re
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from needlecast import signing
from needlecast.audience import recipient_changes
from needlecast.audience.consent import confirm
from needlecast.audience.signup import CONFIRM_PREFIX, apply_confirmation
from needlecast.audience.suppression import is_erased
from needlecast.campaign.send.guardrails import after_events
from needlecast.config import Workspace, signing_secret
from needlecast.content.loader import load_vocabulary_for
from needlecast.content.vocabulary import Vocabulary
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


@dataclass(frozen=True)
class Site:
    """What the recipient pages share, built once by `tracking_routes`."""

    workspace: Workspace
    engine: Engine
    pages: Pages
    secret: bytes
    vocabulary: Vocabulary
    mode: str  # see `webhook_mode`
    webhook_key: Any = None  # the Event Webhook's verification key, when set
    page_context: dict[str, str] = field(default_factory=dict)
    guard_events: Any = None  # called with what the webhook applied: a campaign may pause itself on bounces

    @property
    def public_host(self) -> str:
        return urlsplit(self.workspace.settings.tracking.public_base_url).netloc

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        clinic = self.workspace.settings.clinic  # as the file says now: the console's settings take effect at once
        live = {"clinic": clinic.name, "address": clinic.postal_address, "lang": clinic.language}
        return self.pages.response(name, status, {**self.page_context, **live, **context})

    def csrf_for(self, token: str) -> str:
        return hmac.new(self.secret, b"csrf|" + token.encode(), hashlib.sha256).hexdigest()[:32]

    def expired(self, title: str) -> HTMLResponse:
        return self.page(
            "message.html",
            status=403,
            title=title,
            message="This form has expired. Please open the link from your email again.",
        )

    def live_token(self, request: Request, kind: str) -> signing.TokenPayload:
        """The token's payload; 404 for a forged one, and for one of an erased person (their links die with
        their data). Reads the store: call it in the thread pool."""
        try:
            payload = signing.verify(self.secret, kind, request.path_params["token"])
        except TokenInvalid:
            raise HTTPException(404) from None
        with self.engine.connect() as conn:
            if is_erased(conn, payload.contact_id):
                raise HTTPException(404)
        return payload


def _database_answers(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def _sending(site: Site) -> dict[str, Any]:
    """Who sends (ids and heartbeat ages only: host names and pids are for `needlecast status`)."""
    status = fleet_status(site.engine, site.workspace.settings.delivery.lease_seconds)

    def brief(info: Any) -> dict[str, Any]:
        return {"id": info.id, "heartbeat_age_seconds": info.heartbeat_age_seconds}

    return {
        "leader": brief(status.leader) if status.leader else None,
        "standbys": len(status.standbys),
        "workers": [brief(worker) for worker in status.workers],
        "queue": {"queued": status.queued, "due": status.due},
    }


async def health(site: Site, _request: Request) -> Response:
    if not await run_in_threadpool(_database_answers, site.engine):
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", **await run_in_threadpool(_sending, site)})


async def sendgrid_webhook(site: Site, request: Request) -> Response:
    tracking = site.workspace.settings.tracking
    body = await read_limited(request, tracking.max_body_bytes)
    if site.mode == "refused":
        return PlainTextResponse(
            "events must be signed: set the Event Webhook's verification key in needlecast", status_code=403
        )
    if site.webhook_key is not None:
        try:
            verify_webhook(
                site.webhook_key,
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
        result = await run_in_threadpool(ingest, site.engine, parsed, site.guard_events)
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


def _unsubscribe(engine: Engine, payload: signing.TokenPayload) -> None:
    with engine.begin() as conn:
        recipient_changes.unsubscribe(conn, payload.contact_id, payload.campaign)


async def unsubscribe_page(site: Site, request: Request) -> Response:
    payload = await run_in_threadpool(site.live_token, request, signing.UNSUBSCRIBE)
    if request.method in ("GET", "HEAD"):  # only the POST of RFC 8058 changes anything
        preferences = f"../p/{request.path_params['token']}"
        return site.page("unsubscribe.html", title="Unsubscribe", done=False, preferences_url=preferences)
    form = await small_form(request)
    if form.get("List-Unsubscribe") != "One-Click":
        return site.page(
            "message.html",
            status=400,
            title="Unsubscribe",
            message="This link expects the one-click unsubscribe form.",
        )
    await run_in_threadpool(_unsubscribe, site.engine, payload)
    return site.page("unsubscribe.html", title="Unsubscribe", done=True)


def _save_preferences(engine: Engine, payload: signing.TokenPayload, action: str, chosen: list[str]) -> str:
    with engine.begin() as conn:
        if action == "leave":
            recipient_changes.unsubscribe(conn, payload.contact_id, payload.campaign)
            return "You are unsubscribed from everything."
        if action == "pause":
            until = recipient_changes.pause(conn, payload.contact_id)
            return f"Emails are paused until {until:%d %B %Y}."
        recipient_changes.set_concerns(conn, payload.contact_id, chosen)
        return "Your choices are saved."


def _contact(engine: Engine, contact_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        return recipient_changes.contact_by_id(conn, contact_id)


async def preferences_page(site: Site, request: Request) -> Response:
    payload = await run_in_threadpool(site.live_token, request, signing.PREFERENCES)
    token = request.path_params["token"]
    title = "Your email preferences"
    saved = ""
    if request.method == "POST":
        form = await small_form(request)
        valid = hmac.compare_digest(str(form.get("csrf", "")), site.csrf_for(token))
        if not valid or not same_origin(request, {site.public_host}):
            return site.expired(title)
        chosen = [str(c) for c in form.getlist("concern") if c in site.vocabulary.names]
        saved = await run_in_threadpool(_save_preferences, site.engine, payload, str(form.get("action") or ""), chosen)
    contact = await run_in_threadpool(_contact, site.engine, payload.contact_id)
    if contact is None:
        return site.page(
            "message.html", title=title, message="We hold no data about you any more, so there is nothing to change."
        )
    mine = set(filter(None, contact["concerns"].split(";"))) if contact["concern_consent"] else set()
    concerns = [{"name": c.name, "label": c.label, "chosen": c.name in mine} for c in site.vocabulary.concerns]
    return site.page("preferences.html", title=title, concerns=concerns, csrf=site.csrf_for(token), saved=saved)


def _confirm(site: Site, token: str) -> None:
    with site.engine.begin() as conn:
        payload = signing.verify(site.secret, signing.CONFIRM, token)
        if is_erased(conn, payload.contact_id):
            raise NotFound("that confirmation link belongs to a contact who was erased")
        if payload.campaign.startswith(CONFIRM_PREFIX):  # a signup form's request
            request_id = payload.campaign.removeprefix(CONFIRM_PREFIX)
            if not request_id.isdigit():
                raise NotFound("that confirmation link is not one of ours")
            apply_confirmation(conn, payload.contact_id, int(request_id), utcnow())
        else:
            confirm(conn, token, site.secret)


def _confirmable(site: Site, token: str) -> None:
    """`TokenInvalid` for a bad or expired link, `NotFound` for one of an erased person; else nothing."""
    payload = signing.verify(site.secret, signing.CONFIRM, token)
    with site.engine.connect() as conn:
        if is_erased(conn, payload.contact_id):
            raise NotFound("that confirmation link belongs to a contact who was erased")


async def confirm_page(site: Site, request: Request) -> Response:
    token = request.path_params["token"]
    title = "Confirm your subscription"
    try:
        if request.method in ("GET", "HEAD"):  # a scanner following the link must not confirm anyone
            await run_in_threadpool(_confirmable, site, token)
            return site.page("confirm.html", title=title, csrf=site.csrf_for(token))
        form = await small_form(request)
        valid = hmac.compare_digest(str(form.get("csrf", "")), site.csrf_for(token))
        if not valid or not same_origin(request, {site.public_host}):
            return site.expired(title)
        await run_in_threadpool(_confirm, site, token)
    except TokenInvalid:
        return site.page(
            "message.html", status=404, title=title, message="This confirmation link is not valid or has expired."
        )
    except NotFound:
        raise HTTPException(404) from None
    return site.page(
        "message.html",
        title="Subscription confirmed",
        message=f"Thank you. You will now receive emails from {site.workspace.settings.clinic.name}.",
    )


def tracking_routes(workspace: Workspace, engine: Engine, pages: Pages) -> list[Route]:
    """The recipient-facing routes and the webhook (see the module docstring), each bound to one `Site`."""
    settings = workspace.settings
    key_text = webhook_key_text(workspace)
    mode = webhook_mode(workspace)
    if mode == "refused":
        log.warning("no webhook verification key configured: SendGrid's events are refused until one is set")
    site = Site(
        workspace,
        engine,
        pages,
        signing_secret(required=settings.delivery.backend == "sendgrid"),
        load_vocabulary_for(workspace),
        mode,
        load_public_key(key_text) if key_text else None,
        {"clinic": settings.clinic.name, "address": settings.clinic.postal_address, "lang": settings.clinic.language},
        after_events(settings.deliverability),
    )
    return [
        Route("/healthz", partial(health, site)),
        Route("/webhooks/sendgrid", partial(sendgrid_webhook, site), methods=["POST"]),
        Route("/u/{token}", partial(unsubscribe_page, site), methods=["GET", "POST"]),
        Route("/p/{token}", partial(preferences_page, site), methods=["GET", "POST"]),
        Route("/confirm/{token}", partial(confirm_page, site), methods=["GET", "POST"]),
        Route("/images/{name}", partial(workspace_image, site), methods=["GET", "HEAD"]),
    ]


IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,80}\.(png|jpg|gif|webp)")
IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


async def workspace_image(site: Site, request: Request) -> Response:
    """An image of the workspace's `images/` folder (the clinic's logo, an email's images), for the emails:
    public, by a name the console made (no path, no other kind of file), cached for a day."""
    name = str(request.path_params["name"])
    found = IMAGE_NAME.fullmatch(name)
    path = site.workspace.root / "images" / name
    if found is None or not await run_in_threadpool(path.is_file):
        return site.page("message.html", 404, title="Not found", message="There is no such image.")
    headers = {"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"}
    return FileResponse(path, media_type=IMAGE_TYPES[found.group(1)], headers=headers)
