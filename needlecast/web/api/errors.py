"""The API's one error shape, `{"error": {"code", "message", "field"}}`, and the handlers that give every
error that shape: the library's errors by kind (401, 403, 404, 409, 422, 429, 503), the schema's 422, the
router's 404 and 405 (with `Allow`), the store busy or unreachable as a 503 with `Retry-After`, and anything
unforeseen as a 500 that names nothing personal.

Contract: `install(app)` registers the handlers; `error(status, code, message, field)` is the response.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import needlecast.web.api.schemas as s
from needlecast.errors import (
    AddressErased,
    AuthenticationFailed,
    CampaignBlocked,
    CampaignFileError,
    ConfigurationError,
    InvalidAddress,
    InvalidRequest,
    NeedlecastError,
    NotFound,
    PermissionDenied,
    Throttled,
)
from needlecast.web.common import RETRY_SECONDS, UNAVAILABLE_MESSAGE, allowed_methods, database_unavailable

log = logging.getLogger("needlecast.api")
# What every endpoint may answer besides its own result (each in the one error shape), for the document.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorOut, "description": text}
    for code, text in (
        (400, "Unreadable body"),
        (401, "Missing or wrong API key"),
        (403, "The key lacks the scope"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Body too large"),
        (422, "Invalid request: the field and the fix"),
        (429, "Too many requests: see Retry-After"),
        (503, "The database is busy or unreachable: try again after Retry-After"),
    )
}


def error(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status, headers=headers
    )


def field_of(message: str) -> str | None:
    """A library message that starts with "field: ..." names the field (`InvalidRequest("email: ...")`)."""
    head, sep, _ = message.partition(": ")
    return head if sep and head.replace("_", "").isalnum() and len(head) < 40 else None


# Pydantic names the member of a union in an error's location ("attributes.plan.function-after[...]"): the
# field is what comes before it.
_TYPE_TAG = re.compile(r"^(str|int|float|bool|constrained-str|function-(after|before|wrap|plain)\[.*\])$")


async def invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
    location = [
        str(part)
        for part in first.get("loc", ())
        if part not in ("body", "query", "path", "header") and not _TYPE_TAG.match(str(part))
    ]
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")  # our validators' own words
    if location[-1:] == ["[key]"]:  # a bad name in a mapping: the mapping is the field (the name may hold NUL)
        location, message = location[:-2], f"a name {message}"
    return error(422, "invalid", message, ".".join(location) or None)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request.app.routes, request.scope)
    return error(exc.status_code, code, str(exc.detail), headers=headers)


async def not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NotFound)
    # The field is the path parameter that named the missing thing (or the body field the lookup says).
    named = [key for key, value in request.path_params.items() if exc.name and str(value) == exc.name]
    return error(404, "not_found", str(exc), named[0] if named else exc.field or None)


async def library_error(_request: Request, exc: Exception) -> JSONResponse:
    message = str(exc)
    if isinstance(exc, AuthenticationFailed):
        return error(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, PermissionDenied):
        return error(403, "forbidden", message)
    if isinstance(exc, Throttled):
        return error(429, "rate_limited", message, headers={"Retry-After": str(max(1, int(exc.retry_after)))})
    if isinstance(exc, CampaignFileError):
        return error(409, "campaign_file", message, exc.field)
    if isinstance(exc, CampaignBlocked):
        return error(409, "blocked", message)
    if isinstance(exc, AddressErased):
        return error(409, "erased", message, "email")
    if isinstance(exc, InvalidRequest | InvalidAddress):
        return error(
            422, "invalid", message, field_of(message) or ("email" if isinstance(exc, InvalidAddress) else None)
        )
    return error(422, "invalid", message)


async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):  # busy or unreachable: trying again is the fix
        log.warning("database unavailable: %s", type(exc).__name__)
        return error(503, "unavailable", UNAVAILABLE_MESSAGE, headers={"Retry-After": str(RETRY_SECONDS)})
    log.error("unhandled API error: %s", type(exc).__name__)  # no request data: it may be personal
    return error(500, "internal", "something went wrong on our side; please try again later")


async def configuration_error(_request: Request, exc: Exception) -> JSONResponse:
    return error(503, "not_configured", str(exc))


def install(app: FastAPI) -> None:
    """Every error of `app` in the one shape (see the module contract)."""
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(NeedlecastError, library_error)
    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(ConfigurationError, configuration_error)
