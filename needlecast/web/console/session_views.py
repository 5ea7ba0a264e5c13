"""Logging in and out of the console.

Repeated failures for an account or from an address are slowed (`[console] login_slow_after`,
`login_slow_seconds`) and then refused for a while with 429 and `Retry-After` (`login_refuse_after`
failures within 15 minutes); the page says so. A wrong address and a wrong password get the same answer.
"""

from __future__ import annotations

import hmac
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from needlecast.accounts import sessions, throttle
from needlecast.accounts.roles import Actor
from needlecast.accounts.users import authenticate
from needlecast.errors import AuthenticationFailed, Throttled
from needlecast.store.helpers import utcnow
from needlecast.web.common import client_address, small_form
from needlecast.web.console.auth import LOGIN_COOKIE, SESSION_COOKIE, Console, Who, safe_next


def routes(console: Console) -> list[Route]:
    settings = console.workspace.settings.console
    policy = throttle.Policy(
        slow_after=settings.login_slow_after,
        slow_seconds=settings.login_slow_seconds,
        refuse_after=settings.login_refuse_after,
    )

    def login_page(
        request: Request,
        *,
        status: int = 200,
        error: str = "",
        email: str = "",
        next_: str = "",
        headers: dict[str, str] | None = None,
    ) -> Response:
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
        session = await run_in_threadpool(console.session, request)
        if session is not None:
            return RedirectResponse(console.prefix(request) + "/", status_code=303)
        return login_page(request)

    def attempt(email: str, password: str, address: str) -> Actor:
        keys = [throttle.key(console.secret, "account", email), throttle.key(console.secret, "address", address)]
        with console.engine.begin() as conn:
            pause = throttle.check(conn, keys, utcnow(), policy)
        if pause:
            time.sleep(pause)  # in the thread pool: this request waits, the console does not
        try:
            with console.engine.begin() as conn:
                actor = authenticate(conn, email, password)
                throttle.note(conn, keys, True, utcnow())
                return actor
        except AuthenticationFailed:
            with console.engine.begin() as conn:
                throttle.note(conn, keys, False, utcnow())
            raise

    async def login_post(request: Request) -> Response:
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
            actor = await run_in_threadpool(attempt, email, password, client_address(request))
        except Throttled as err:
            return login_page(
                request,
                status=429,
                error=str(err),
                email=email,
                next_=next_,
                headers={"Retry-After": str(int(err.retry_after))},
            )
        except AuthenticationFailed as err:
            return login_page(request, status=401, error=str(err), email=email, next_=next_)

        def begin() -> str:
            with console.engine.begin() as conn:
                session_id, _csrf = sessions.start(conn, actor, utcnow(), console.longest)
            return session_id

        session_id = await run_in_threadpool(begin)
        target = safe_next(console, request, str(form.get("next") or ""))
        response = RedirectResponse(target, status_code=303)
        console.set_session_cookie(response, request, session_id)
        response.delete_cookie(LOGIN_COOKIE, path=console.prefix(request) or "/")
        return response

    @console.page(None)
    def logout(request: Request, who: Who) -> Response:
        with console.engine.begin() as conn:
            sessions.end(conn, request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse(console.prefix(request) + "/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=console.prefix(request) or "/")
        return response

    return [
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
