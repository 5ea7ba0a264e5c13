"""What every part of the web app shares: security headers, body limits, client addresses, pages.

Contract:
- `SecurityHeaders` sets no-sniff, no-referrer, no-store, a frame policy and a strict Content-Security-Policy
  on every response that does not set its own (the console and the email preview set theirs).
- `read_limited(request, limit)` reads a body of at most `limit` bytes (413 beyond); `small_form` a form.
- `client_address(request)` is the caller's network address (uvicorn resolves a trusted proxy's
  X-Forwarded-For first); it is only ever stored or compared as a keyed hash.
- `Pages(folder, **globals)` renders autoescaped Jinja2 pages from a folder of the package. Every `Pages` of
  one folder in a process shares the compiled templates (`CompiledPages`): a template is compiled once, not
  once per app (compiling the console's pages takes about a second; each test and each CLI command that
  serves a page made an app of its own).
- `STATUS_MESSAGES` says what an HTTP error status means, in words, for a page; `allowed_methods(routes,
  scope)` is a 405's `Allow`: every method the path takes.
- `database_unavailable(exc)`: the error is the store refusing or failing a connection or being busy (the
  server full, down or restarting; SQLite locked); the faces answer 503 with `Retry-After: RETRY_SECONDS` and
  `UNAVAILABLE_MESSAGE`, not a 500, since trying again later is the fix.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import BytecodeCache, Environment, FileSystemLoader, select_autoescape
from jinja2.bccache import Bucket
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STRICT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "content-security-policy": STRICT_CSP,
}

STATUS_MESSAGES = {
    400: "This request could not be understood.",
    403: "This is not allowed.",
    404: "This page does not exist.",
    405: "This page cannot be used that way.",
    413: "The request is too large.",
    429: "Too many requests. Please wait a little and try again.",
}
SERVER_ERROR_MESSAGE = "Something went wrong on our side. Please try again later."
UNAVAILABLE_MESSAGE = "The clinic's database is busy or cannot be reached just now. Please try again in a moment."
RETRY_SECONDS = 5


# SQLite raises its OperationalError for a missing table or a mistake in a statement too (defects: a 500); these
# are the ones that mean the file is busy or cannot be reached.
SQLITE_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "unable to open database file",
    "disk I/O error",
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is the store being unreachable or busy (see the module contract), not a defect: a pool that
    timed out, a connection that failed, PostgreSQL's operational errors (refused, full, shutting down), and of
    SQLite's only those of `SQLITE_UNAVAILABLE`."""
    if isinstance(exc, InterfaceError | PoolTimeout):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if isinstance(exc.orig, sqlite3.OperationalError):
        return any(words in str(exc.orig) for words in SQLITE_UNAVAILABLE)
    return True


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """The `Allow` header of a 405 for the request in `scope`: the methods of every route whose path matches.

    Starlette's router names only the first such route's methods, and FastAPI (like the console, which gives
    a GET page and its POST form separate routes) makes one route per method, so its own header misses some.
    """
    methods: set[str] = set()
    for route in routes:
        declared = getattr(route, "methods", None)
        if declared and route.matches(scope)[0] is not Match.NONE:
            methods |= set(declared)
    return ", ".join(sorted(methods))


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response, unless the response set one itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def _check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413)


async def read_limited(request: Request, limit: int) -> bytes:
    _check_declared_size(request, limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413)
    return bytes(body)


async def small_form(request: Request, *, limit: int = 64 * 1024, fields: int = 200) -> FormData:
    """A form body of at most `limit` bytes and no files (every page's own forms are small)."""
    _check_declared_size(request, limit)
    return await request.form(max_files=0, max_fields=fields, max_part_size=limit)


def same_origin(request: Request, hosts: set[str] | None = None) -> bool:
    """Whether a form was posted from this site's own pages.

    Browsers say so in `Sec-Fetch-Site` (same-origin, or none for a typed-in address). Without that header,
    an `Origin` must name this host (or one of `hosts`); `Origin: null` counts as another site then. A client
    that sends neither (not a browser) passes: the CSRF token, checked separately, still has to match. Pages
    are served with `Referrer-Policy: no-referrer`, under which Chromium posts `Origin: null` even from the
    same page: `Sec-Fetch-Site` is what tells.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    allowed = {request.headers.get("host", ""), *(hosts or set())}
    return urlsplit(origin).netloc in allowed


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def clinic_clock(time_zone: str | Callable[[], str]) -> Callable[..., str]:
    """A page filter: an instant (aware, or naive UTC as the store keeps it) on the clinic's clock, with its
    zone's abbreviation: `{{ moment|clinic_time }}` -> "15 Jan 2030, 09:00 GMT"; "–" for None. `time_zone` is
    a zone's name, or a callable read at each use (the console's: a zone changed in the settings is in force
    on the next page, without a restart)."""
    zone_name = time_zone if callable(time_zone) else (lambda: time_zone)

    def clinic_time(value: datetime | None, with_time: bool = True) -> str:
        if value is None:
            return "–"
        zone = ZoneInfo(zone_name())
        local = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone)
        day = f"{local.day} {local.strftime('%b %Y')}"
        return f"{day}, {local.strftime('%H:%M')} {local.tzname()}" if with_time else day

    return clinic_time


class CompiledPages(BytecodeCache):
    """The compiled code of a folder's templates, kept in memory for the process. Jinja2 checks each template's
    source against the checksum it was compiled from, so an edited template is compiled again."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        code = bucket.bytecode_to_string()
        with self._lock:
            self._code[bucket.key] = code


# One per folder: every `Pages` of a folder is built with the same options, so the same compiled code.
_COMPILED: dict[Path, CompiledPages] = {}
_COMPILED_LOCK = threading.Lock()


def compiled_pages(folder: Path) -> CompiledPages:
    """The process's compiled templates of `folder`."""
    with _COMPILED_LOCK:
        return _COMPILED.setdefault(folder.resolve(), CompiledPages())


class Pages:
    """Autoescaped Jinja2 pages from `folder`, with `globals` in every page."""

    def __init__(self, folder: Path, **globals_: Any) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(folder)),
            autoescape=select_autoescape(["html"]),
            bytecode_cache=compiled_pages(folder),
        )
        self.env.globals.update(globals_)

    def render(self, page: str, /, **context: Any) -> str:
        """`page` rendered with `context` (any key, `name` included)."""
        return self.env.get_template(page).render(**context)

    def response(
        self,
        name: str,
        status: int = 200,
        context: Mapping[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        return HTMLResponse(self.render(name, **(context or {})), status_code=status, headers=headers)
