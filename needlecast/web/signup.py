"""The hosted signup form: `GET /subscribe` shows it, `POST /subscribe` (urlencoded or JSON) takes it.

Contract: a valid submission is stored as it came (`audience.signup.receive`: one INSERT, whatever the
address); the scheduler's `confirmations` job then stores the signup request and sends its confirmation
(`audience.confirmations`: the workspace's `emails/confirm` template, through the configured backend on its
own, never through a campaign or the ledger). Nothing is decided or sent in the request, so the answer is
the same, and takes the same path and time, for a new address, a known one and a suppressed one (which gets
no email and stays suppressed): the form never tells a stranger whether an address is known.
Refused with 429 (and nothing stored): a filled honeypot field, more than `[signup] per_address_per_hour`
requests for an address or `per_ip_per_hour` from a network address; 413 above `max_body_bytes`; 400 naming
the field for a bad value. The form's fields and the snippet to paste into the clinic's own site are a read
model (`readmodels.signup_form`). The handlers are module-level functions of (`SignupSite`, request), bound
once by `signup_routes`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from needlecast.audience.signup import parse_form, receive
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import BodyTooDeep, InvalidRequest
from needlecast.readmodels.signup_form import HONEYPOT, form_fields
from needlecast.store.helpers import hash_key, utcnow
from needlecast.tracking.events import check_depth
from needlecast.web.common import Pages, client_address, read_limited
from needlecast.web.limits import Window

log = logging.getLogger("needlecast.web")


def _urlencoded(request: Request, body: bytes) -> dict[str, Any]:
    """The fields of an HTML form's default encoding (concerns as a list). `InvalidRequest` for another."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise InvalidRequest("send the form urlencoded (an HTML form's default) or as JSON")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=60, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidRequest("the form is not UTF-8") from None
    values: dict[str, Any] = {}
    for name, value in pairs:
        if name == "concerns":
            values.setdefault("concerns", []).append(value)
        else:
            values.setdefault(name, value)
    return values


@dataclass
class SignupSite:
    """What the signup handlers share: the workspace, the store, the pages and the two rate windows."""

    workspace: Workspace
    engine: Engine
    pages: Pages
    per_address: Window
    per_ip: Window
    _key: bytes = b""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hashed(self, kind: str, value: str) -> str:
        """A keyed hash of an address (email or network) for the rate windows: the store's key, read once."""
        with self._lock:
            if not self._key:
                with self.engine.connect() as conn:
                    self._key = hash_key(conn)
        return hmac.new(self._key, f"{kind}|{value.strip().lower()}".encode(), hashlib.sha256).hexdigest()

    @property
    def page_context(self) -> dict[str, str]:
        clinic = self.workspace.settings.clinic
        return {"clinic": clinic.name, "address": clinic.postal_address, "lang": clinic.language}

    def answer(self, status: int, message: str, *, json_wanted: bool, retry_after: float = 0) -> Response:
        headers = {"Retry-After": str(max(1, int(retry_after)))} if retry_after else None
        if json_wanted:
            outcome = {"status": "ok" if status < 400 else "refused", "message": message}
            return JSONResponse(outcome, status_code=status, headers=headers)
        context = {
            **self.page_context,
            **form_fields(self.workspace),
            "title": "Sign up",
            "message": message,
            "form_name": "website",
            "ok": status < 400,
        }
        return self.pages.response("subscribe.html", status, context, headers)


async def subscribe_get(site: SignupSite, request: Request) -> Response:
    form_name = request.query_params.get("form", "website")[:40]
    fields = await run_in_threadpool(form_fields, site.workspace)
    context = {**site.page_context, **fields, "title": "Sign up", "form_name": form_name, "message": "", "ok": False}
    return site.pages.response("subscribe.html", 200, context)


def _values(request: Request, body: bytes, json_wanted: bool) -> dict[str, Any]:
    """The submitted fields, urlencoded or JSON; `ValueError`, `BodyTooDeep` or `InvalidRequest` if unreadable."""
    if not json_wanted:
        return _urlencoded(request, body)
    check_depth(body, 8)
    values = json.loads(body or b"{}")
    if not isinstance(values, dict):
        raise InvalidRequest("the body must be a JSON object of the form's fields")
    return values


def _store(
    engine: Engine, form_values: Any
) -> None:  # one INSERT for any address: what it is and the email are the job's
    with engine.begin() as conn:
        receive(conn, form_values, utcnow())


async def subscribe_post(site: SignupSite, request: Request) -> Response:
    json_wanted = request.headers.get("content-type", "").split(";")[0].strip() == "application/json"
    body = await read_limited(request, site.workspace.settings.signup.max_body_bytes)
    try:
        values = _values(request, body, json_wanted)
    except (ValueError, BodyTooDeep, InvalidRequest) as err:
        return site.answer(400, f"This form could not be read: {err}", json_wanted=json_wanted)
    except Exception:
        return site.answer(400, "This form could not be read.", json_wanted=json_wanted)
    if values.get(HONEYPOT):
        refused = "We could not take this sign-up. Please try again later."
        return site.answer(429, refused, json_wanted=json_wanted, retry_after=3600)
    address_hash = await run_in_threadpool(site.hashed, "ip", client_address(request))
    wait = site.per_ip.hit(address_hash)
    if wait:
        refused = "Too many sign-ups from here: please try again later."
        return site.answer(429, refused, json_wanted=json_wanted, retry_after=wait)
    try:
        form_values = parse_form(values, load_vocabulary_for(site.workspace), address_hash)
    except InvalidRequest as err:
        return site.answer(400, str(err), json_wanted=json_wanted)
    wait = site.per_address.hit(await run_in_threadpool(site.hashed, "email", form_values.email))
    if wait:
        refused = "Too many sign-ups for this address: please try again later."
        return site.answer(429, refused, json_wanted=json_wanted, retry_after=wait)
    await run_in_threadpool(_store, site.engine, form_values)
    return site.answer(
        200,
        "Thank you. Check your inbox: we sent you a link to confirm your subscription "
        "(if you had already confirmed, there is nothing more to do).",
        json_wanted=json_wanted,
    )


def signup_routes(workspace: Workspace, engine: Engine, pages: Pages) -> list[Route]:
    """`GET /subscribe` and `POST /subscribe` (see the module contract), bound to one `SignupSite`."""
    signup = workspace.settings.signup
    site = SignupSite(
        workspace, engine, pages, Window(signup.per_address_per_hour, 3600), Window(signup.per_ip_per_hour, 3600)
    )
    return [
        Route("/subscribe", partial(subscribe_get, site), methods=["GET"]),
        Route("/subscribe", partial(subscribe_post, site), methods=["POST"]),
    ]
