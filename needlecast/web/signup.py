"""The hosted signup form: `GET /subscribe` shows it, `POST /subscribe` (urlencoded or JSON) takes it.

Contract: a valid submission is stored as it came (`audience.signup.receive`: one INSERT, whatever the
address); the scheduler's `confirmations` job then stores the signup request and sends its confirmation
(`audience.confirmations`: the workspace's `emails/confirm` template, through the configured backend on its
own, never through a campaign or the ledger). Nothing is decided or sent in the request, so the answer is
the same, and takes the same path and time, for a new address, a known one and a suppressed one (which gets
no email and stays suppressed): the form never tells a stranger whether an address is known.
Refused with 429 (and nothing stored): a filled honeypot field, more than `[signup] per_address_per_hour`
requests for an address or `per_ip_per_hour` from a network address; 413 above `max_body_bytes`; 400 naming
the field for a bad value. `form_snippet(workspace, form)` is the plain HTML form to paste into the clinic's own site.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from html import escape
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
from needlecast.store.helpers import hash_key, utcnow
from needlecast.templating.recipient import link_base
from needlecast.tracking.events import check_depth
from needlecast.web.common import Pages, client_address, read_limited
from needlecast.web.limits import Window

log = logging.getLogger("needlecast.web")
HONEYPOT = "website"  # a field people never see and bots fill in


def form_fields(workspace: Workspace) -> dict[str, Any]:
    vocabulary = load_vocabulary_for(workspace)
    return {
        "concerns": [{"name": c.name, "label": c.label} for c in vocabulary.concerns],
        "signup": workspace.settings.signup,
        "honeypot": HONEYPOT,
    }


def form_snippet(workspace: Workspace, form: str = "website") -> str:
    """A plain HTML form (no script) that posts to the hosted endpoint, for the clinic's own pages."""
    fields = form_fields(workspace)
    action = f"{link_base(workspace.settings)}/subscribe"
    signup = workspace.settings.signup
    concerns = "\n".join(
        f'    <label><input type="checkbox" name="concerns" value="{escape(c["name"])}"> {escape(c["label"])}</label>'
        for c in fields["concerns"]
    )
    return f"""<form method="post" action="{escape(action)}" class="needlecast-signup">
  <input type="hidden" name="form" value="{escape(form)}">
  <label>Email address <input type="email" name="email" required autocomplete="email"></label>
  <label>First name <input type="text" name="first_name" autocomplete="given-name"></label>
  <fieldset>
    <legend>What would you like to hear about? (optional)</legend>
{concerns}
  </fieldset>
  <label><input type="checkbox" name="marketing_consent" value="yes" required>
    {escape(signup.marketing_wording)}</label>
  <label><input type="checkbox" name="concern_consent" value="yes">
    {escape(signup.concern_wording)}</label>
  <div style="position:absolute;left:-10000px" aria-hidden="true">
    <label>Leave this field empty <input type="text" name="{HONEYPOT}" tabindex="-1" autocomplete="off"></label>
  </div>
  <button type="submit">Sign up</button>
</form>
"""


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


def signup_routes(workspace: Workspace, engine: Engine, pages: Pages) -> list[Route]:
    settings = workspace.settings
    per_address = Window(settings.signup.per_address_per_hour, 3600)
    per_ip = Window(settings.signup.per_ip_per_hour, 3600)
    page_context = {
        "clinic": settings.clinic.name,
        "address": settings.clinic.postal_address,
        "lang": settings.clinic.language,
    }
    keyed: dict[str, bytes] = {}

    def key() -> bytes:
        if "key" not in keyed:
            with engine.connect() as conn:
                keyed["key"] = hash_key(conn)
        return keyed["key"]

    def hashed(kind: str, value: str) -> str:
        return hmac.new(key(), f"{kind}|{value.strip().lower()}".encode(), hashlib.sha256).hexdigest()

    def answer(request: Request, status: int, message: str, *, json_wanted: bool, retry_after: float = 0) -> Response:
        headers = {"Retry-After": str(max(1, int(retry_after)))} if retry_after else None
        if json_wanted:
            return JSONResponse(
                {"status": "ok" if status < 400 else "refused", "message": message}, status_code=status, headers=headers
            )
        return pages.response(
            "subscribe.html",
            status,
            {
                **page_context,
                **form_fields(workspace),
                "title": "Sign up",
                "message": message,
                "form_name": "website",
                "ok": status < 400,
            },
            headers,
        )

    async def subscribe_get(request: Request) -> Response:
        form_name = request.query_params.get("form", "website")[:40]
        fields = await run_in_threadpool(form_fields, workspace)
        return pages.response(
            "subscribe.html",
            200,
            {**page_context, **fields, "title": "Sign up", "form_name": form_name, "message": "", "ok": False},
        )

    async def subscribe_post(request: Request) -> Response:
        json_wanted = request.headers.get("content-type", "").split(";")[0].strip() == "application/json"
        body = await read_limited(request, settings.signup.max_body_bytes)
        try:
            if json_wanted:
                check_depth(body, 8)
                values = json.loads(body or b"{}")
                if not isinstance(values, dict):
                    raise InvalidRequest("the body must be a JSON object of the form's fields")
            else:
                values = _urlencoded(request, body)
        except (ValueError, BodyTooDeep, InvalidRequest) as err:
            return answer(request, 400, f"This form could not be read: {err}", json_wanted=json_wanted)
        except Exception:
            return answer(request, 400, "This form could not be read.", json_wanted=json_wanted)
        if values.get(HONEYPOT):
            return answer(
                request,
                429,
                "We could not take this sign-up. Please try again later.",
                json_wanted=json_wanted,
                retry_after=3600,
            )
        wait = await run_in_threadpool(lambda: per_ip.hit(hashed("ip", client_address(request))))
        if wait:
            return answer(
                request,
                429,
                "Too many sign-ups from here: please try again later.",
                json_wanted=json_wanted,
                retry_after=wait,
            )
        try:
            address_hash = await run_in_threadpool(hashed, "ip", client_address(request))
            form_values = parse_form(values, load_vocabulary_for(workspace), address_hash)
        except InvalidRequest as err:
            return answer(request, 400, str(err), json_wanted=json_wanted)
        wait = await run_in_threadpool(lambda: per_address.hit(hashed("email", form_values.email)))
        if wait:
            return answer(
                request,
                429,
                "Too many sign-ups for this address: please try again later.",
                json_wanted=json_wanted,
                retry_after=wait,
            )

        def store() -> None:  # one INSERT for any address: what it is and the email are the job's
            with engine.begin() as conn:
                receive(conn, form_values, utcnow())

        await run_in_threadpool(store)
        return answer(
            request,
            200,
            "Thank you. Check your inbox: we sent you a link to confirm your subscription "
            "(if you had already confirmed, there is nothing more to do).",
            json_wanted=json_wanted,
        )

    return [
        Route("/subscribe", subscribe_get, methods=["GET"]),
        Route("/subscribe", subscribe_post, methods=["POST"]),
    ]
