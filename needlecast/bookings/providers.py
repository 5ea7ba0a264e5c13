"""Each booking system's webhook: verify its signature, then parse its body into `Booking`s.

Contract:
- `verify_calendly(key, header, body, now, tolerance)`: Calendly's `Calendly-Webhook-Signature: t=<unix>,v1=<hex>`
  is HMAC-SHA256 over `t + "." + body` with the subscription's signing key, and `t` must be within
  `tolerance` seconds of now (a replayed delivery is refused). `verify_acuity(api_key, header, body)`:
  `X-Acuity-Signature` is the base64 HMAC-SHA256 of the body keyed with the API key. `verify_generic(secret,
  header, body)`: the header is the hex HMAC-SHA256 of the body (optionally prefixed `sha256=`). Each raises
  `WebhookRejected` with the reason (never with the body's contents).
- `parse_calendly(body)`, `parse_generic(body, mapping)` and `acuity_booking(notice, details, now)` return
  `Booking`s and `BookingProblem`s: one bad item is reported with its field and never costs the others.
  `acuity_notice(body)` reads Acuity's form (`action`, `id`, `appointmentTypeID`); `fetch_acuity(...)` gets
  the appointment back from Acuity's API (`GET {base}/appointments/{id}`, basic auth user id + API key).

A `Booking` names its event (`kind`: booked, rescheduled, cancelled_booking, attended, no_show; None for a
change that is no event of its own, such as the cancelled half of a Calendly reschedule), the appointment it
is about (`appointment`: provider and the system's id), when that appointment starts, and whether it is still
ahead after this change (`open`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx

from needlecast.addresses import normalise_email
from needlecast.config.bookings import GenericMapping
from needlecast.errors import BookingSystemUnavailable, EventFormatError, InvalidAddress, WebhookRejected

CALENDLY_HEADER = "Calendly-Webhook-Signature"
ACUITY_HEADER = "X-Acuity-Signature"
OPEN_KINDS = ("booked", "rescheduled")


@dataclass(frozen=True)
class Booking:
    source_id: str  # unique per event: a retry or replay of it stores nothing twice
    email: str
    kind: str | None
    occurred_at: datetime
    appointment: str  # "<provider>:<the system's appointment id>"
    starts_at: datetime | None
    open: bool  # the appointment is still to come after this change
    appointment_type: str  # the system's id (or URI) of the appointment type
    type_name: str = ""  # the system's name for it


@dataclass(frozen=True)
class BookingProblem:
    index: int
    field: str
    message: str


class _Bad(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _source_id(provider: str, key: str, suffix: str) -> str:
    """A stable id of at most 200 characters (a long URI is hashed rather than cut, so ids never collide)."""
    text = f"{provider}:{key}:{suffix}"
    if len(text) <= 200:
        return text
    return f"{provider}:{hashlib.sha256(key.encode()).hexdigest()}:{suffix}"[:200]


def _when(value: Any, field: str, *, required: bool = True) -> datetime | None:
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str):
        raise _Bad(field, "is not a date and time like 2026-12-01T09:30:00Z")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(field, "is not a date and time like 2026-12-01T09:30:00Z") from None
    if moment.tzinfo is None:
        raise _Bad(field, "has no time zone: the booking system must send Z or an offset such as +01:00")
    return moment.astimezone(UTC)


def _email(value: Any, field: str = "email") -> str:
    if not isinstance(value, str):
        raise _Bad(field, "is missing: the booking has no client email address")
    try:
        return normalise_email(value)
    except InvalidAddress as err:
        raise _Bad(field, str(err)) from None


def _text(value: Any, field: str, limit: int = 500) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Bad(field, "must be text")
    text = str(value).strip()
    if len(text) > limit or "\x00" in text:
        raise _Bad(field, f"must be at most {limit} characters of text")
    return text


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise EventFormatError("the body is not JSON") from None


# -- signatures --------------------------------------------------------------------------------------------------


def verify_calendly(key: bytes, header: str | None, body: bytes, now: float, tolerance: int) -> None:
    if not header:
        raise WebhookRejected(f"no {CALENDLY_HEADER} header")
    parts = dict(item.strip().split("=", 1) for item in header.split(",") if "=" in item)
    stamp, signature = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isdigit() or not signature:
        raise WebhookRejected(f"{CALENDLY_HEADER} is not t=<time>,v1=<signature>")
    expected = hmac.new(key, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise WebhookRejected("signature does not match")
    if abs(now - int(stamp)) > tolerance:
        raise WebhookRejected("signed time outside the accepted window (replayed, or the clock is wrong)")


def verify_acuity(api_key: bytes, header: str | None, body: bytes) -> None:
    if not header:
        raise WebhookRejected(f"no {ACUITY_HEADER} header")
    expected = base64.b64encode(hmac.new(api_key, body, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(expected, header.strip()):
        raise WebhookRejected("signature does not match")


def verify_generic(secret: bytes, header: str | None, body: bytes) -> None:
    if not header:
        raise WebhookRejected("no signature header")
    given = header.strip().removeprefix("sha256=").lower()
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given):
        raise WebhookRejected("signature does not match")


# -- Calendly ----------------------------------------------------------------------------------------------------


def parse_calendly(body: bytes) -> list[Booking | BookingProblem]:
    """One Calendly delivery (one `invitee.created` or `invitee.canceled`)."""
    raw = _json(body)
    if not isinstance(raw, dict) or not isinstance(raw.get("payload"), dict):
        raise EventFormatError("expected Calendly's object with event and payload")
    try:
        return [_calendly_booking(raw)]
    except _Bad as bad:
        return [BookingProblem(0, bad.field, bad.message)]


def _calendly_booking(raw: dict[str, Any]) -> Booking:
    event = raw.get("event")
    if event not in ("invitee.created", "invitee.canceled"):
        raise _Bad("event", f"'{_text(event, 'event', 64)}' is not a booking event (invitee.created, invitee.canceled)")
    payload = raw["payload"]
    invitee = _text(payload.get("uri"), "payload.uri")
    if not invitee:
        raise _Bad("payload.uri", "is missing: the invitee's URI identifies the appointment")
    scheduled = payload.get("scheduled_event")
    if not isinstance(scheduled, dict):
        raise _Bad("payload.scheduled_event", "is missing")
    starts = _when(scheduled.get("start_time"), "payload.scheduled_event.start_time")
    occurred = _when(raw.get("created_at") or payload.get("updated_at"), "created_at")
    assert occurred is not None
    created = event == "invitee.created"
    if created:
        kind: str | None = "rescheduled" if payload.get("old_invitee") else "booked"
    else:  # the cancelled half of a reschedule is no cancellation: its invitee.created says "rescheduled"
        kind = None if payload.get("rescheduled") is True else "cancelled_booking"
    return Booking(
        source_id=_source_id("calendly", invitee, "created" if created else "canceled"),
        email=_email(payload.get("email"), "payload.email"),
        kind=kind,
        occurred_at=occurred,
        appointment=_source_id("calendly", invitee, "open").removesuffix(":open"),
        starts_at=starts,
        open=created,
        appointment_type=_text(scheduled.get("event_type"), "payload.scheduled_event.event_type"),
        type_name=_text(scheduled.get("name"), "payload.scheduled_event.name"),
    )


# -- Acuity ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcuityNotice:
    action: str
    appointment_id: str
    appointment_type: str


ACUITY_ACTIONS = {"scheduled": "booked", "rescheduled": "rescheduled", "canceled": "cancelled_booking"}


def acuity_notice(body: bytes) -> AcuityNotice:
    """Acuity's form (`action`, `id`, `appointmentTypeID`); `EventFormatError` when it is not one."""
    try:
        form = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise EventFormatError("expected Acuity's form with action, id and appointmentTypeID") from None
    action = form.get("action", [""])[0]
    appointment = form.get("id", [""])[0]
    if not action or not appointment.isdigit() or len(appointment) > 20:
        raise EventFormatError("expected Acuity's form with action, id and appointmentTypeID")
    return AcuityNotice(action, appointment, form.get("appointmentTypeID", [""])[0][:50])


def fetch_acuity(
    base_url: str, user_id: str, api_key: bytes, appointment_id: str, timeout: float
) -> dict[str, Any] | None:
    """The appointment from Acuity's API, or None when Acuity has no such appointment (404).
    `BookingSystemUnavailable` when Acuity cannot be reached or fails (the delivery should be retried)."""
    url = f"{base_url.rstrip('/')}/appointments/{int(appointment_id)}"
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.get(url, auth=(user_id, api_key.decode()), headers={"Accept": "application/json"})
    except httpx.HTTPError as err:
        raise BookingSystemUnavailable(f"Acuity's API could not be reached ({type(err).__name__})") from None
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise BookingSystemUnavailable(f"Acuity's API answered {response.status_code}")
    try:
        details = response.json()
    except ValueError:
        raise BookingSystemUnavailable("Acuity's API answered with something other than JSON") from None
    if not isinstance(details, dict):
        raise BookingSystemUnavailable("Acuity's API answered with something other than an appointment")
    return details


def acuity_booking(notice: AcuityNotice, details: dict[str, Any], now: datetime) -> Booking | BookingProblem:
    """The booking an Acuity notice and its fetched appointment make (Acuity's notice carries no time of its
    own, so the event happened when it arrived). A cancelled appointment marked a no-show is a no_show."""
    kind = ACUITY_ACTIONS[notice.action]
    try:
        starts = _when(details.get("datetime"), "datetime")
        if kind == "cancelled_booking" and details.get("noShow") is True:
            kind = "no_show"
        suffix = {"booked": "booked", "cancelled_booking": "cancelled", "no_show": "no_show"}.get(kind)
        if suffix is None and starts is not None:  # each move to a new time is its own event
            suffix = f"rescheduled:{starts:%Y%m%dT%H%M%SZ}"
        type_id = _text(details.get("appointmentTypeID"), "appointmentTypeID", 50) or notice.appointment_type
        return Booking(
            source_id=_source_id("acuity", notice.appointment_id, suffix or "rescheduled"),
            email=_email(details.get("email")),
            kind=kind,
            occurred_at=now,
            appointment=f"acuity:{notice.appointment_id}",
            starts_at=starts,
            open=kind in OPEN_KINDS and details.get("canceled") is not True,
            appointment_type=type_id,
            type_name=_text(details.get("type"), "type", 200),
        )
    except _Bad as bad:
        return BookingProblem(0, bad.field, bad.message)


# -- a generic JSON system ---------------------------------------------------------------------------------------


def _at(item: Any, path: str) -> Any:
    for part in path.split(".") if path else []:
        if not isinstance(item, dict):
            return None
        item = item.get(part)
    return item


def parse_generic(body: bytes, mapping: GenericMapping) -> list[Booking | BookingProblem]:
    """Every item of a generic system's JSON, through the configured field mapping."""
    raw = _json(body)
    items = _at(raw, mapping.items) if mapping.items else raw
    if isinstance(items, dict) and not mapping.items:
        items = [items]
    if not isinstance(items, list):
        raise EventFormatError(f"expected a list of bookings at '{mapping.items or '(the body)'}'")
    parsed: list[Booking | BookingProblem] = []
    for index, item in enumerate(items):
        try:
            parsed.append(_generic_booking(item, mapping))
        except _Bad as bad:
            parsed.append(BookingProblem(index, bad.field, bad.message))
    return parsed


def _generic_booking(item: Any, mapping: GenericMapping) -> Booking:
    if not isinstance(item, dict):
        raise _Bad("(item)", "must be an object")
    event_id = _text(_at(item, mapping.id), mapping.id, 150)
    if not event_id:
        raise _Bad(mapping.id, "is missing: each booking needs the system's own id, so a retry stores nothing twice")
    word = _text(_at(item, mapping.kind), mapping.kind, 100)
    kind = mapping.kinds.get(word)
    if kind is None:
        known = ", ".join(sorted(mapping.kinds))
        raise _Bad(mapping.kind, f"'{word}' is not one of the words in [bookings.generic.kinds] ({known})")
    occurred = _when(_at(item, mapping.occurred_at), mapping.occurred_at)
    assert occurred is not None
    starts = _when(_at(item, mapping.starts_at), mapping.starts_at, required=False) if mapping.starts_at else None
    appointment = (
        _text(_at(item, mapping.appointment_id), mapping.appointment_id, 150) if mapping.appointment_id else ""
    )
    appointment_type = _text(_at(item, mapping.appointment_type), mapping.appointment_type, 200)
    return Booking(
        source_id=_source_id("generic", event_id, kind),
        email=_email(_at(item, mapping.email), mapping.email),
        kind=kind,
        occurred_at=occurred,
        appointment=f"generic:{appointment or event_id}",
        starts_at=starts,
        open=kind in OPEN_KINDS,
        appointment_type=appointment_type if mapping.appointment_type else "",
    )
