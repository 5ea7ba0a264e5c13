"""One normalised event type for what the provider reports, parsed from SendGrid's Event Webhook.

Kinds: accepted (processed), delivered, deferred, bounced (hard), blocked (soft bounce), dropped, opened,
clicked, complained (spam report), unsubscribed, group_unsubscribed, group_resubscribed. An event of a
kind not listed here is kept with `kind="unknown"` and its provider name in `provider_kind`: never dropped.
The raw event travels beside the normalised one. Our delivery id, campaign and step come back as
top-level keys of each event (they were `custom_args` in the request).

Contract: `parse_sendgrid(body)` refuses a body nested deeper than `MAX_DEPTH` before parsing it
(`BodyTooDeep`) and one that is not a JSON array (`EventFormatError`). Otherwise every item is validated
and normalised on its own, before anything touches a database: an item that is not an object, holds NaN
or Infinity, a NUL character or text that is not valid Unicode anywhere, or a known field of the wrong type
or out of range (a `delivery_id` that is not one of our 64-bit ids, a `timestamp` that is not a time) is
`Rejected` with its reason and its raw text; the others are `Event`s. One bad event never costs the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from needlecast.errors import BodyTooDeep, EventFormatError

KINDS = {
    "processed": "accepted",
    "delivered": "delivered",
    "deferred": "deferred",
    "dropped": "dropped",
    "open": "opened",
    "click": "clicked",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "group_unsubscribed",
    "group_resubscribe": "group_resubscribed",
}
MAX_DEPTH = 32  # SendGrid's events nest two levels deep; anything near this is not from SendGrid
MAX_ID = 2**63 - 1  # our delivery ids are positive 64-bit integers
LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()
MACHINE_OPEN = "machine"  # the `detail` of an open that SendGrid marks `sg_machine_open`
MAX_RAW_TEXT = 20_000
_TEXT_FIELDS = (
    "event",
    "email",
    "sg_event_id",
    "sg_message_id",
    "campaign",
    "step",
    "url",
    "reason",
    "response",
    "status",
    "type",
    "ip",
    "useragent",
    "smtp-id",
)


@dataclass(frozen=True)
class Event:
    provider_event_id: str
    kind: str
    provider_kind: str
    email: str
    occurred_at: datetime
    delivery_id: int | None
    campaign_id: str
    step_id: str
    message_id: str
    detail: str  # bounce reason, clicked URL, ...
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Rejected:
    """An item of a webhook batch that failed validation: why, and its raw JSON text (escaped, truncated)."""

    reason: str
    raw: str = field(repr=False)


@dataclass
class Parsed:
    events: list[Event] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


class _NonFinite:
    """What `NaN`, `Infinity` and `-Infinity` parse to: not JSON, and refused per event."""

    def __repr__(self) -> str:
        return "NaN"


_NON_FINITE = _NonFinite()
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def check_depth(body: bytes, limit: int = MAX_DEPTH) -> None:
    """`BodyTooDeep` when arrays and objects in `body` nest deeper than `limit` (strings are skipped, so a
    bracket inside a string does not count). Runs before any JSON parser sees the body."""
    depth = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise BodyTooDeep(f"the JSON body nests deeper than {limit} levels")
        else:
            depth -= 1


def _raw_text(item: Any) -> str:
    text = json.dumps(item, ensure_ascii=True, default=repr)  # lone surrogates and NUL become \\u escapes
    return text if len(text) <= MAX_RAW_TEXT else text[:MAX_RAW_TEXT] + "...(truncated)"


def _problem(value: Any, where: str = "") -> str:
    """Why a value cannot be stored as it is ('' when it can): NaN, a NUL, text that is not Unicode."""
    if value is _NON_FINITE:
        return f"{where or 'a value'} is NaN or Infinity, which is not JSON"
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where or 'a text'} contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where or 'a text'} is not valid Unicode (a lone surrogate)"
        return ""
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _problem(key, "a key") or _problem(item, f"'{key}'")
            if problem:
                return problem
    elif isinstance(value, list):
        for item in value:
            problem = _problem(item, where)
            if problem:
                return problem
    return ""


def _kind(raw: dict[str, Any]) -> str:
    name = str(raw.get("event", ""))
    if name == "bounce":
        return "blocked" if str(raw.get("type", "")).lower() == "blocked" else "bounced"
    return KINDS.get(name, "unknown")


def _delivery_id(value: Any) -> int | None:
    """Our delivery id from `custom_args` (a decimal string, or a number), None when absent; ValueError when
    it cannot be one of ours."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("delivery_id is not a number")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    else:
        raise ValueError("delivery_id is not a whole number")
    if not 1 <= number <= MAX_ID:
        raise ValueError("delivery_id is out of range for one of our ids")
    return number


def _occurred(value: Any) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= LATEST:
        raise ValueError("timestamp is not a Unix time")
    return datetime.fromtimestamp(value, UTC)


def normalise(raw: Any) -> Event | Rejected:
    """One webhook item, validated (see the module contract)."""
    if not isinstance(raw, dict):
        return Rejected("not an event object", _raw_text(raw))
    problem = _problem(raw)
    if problem:
        return Rejected(problem, _raw_text(raw))
    for name in _TEXT_FIELDS:
        if name in raw and raw[name] is not None and not isinstance(raw[name], str):
            return Rejected(f"'{name}' is not text", _raw_text(raw))
    try:
        delivery_id = _delivery_id(raw.get("delivery_id"))
        occurred = _occurred(raw.get("timestamp"))
    except ValueError as err:
        return Rejected(str(err), _raw_text(raw))
    email = str(raw.get("email") or "")
    if len(email) > 320:
        return Rejected("email is longer than an address can be", _raw_text(raw))
    # sg_event_id is SendGrid's idempotency key; an event without one gets a digest of its content.
    event_id = str(raw.get("sg_event_id") or hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest())
    detail = raw.get("url") or raw.get("reason") or raw.get("response") or raw.get("status") or ""
    kind = _kind(raw)
    if kind == "opened" and raw.get("sg_machine_open") in (True, "true", "True", 1, "1"):
        detail = MACHINE_OPEN  # Apple Mail Privacy Protection or a scanner fetched it, not a person
    return Event(
        provider_event_id=event_id[:100],
        kind=kind,
        provider_kind=str(raw.get("event", ""))[:32],
        email=email,
        occurred_at=occurred,
        delivery_id=delivery_id,
        campaign_id=str(raw.get("campaign") or "")[:64],
        step_id=str(raw.get("step") or "")[:64],
        message_id=str(raw.get("sg_message_id") or "").split(".")[0][:100],
        detail=str(detail)[:2000],
        raw=raw,
    )


def parse_sendgrid(body: bytes) -> Parsed:
    """The events of a webhook body and the items rejected (see the module contract)."""
    check_depth(body)
    try:
        items = json.loads(body, parse_constant=lambda _name: _NON_FINITE)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise EventFormatError(f"not JSON: {err}") from None
    if not isinstance(items, list):
        raise EventFormatError("expected a JSON array of event objects")
    parsed = Parsed()
    for item in items:
        result = normalise(item)
        if isinstance(result, Event):
            parsed.events.append(result)
        else:
            parsed.rejected.append(result)
    return parsed
