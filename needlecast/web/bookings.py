"""Booking hooks: `POST /hooks/bookings/<provider>` for each provider in `[bookings] providers`.

    POST /hooks/bookings/calendly   Calendly's invitee.created / invitee.canceled (Calendly-Webhook-Signature)
    POST /hooks/bookings/acuity     Acuity's form notice (X-Acuity-Signature); details fetched from its API
    POST /hooks/bookings/generic    any system's JSON through the field mapping (HMAC of the body)

Answers: 200 with what was stored (`stored`, `duplicates`, `dropped`, `rejected` items with their field and
reason, `unknown_types`, `ignored`); 401 for a missing, forged or stale signature (nothing is read or
stored); 404 for a provider that is not on; 400 for a body that is not the provider's format; 413 for a body
over `[bookings] max_body_bytes`; 503 when the store or Acuity's API fails (nothing stored: the provider's
retry brings it again, and a retry stores nothing twice). Logs carry the provider and counts, never an
address or a name. The handler is a module-level function; its state is a `BookingHooks` bound with
`functools.partial`.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from needlecast.bookings.intake import BookingHooks, take, verify
from needlecast.config import Workspace
from needlecast.errors import BookingSystemUnavailable, EventFormatError, WebhookRejected
from needlecast.web.common import read_limited

log = logging.getLogger("needlecast.web.bookings")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def receive_booking(hooks: BookingHooks, request: Request) -> Response:
    """One delivery from a booking system (see the module docstring)."""
    provider = request.path_params["provider"]
    if provider not in hooks.secrets:
        return _error(404, "no booking hook of that name is switched on in [bookings] providers")
    body = await read_limited(request, hooks.settings.max_body_bytes)
    try:
        verify(hooks, provider, request.headers, body, time.time())
    except WebhookRejected as err:
        log.warning("bookings %s: delivery refused: %s", provider, err)
        return _error(401, "the delivery's signature is missing, wrong or too old")
    try:
        taken = await run_in_threadpool(take, hooks, provider, body)
    except EventFormatError as err:
        return _error(400, f"this is not a {provider} delivery: {err}")
    except BookingSystemUnavailable as err:
        log.error("bookings %s: not stored, the booking system's API failed: %s", provider, err)
        return _error(503, "the booking system's API could not be reached; nothing was stored, retry later")
    except Exception as err:  # the database failed: the provider retries, and a retry stores nothing twice
        log.error("bookings %s: not stored (%s)", provider, type(err).__name__)
        return _error(503, "not stored, retry later")
    result = taken.result
    counts: dict[str, Any] = {**result.counts(), "ignored": taken.ignored}
    log.info(
        "bookings %s: %d stored, %d duplicates, %d dropped, %d rejected, %d unknown appointment types %s",
        provider,
        result.stored,
        result.duplicates,
        result.dropped,
        len(result.problems),
        len(result.unknown_types),
        ",".join(result.unknown_types)[:300],
    )
    counts["rejected"] = [{"index": x.index, "field": x.field, "message": x.message} for x in result.problems]
    return JSONResponse(counts)


def booking_routes(workspace: Workspace, engine: Engine) -> list[Route]:
    """The booking hooks; none when `[bookings] providers` is empty. A provider that is on without its secret
    in the environment is a `ConfigurationError` naming the variable, when the app is built."""
    settings = workspace.settings.bookings
    if not settings.providers:
        return []
    hooks = BookingHooks.from_settings(settings, engine, os.environ)
    endpoint = functools.partial(receive_booking, hooks)
    return [Route("/hooks/bookings/{provider}", endpoint, methods=["POST"])]
