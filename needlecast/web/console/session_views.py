"""Logging in and out of the console (`web.actors.log_in`: the throttle, the check, the session, the audit).

Too many attempts for an account from an address (`[console] login_refuse_after` within 15 minutes), or from
an address for any accounts (`login_address_refuse_after`), are refused for the rest of the 15 minutes with
429 and `Retry-After`; attempts on an account from addresses that never logged in to it are paced
(`login_slow_after`, `login_slow_seconds`, `login_slow_max_seconds`): 429 with the seconds to wait. The page
says so. A wrong address and a wrong password get the same answer.
"""

from __future__ import annotations

import hmac
import math

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from needlecast.errors import AuthenticationFailed, Throttled
from needlecast.web.actors import log_in, log_out
from needlecast.web.common import client_address, small_form
from needlecast.web.console.auth import LOGIN_COOKIE, SESSION_COOKIE, Who, console_of, page, safe_next


def login_page(
    request: Request,
    *,
    status: int = 200,
    error: str = "",
    email: str = "",
    next_: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    """The log-in form, with a fresh (or the kept) log-in nonce in its cookie and its CSRF in the form."""
    console = console_of(request)
    nonce = request.cookies.get(LOGIN_COOKIE) or console.new_login_nonce()
    response = console.render(
        request,
        None,
        "login.html",
        status=status,
        title="Log in",
        login_csrf=console.login_csrf(nonce),
        error=error,
        email=email,
        next=next_ or request.query_params.get("next", ""),
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        httponly=True,
        samesite="strict",
        path=console.prefix(request) or "/",
        secure=request.url.scheme == "https",
        max_age=3600,
    )
    response.headers.update(headers or {})
    return response


async def login_get(request: Request) -> Response:
    console = console_of(request)
    session = await run_in_threadpool(console.session, request)
    if session is not None:
        return RedirectResponse(console.prefix(request) + "/", status_code=303)
    return login_page(request)


async def login_post(request: Request) -> Response:
    console = console_of(request)
    form = await small_form(request, limit=8 * 1024, fields=10)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if (
        not nonce
        or not hmac.compare_digest(str(form.get("csrf") or ""), console.login_csrf(nonce))
        or not console.same_site(request)
    ):
        return login_page(request, status=403, error="This form has expired: please try again.")
    email, password = str(form.get("email") or "")[:320], str(form.get("password") or "")[:1000]
    next_ = str(form.get("next") or "")[:500]
    try:
        address = client_address(request)
        settings = console.workspace.settings.console
        session_id = await run_in_threadpool(log_in, console.engine, console.secret, settings, email, password, address)
    except Throttled as err:
        wait = {"Retry-After": str(math.ceil(err.retry_after))}
        return login_page(request, status=429, error=str(err), email=email, next_=next_, headers=wait)
    except AuthenticationFailed as err:
        return login_page(request, status=401, error=str(err), email=email, next_=next_)

    target = safe_next(console, request, str(form.get("next") or ""))
    response = RedirectResponse(target, status_code=303)
    console.set_session_cookie(response, request, session_id)
    response.delete_cookie(LOGIN_COOKIE, path=console.prefix(request) or "/")
    return response


@page(None)
def logout(request: Request, who: Who) -> Response:
    console = console_of(request)
    log_out(console.engine, who.actor, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse(console.prefix(request) + "/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=console.prefix(request) or "/")
    return response


ROUTES = [
    Route("/login", login_get, methods=["GET"]),
    Route("/login", login_post, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
