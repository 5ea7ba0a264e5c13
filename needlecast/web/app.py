"""The one ASGI app (Starlette, served by uvicorn).

    /healthz, /webhooks/sendgrid, /u, /p, /confirm   tracking (`needlecast.web.recipient_pages`)
    /subscribe                                        the hosted signup form (`needlecast.web.signup`)
    /hooks/bookings/<provider>                        signed booking-system webhooks (`needlecast.web.bookings`)
    /api/v1/...                                       the REST API and its OpenAPI document (`needlecast.web.api`)
    /console/...                                      the console (`needlecast.web.console`)
    /metrics                                          Prometheus metrics (`needlecast.web.metrics`)

Contract: `create_app(workspace, engine, senders=...)` builds it. `senders` starts sends the console and the
API ask for (an in-process scheduler under `needlecast serve`, else a sender thread in this process that
takes the store's sender lock). Errors are one page (or, under /api, one JSON shape) without personal data;
no handler blocks the event loop on the database or on files. As it starts, the app works the heavy pages'
figures out in a thread (`readmodels.warm`), so that the first views show them instead of a placeholder.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount

from needlecast.audience.frame_cache import FrameCache
from needlecast.config import Workspace
from needlecast.readmodels import kept, warm
from needlecast.readmodels.kept import KEPT
from needlecast.web.bookings import booking_routes
from needlecast.web.common import (
    RETRY_SECONDS,
    SERVER_ERROR_MESSAGE,
    STATUS_MESSAGES,
    UNAVAILABLE_MESSAGE,
    Pages,
    SecurityHeaders,
    database_unavailable,
)
from needlecast.web.recipient_pages import tracking_routes
from needlecast.web.senders import Senders

log = logging.getLogger("needlecast.web")
PAGES = Path(__file__).parent / "templates"


def create_app(workspace: Workspace, engine: Engine, *, senders: Senders | None = None) -> Starlette:
    from needlecast.web.api import api_app
    from needlecast.web.console import console_app
    from needlecast.web.console.campaign_views import PLAN_DAYS
    from needlecast.web.metrics import metrics_routes
    from needlecast.web.signup import signup_routes

    pages = Pages(PAGES)

    def page_context() -> dict[str, str]:
        """The clinic's details as the file says now (the console's settings take effect without a restart)."""
        clinic = workspace.settings.clinic
        return {"clinic": clinic.name, "address": clinic.postal_address, "lang": clinic.language}

    senders = senders or Senders(workspace, engine)
    # one audience frame for the console's and the API's plans and segments, read again off the request when old
    frames = FrameCache(engine, refresh_in_background=True)
    routes: list[BaseRoute] = [
        *tracking_routes(workspace, engine, pages),
        *signup_routes(workspace, engine, pages),
        *booking_routes(workspace, engine),
        *metrics_routes(engine, workspace.settings.delivery.lease_seconds),
        Mount("/api/v1", app=api_app(workspace, engine, senders, frames)),
        Mount("/console", app=console_app(workspace, engine, senders, frames)),
    ]

    def api_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        # A path under /api that the API's own router never saw (one that its mount cannot match, such as one
        # with a newline in it) still gets the API's one error shape.
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "error")
        body = {"error": {"code": code, "message": message, "field": None}}
        return JSONResponse(body, status_code=status, headers=headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        if request.url.path.startswith("/api/"):
            return api_error(
                status, str(getattr(exc, "detail", "")) or "no such endpoint", getattr(exc, "headers", None)
            )
        message = STATUS_MESSAGES.get(status, SERVER_ERROR_MESSAGE)
        response = pages.response("message.html", status, {**page_context(), "title": "Sorry", "message": message})
        response.headers.update(getattr(exc, "headers", None) or {})  # e.g. Allow on a 405
        return response

    async def server_error(request: Request, exc: Exception) -> Response:
        if database_unavailable(exc):  # busy or unreachable: trying again is the fix (503, Retry-After)
            log.warning("database unavailable: %s", type(exc).__name__)
            status, message, headers = 503, UNAVAILABLE_MESSAGE, {"Retry-After": str(RETRY_SECONDS)}
        else:
            log.error("unhandled error: %s", type(exc).__name__)  # no request data: it may be personal
            status, message, headers = 500, SERVER_ERROR_MESSAGE, {}
        if request.url.path.startswith("/api/"):
            return api_error(status, message, headers)
        response = pages.response("message.html", status, {**page_context(), "title": "Sorry", "message": message})
        response.headers.update(headers)
        return response

    handlers: dict[Any, Any] = {HTTPException: http_error, 500: server_error}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # The heavy figures are worked out in a process of their own while the app runs (`readmodels.kept`:
        # the pages' interpreter only receives them), and warmed as it starts (`readmodels.warm`).
        KEPT.start_processes(kept.WORKERS)
        if warm.ON_START:
            work = lambda: warm.warm_figures(engine, workspace, frames, PLAN_DAYS)  # noqa: E731
            threading.Thread(target=work, name="needlecast-warm-figures", daemon=True).start()
        try:
            yield
        finally:
            KEPT.stop_processes()

    app = Starlette(
        routes=routes, middleware=[Middleware(SecurityHeaders)], exception_handlers=handlers, lifespan=lifespan
    )
    app.state.senders = senders
    return app
