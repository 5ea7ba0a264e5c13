"""Events from the clinic's systems: bookings, attendances, purchases, cancellations, and custom ones.

Contract: `validate_event(raw, index)` turns one item (an API object or a CSV row's cells) into a
`ContactEvent` or an `EventProblem` naming the field: an `id` (the booking system's own, what makes a
retry store nothing twice), an `email`, a `type` (`booked`, `attended`, `purchased`, `cancelled_booking` or
any custom name of lower-case letters, digits and _), an `occurred_at` with a time zone (naive times are
refused, not guessed), and optionally a `value` (not negative) with its three-letter `currency`.
`store_events(conn, events, source, now)` stores each once per id, the address only as the store's keyed
hash (linked to the contact when there is one), and returns how many were stored, how many were already
there, and how many were dropped because their address was erased (such an event is never stored). Exits
and enrolments on events, and conversions, read what is stored here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, select

from needlecast.addresses import email_hash, normalise_email
from needlecast.errors import InvalidAddress
from needlecast.store.helpers import chunked, hash_key, insert_ignore
from needlecast.store.schema import contact_events, contacts, suppressions

KNOWN_TYPES = ("booked", "attended", "purchased", "cancelled_booking")
TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_BATCH = 1000


@dataclass(frozen=True)
class ContactEvent:
    source_id: str
    email: str
    type: str
    occurred_at: datetime
    value: Decimal | None = None
    currency: str = ""


@dataclass(frozen=True)
class EventProblem:
    index: int  # the item's place in the batch (or its line in a file)
    field: str
    message: str


@dataclass
class StoredEvents:
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0  # for an erased address: never stored


def _text(raw: dict[str, Any], name: str, limit: int) -> str:
    value = raw.get(name)
    if value is None or value == "":
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError(f"{name}|must be text")
    text = str(value).strip()
    if len(text) > limit or "\x00" in text:
        raise ValueError(f"{name}|must be at most {limit} characters of text")
    return text


def validate_event(raw: Any, index: int) -> ContactEvent | EventProblem:
    """One event, checked (see the module contract)."""
    if not isinstance(raw, dict):
        return EventProblem(index, "(item)", "must be an object with id, email, type and occurred_at")
    try:
        source_id = _text(raw, "id", 200)
        if not source_id:
            raise ValueError("id|is missing: give the booking system's own id, so a retry stores nothing twice")
        try:
            email = normalise_email(_text(raw, "email", 320))
        except InvalidAddress as err:
            raise ValueError(f"email|{err}") from None
        kind = _text(raw, "type", 64)
        if not TYPE.match(kind):
            raise ValueError(
                f"type|'{kind}' is not an event type: use {', '.join(KNOWN_TYPES)} or a name of "
                "lower-case letters, digits and _"
            )
        stamp = raw.get("occurred_at")
        if isinstance(stamp, datetime):
            occurred = stamp
        else:
            try:
                occurred = datetime.fromisoformat(_text(raw, "occurred_at", 40).replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("occurred_at|is not a date and time like 2026-12-01T09:30:00Z") from None
        if occurred.tzinfo is None:
            raise ValueError("occurred_at|has no time zone: add Z or an offset such as +01:00")
        value: Decimal | None = None
        currency = ""
        if raw.get("value") not in (None, ""):
            try:
                value = Decimal(str(raw["value"]))
            except InvalidOperation:
                raise ValueError("value|is not a number") from None
            if not value.is_finite() or value < 0 or value >= Decimal("1e12"):
                raise ValueError("value|must be a number from 0 up to 999,999,999,999")
            currency = _text(raw, "currency", 3).upper()
            if not CURRENCY.match(currency):
                raise ValueError("currency|a value needs its three-letter currency, such as GBP or EUR")
    except ValueError as err:
        field_name, _, message = str(err).partition("|")
        return EventProblem(index, field_name, message)
    return ContactEvent(
        source_id,
        email,
        kind,
        occurred.astimezone(UTC),
        value.quantize(Decimal("0.01")) if value is not None else None,
        currency,
    )


def store_events(conn: Connection, events: list[ContactEvent], source: str, now: datetime) -> StoredEvents:
    """Store each event once per id (see the module contract).

    An event for an erased address is dropped, never stored (erased means erased), and counted in
    `dropped`. The rest go in with one INSERT ... ON CONFLICT DO NOTHING, which tells how many were new:
    of concurrent batches with the same ids, exactly one stores each event and the others count it as a
    duplicate; none fails on the unique id. `stored + duplicates + dropped == len(events)`.
    """
    result = StoredEvents()
    if not events:
        return result
    key = hash_key(conn)
    hashes = {e.email: email_hash(key, e.email) for e in events}
    ids: dict[str, int] = {}
    erased: set[str] = set()
    for part in chunked(sorted(set(hashes.values())), 1000):
        ids.update(
            {
                h: int(i)
                for h, i in conn.execute(
                    select(contacts.c.email_hash, contacts.c.id).where(contacts.c.email_hash.in_(part))
                )
            }
        )
        erased |= set(
            conn.execute(
                select(suppressions.c.email_hash).where(
                    suppressions.c.email_hash.in_(part), suppressions.c.reason == "erased"
                )
            ).scalars()
        )
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        hashed = hashes[event.email]
        if hashed in erased:
            result.dropped += 1
            continue
        rows.setdefault(
            event.source_id,
            {
                "source_id": event.source_id,
                "email_hash": hashed,
                "contact_id": ids.get(hashed),
                "type": event.type,
                "occurred_at": event.occurred_at,
                "value": event.value,
                "currency": event.currency,
                "source": source[:200],
                "received_at": now,
            },
        )
    result.stored = insert_ignore(conn, contact_events, list(rows.values()), ["source_id"])
    result.duplicates = len(events) - result.dropped - result.stored
    return result
