"""The console's error pages: one exception handler per kind of problem, so no view catches its own.

Contract: `handlers(console, routes)` is the console app's `exception_handlers`:
- `NotFound` (raised by every lookup: a campaign, contact, step, template, import that does not exist) and a
  path no route takes are 404: the console's page saying in plain words what was not found, with a link back
  to the list it belongs to (chosen by the path's first part). The exception's message is not shown: it is
  written for the command line and may name files or commands.
- `InvalidRequest` is 400, its message shown (views raise it with words meant for the page).
- Any other HTTP error is its status with the page's sentence for it; a 405 names in `Allow` every method
  the path takes.
- An unexpected error (a bug) is the console's 500 page, whole, rather than Starlette's bare text; only its
  type is logged (the request may carry personal data).
Each page is drawn for the request's session (its menu), or without one before log-in or after a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from needlecast.errors import InvalidRequest, NotFound
from needlecast.web.common import (
    RETRY_SECONDS,
    SERVER_ERROR_MESSAGE,
    STATUS_MESSAGES,
    UNAVAILABLE_MESSAGE,
    allowed_methods,
    database_unavailable,
)
from needlecast.web.console.auth import Console

Handler = Callable[[Request, Exception], Awaitable[Response]]
log = logging.getLogger("needlecast.web")

# The first part of a console path -> the list its objects belong to, and its name in "Back to ...".
LISTS = {
    "campaigns": ("/campaigns", "the campaigns"),
    "reports": ("/reports", "the send reports"),
    "imports": ("/audiences", "the audiences"),
    "audiences": ("/audiences", "the audiences"),
    "contacts": ("/contacts", "the contacts"),
    "templates": ("/templates", "the email templates"),
    "email-builder": ("/templates", "the email templates"),
    "users": ("/users", "the console accounts"),
    "audit": ("/audit", "the audit log"),
}
HOME = ("/", "the home page")  # a path of no list: the dashboard, named as what it is
# What was not found (`NotFound.what`) -> the sentence that says so; {name} is the id asked for.
SENTENCES = {
    "campaign": "There is no campaign “{name}”. It may have been renamed or deleted.",
    "contact": "There is no contact #{name}. If this person was erased, their data is gone for good.",
    "step": "This campaign has no email “{name}”.",
    "email template": "There is no email template “{name}”.",
    "import": "This import is not known here: the console shows an import's progress only until it restarts. "
    "The latest imports are listed on the Audiences page.",
    "rejected rows": "This import rejected no rows, so there is no file of rejected rows to download.",
    "download": "A report cannot be downloaded as “{name}”: choose CSV, Excel or web page on the report.",
    "action": "There is nothing called “{name}” to do here.",
}
UNKNOWN_PAGE = "There is no page at this address. The link may be mistyped, or what it showed was removed."
LONGEST_NAME = 80


def _section(console: Console, request: Request) -> str:
    path = request.url.path.removeprefix(console.prefix(request))
    return path.strip("/").split("/", 1)[0]


def not_found_sentence(exc: NotFound | None) -> tuple[str, str]:
    """(title, sentence) of the 404 page for `exc` (None: no route takes the path)."""
    if exc is None or not exc.what:
        return "Page not found", UNKNOWN_PAGE
    name = exc.name if len(exc.name) <= LONGEST_NAME else exc.name[: LONGEST_NAME - 1] + "…"
    template = SENTENCES.get(exc.what, "There is no {what} “{name}”.")
    return f"{exc.what.capitalize()} not found", template.format(what=exc.what, name=name)


def handlers(console: Console, routes: Callable[[], Iterable[BaseRoute]]) -> dict[Any, Handler]:
    """The console app's exception handlers; `routes` gives the app's routes (for a 405's `Allow`)."""

    async def page(
        request: Request, status: int, template: str, headers: dict[str, str] | None = None, **context: Any
    ) -> Response:
        session = await run_in_threadpool(console.session, request)
        response = console.render(request, session, template, status=status, **context)
        response.headers.update(headers or {})
        return response

    async def not_found(request: Request, exc: Exception) -> Response:
        title, sentence = not_found_sentence(exc if isinstance(exc, NotFound) else None)
        back, label = LISTS.get(_section(console, request), HOME)
        return await page(
            request,
            404,
            "not_found.html",
            title=title,
            message=sentence,
            back=console.prefix(request) + back,
            back_label=label,
        )

    async def invalid(request: Request, exc: Exception) -> Response:
        return await page(request, 400, "message.html", title="This cannot be done", message=str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return await not_found(request, exc)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["allow"] = allowed_methods(routes(), request.scope)
        message = STATUS_MESSAGES.get(exc.status_code, SERVER_ERROR_MESSAGE)
        return await page(request, exc.status_code, "message.html", headers, title="Sorry", message=message)

    async def server_error(request: Request, exc: Exception) -> Response:
        # No session lookup: the store may be what failed.
        if database_unavailable(exc):  # busy or unreachable: trying again is the fix
            log.warning("database unavailable: %s", type(exc).__name__)
            response = console.render(
                request, None, "message.html", status=503, title="Sorry", message=UNAVAILABLE_MESSAGE
            )
            response.headers["Retry-After"] = str(RETRY_SECONDS)
            return response
        log.error("unhandled console error: %s", type(exc).__name__)
        return console.render(request, None, "message.html", status=500, title="Sorry", message=SERVER_ERROR_MESSAGE)

    return {NotFound: not_found, InvalidRequest: invalid, HTTPException: http_error, Exception: server_error}
