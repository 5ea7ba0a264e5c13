"""The console's actor: who the request is (one place), whether they may (one table), and CSRF.

Contract: `Console.session(request)` resolves the session cookie to a `Session` (or None); the `page(action)`
decorator wraps every console view (a module-level function; `console_of(request)` is the console): an
anonymous GET is sent to the log-in page (303), an anonymous POST is 403, an actor without `action` gets a
403 page naming it, and every POST must carry the session's CSRF token (and come from this site) or it is
403, before the view runs. Views are plain functions run in the thread pool. The log-in form has its own
CSRF (a random cookie and its HMAC in the form).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from needlecast.config import Workspace
from needlecast.readmodels.segments import FrameCache
from needlecast.web.actors import Actor, Session, console_session
from needlecast.web.common import same_origin, small_form

if TYPE_CHECKING:
    from needlecast.web.senders import Senders

SESSION_COOKIE = "needlecast_session"
LOGIN_COOKIE = "needlecast_login"


@dataclass
class Who:
    actor: Actor
    csrf: str
    form: FormData | None = None


View = Callable[[Request, Who], Response]


class Console:
    """The console's shared state: the workspace, the store, the secret, how to render a page."""

    def __init__(
        self,
        workspace: Workspace,
        engine: Engine,
        secret: bytes,
        render: Callable[..., Response],
        frames: FrameCache | None = None,
        senders: Senders | None = None,
    ) -> None:
        self.workspace = workspace
        self.senders = senders  # starts the sends the console asks for (`web.senders`)
        self.engine = engine
        self.frames = frames or FrameCache(engine)  # the audience for plans and segment sizes
        self.secret = secret
        self.render = render
        console = workspace.settings.console
        self.idle = timedelta(minutes=console.session_idle_minutes)
        self.longest = timedelta(hours=console.session_hours)

    def prefix(self, request: Request) -> str:
        """The console's URL prefix (the proxy's path prefix included)."""
        return str(request.scope.get("root_path", "")).rstrip("/")

    def session(self, request: Request) -> Session | None:
        return console_session(self.engine, request.cookies.get(SESSION_COOKIE, ""), self.idle)

    def same_site(self, request: Request) -> bool:
        return same_origin(request)

    def set_session_cookie(self, response: Response, request: Request, session_id: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            httponly=True,
            samesite="lax",
            path=self.prefix(request) or "/",
            secure=request.url.scheme == "https",
            max_age=int(self.longest.total_seconds()),
        )

    def login_csrf(self, nonce: str) -> str:
        return hmac.new(self.secret, b"login|" + nonce.encode(), hashlib.sha256).hexdigest()

    def new_login_nonce(self) -> str:
        return secrets.token_urlsafe(24)

    def page(
        self, action: str | None, *, upload: bool = False
    ) -> Callable[[View], Callable[[Request], Awaitable[Response]]]:
        """`page(action)` for views that close over this console (see the module-level `page`)."""
        return page(action, upload=upload)

    async def serve(
        self, request: Request, view: View, action: str | None, upload: bool, fields: int = 200
    ) -> Response:
        """Run `view` for the request's actor (see the module contract): log-in, permission and CSRF first."""
        session = await run_in_threadpool(self.session, request)
        if session is None:
            if request.method in ("GET", "HEAD"):
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                return RedirectResponse(f"{self.prefix(request)}/login?next={target}", status_code=303)
            return self.render(
                request,
                None,
                "message.html",
                status=403,
                title="Please log in",
                message="Your session has ended. Log in again, then repeat what you did.",
            )
        if action is not None and not session.actor.may(action):
            return self.render(
                request,
                session,
                "message.html",
                status=403,
                title="Not allowed",
                message=f"Your role ({session.actor.role}) may not do this ({action}).",
            )
        form = None
        if request.method == "POST":
            form = await (request.form(max_files=1, max_fields=20) if upload else small_form(request, fields=fields))
            token = str(form.get("csrf") or "")
            if not hmac.compare_digest(token, session.csrf) or not self.same_site(request):
                return self.render(
                    request,
                    session,
                    "message.html",
                    status=403,
                    title="Form expired",
                    message="This form has expired. Go back, reload the page and try again.",
                )
        return await run_in_threadpool(view, request, Who(session.actor, session.csrf, form))


def console_of(request: Request) -> Console:
    """The console serving `request` (`request.app.state.console`, set by `console_app`)."""
    console: Console = request.app.state.console
    return console


def page(
    action: str | None, *, upload: bool = False, fields: int = 200
) -> Callable[[View], Callable[[Request], Awaitable[Response]]]:
    """Wrap a module-level view `(request, who) -> Response` as a console endpoint: it runs in the thread pool
    for a logged-in actor who may do `action` (None: any logged-in actor), after the CSRF check of a POST
    (see the module contract). The console is the request's app's (`console_of`), never captured. A POST may
    carry at most `fields` form fields (a form of many rows, the journey editor's, asks for more)."""

    def wrap(view: View) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await console_of(request).serve(request, view, action, upload, fields)

        endpoint.__name__ = view.__name__
        return endpoint

    return wrap


def safe_next(console: Console, request: Request, target: str) -> str:
    """A log-in's `next` only ever leads inside the console (never to another site)."""
    prefix = console.prefix(request)
    if target.startswith(prefix + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return prefix + "/"
