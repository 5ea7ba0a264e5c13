"""Store what a booking system reported: contact events once per id, and each appointment as it stands.

Contract:
- `record_bookings(conn, items, treatments, source, now)` takes the parsed items of one delivery (bookings and
  problems) in the caller's transaction. Each booking's event (booked, rescheduled, cancelled_booking,
  attended, no_show) is stored once per id in `contact_events`, with its treatment (its appointment type
  looked up in `[bookings.treatments]`; "" when the type is not there, which is reported in
  `unknown_types`, never refused) and its appointment time. A booking whose event was stored before (a retry
  or a replay) changes nothing else. Otherwise its appointment's row in `appointments` is set to what the
  booking says (open or not, start, treatment), unless a later change of that appointment is already there.
  Then every affected contact's attribute `next_appointment_at` (ISO 8601 UTC) and
  `next_appointment_treatment` are set to their earliest open appointment still ahead, or removed when there
  is none. A booking for an erased address is dropped, never stored.
- `next_appointment(conn, contact_id, now)` answers "does a future appointment exist" for a journey or a
  recall: the earliest open appointment after `now` (its start and treatment), or None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update

from needlecast.addresses import email_hash
from needlecast.bookings.providers import Booking, BookingProblem
from needlecast.store.helpers import chunked, hash_key, insert_ignore
from needlecast.store.schema import appointments, contact_events, contacts, suppressions


@dataclass
class BookingResult:
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0  # for an erased address: never stored
    problems: list[BookingProblem] = field(default_factory=list)
    unknown_types: list[str] = field(default_factory=list)
    appointments: int = 0  # appointment rows changed

    def counts(self) -> dict[str, Any]:
        """What one delivery did, in figures and type ids only (for the audit log, the log and the answer)."""
        return {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "dropped": self.dropped,
            "rejected": len(self.problems),
            "unknown_types": self.unknown_types,
            "appointments": self.appointments,
        }


def treatment_of(treatments: dict[str, str], booking: Booking) -> str:
    return treatments.get(booking.appointment_type) or treatments.get(booking.type_name) or ""


def _lookups(conn: Connection, hashes: set[str]) -> tuple[dict[str, int], set[str]]:
    """The contact id of each hash that has one, and the hashes that were erased."""
    ids: dict[str, int] = {}
    erased: set[str] = set()
    for part in chunked(sorted(hashes), 1000):
        query = select(contacts.c.email_hash, contacts.c.id).where(contacts.c.email_hash.in_(part))
        ids.update({h: int(i) for h, i in conn.execute(query)})
        erased |= set(
            conn.execute(
                select(suppressions.c.email_hash).where(
                    suppressions.c.email_hash.in_(part), suppressions.c.reason == "erased"
                )
            ).scalars()
        )
    return ids, erased


def record_bookings(
    conn: Connection,
    items: list[Booking | BookingProblem],
    treatments: dict[str, str],
    source: str,
    now: datetime,
) -> BookingResult:
    """Store one delivery's bookings (see the module contract)."""
    result = BookingResult(problems=[i for i in items if isinstance(i, BookingProblem)])
    bookings = [i for i in items if isinstance(i, Booking)]
    if not bookings:
        return result
    key = hash_key(conn)
    hashes = {b.email: email_hash(key, b.email) for b in bookings}
    ids, erased = _lookups(conn, set(hashes.values()))
    kept = [b for b in bookings if hashes[b.email] not in erased]
    result.dropped = len(bookings) - len(kept)
    unknown = {b.appointment_type or b.type_name for b in kept if not treatment_of(treatments, b)}
    result.unknown_types = sorted(u for u in unknown if u)
    events = {b.source_id: b for b in kept if b.kind is not None}
    known: set[str] = set()
    for part in chunked(sorted(events), 1000):
        query = select(contact_events.c.source_id).where(contact_events.c.source_id.in_(part))
        known |= set(conn.execute(query).scalars())
    rows = [
        {
            "source_id": b.source_id,
            "email_hash": hashes[b.email],
            "contact_id": ids.get(hashes[b.email]),
            "type": b.kind,
            "occurred_at": b.occurred_at,
            "value": None,
            "currency": "",
            "source": source[:200],
            "received_at": now,
            "treatment": treatment_of(treatments, b),
            "appointment_at": b.starts_at,
        }
        for _, b in sorted(events.items())  # one lock order for concurrent deliveries
        if b.source_id not in known
    ]
    result.stored = insert_ignore(conn, contact_events, rows, ["source_id"])
    result.duplicates = len(kept) - result.stored - sum(1 for b in kept if b.kind is None)
    # A booking changes its appointment only the first time it arrives (a replay changes nothing). The
    # cancelled half of a reschedule has no event of its own: closing an appointment twice is harmless.
    fresh = [b for b in kept if b.kind is None or b.source_id not in known]
    # By appointment (one lock order for concurrent deliveries), each in time order.
    for booking in sorted(fresh, key=lambda b: (b.appointment, b.occurred_at)):
        hashed = hashes[booking.email]
        result.appointments += _set_appointment(
            conn, booking, hashed, ids.get(hashed), treatment_of(treatments, booking), now
        )
    _refresh_next(conn, {hashes[b.email] for b in fresh}, now)
    return result


def _set_appointment(
    conn: Connection, booking: Booking, hashed: str, contact_id: int | None, treatment: str, now: datetime
) -> int:
    """Set the appointment's row to what `booking` says, unless a later change is recorded; rows changed."""
    values: dict[str, Any] = {
        "email_hash": hashed,
        "contact_id": contact_id,
        "open": booking.open,
        "last_event_at": booking.occurred_at,
        "updated_at": now,
    }
    if booking.starts_at is not None:
        values["starts_at"] = booking.starts_at
    if treatment or booking.appointment_type:
        values["treatment"] = treatment
        values["appointment_type"] = booking.appointment_type[:200]
    row = {"appointment": booking.appointment, "treatment": "", "appointment_type": "", "starts_at": None, **values}
    if insert_ignore(conn, appointments, [row], ["appointment"]):
        return 1
    changed = conn.execute(
        update(appointments)
        .where(appointments.c.appointment == booking.appointment, appointments.c.last_event_at <= booking.occurred_at)
        .values(values)
    )
    return int(changed.rowcount or 0)


def _earliest(conn: Connection, hashes: list[str], now: datetime) -> dict[str, tuple[datetime, str]]:
    """The earliest open appointment after `now` of each hash that has one."""
    ahead = and_(appointments.c.open.is_(True), appointments.c.starts_at > now)
    first = (
        select(appointments.c.email_hash, func.min(appointments.c.starts_at).label("starts_at"))
        .where(appointments.c.email_hash.in_(hashes), ahead)
        .group_by(appointments.c.email_hash)
        .subquery()
    )
    query = (
        select(appointments.c.email_hash, appointments.c.starts_at, appointments.c.treatment)
        .join(
            first, and_(first.c.email_hash == appointments.c.email_hash, first.c.starts_at == appointments.c.starts_at)
        )
        .where(ahead)
    )
    return {h: (s, t) for h, s, t in conn.execute(query)}


def _refresh_next(conn: Connection, hashes: set[str], now: datetime) -> None:
    """Keep each affected contact's `next_appointment_at` / `next_appointment_treatment` attributes true."""
    for part in chunked(sorted(hashes), 500):
        earliest = _earliest(conn, part, now)
        query = (
            select(contacts.c.id, contacts.c.email_hash, contacts.c.attributes)
            .where(contacts.c.email_hash.in_(part))
            .with_for_update()
        )
        for contact_id, hashed, attributes in conn.execute(query).all():
            current = dict(attributes or {})
            wanted = dict(current)
            wanted.pop("next_appointment_at", None)
            wanted.pop("next_appointment_treatment", None)
            if hashed in earliest:
                starts, treatment = earliest[hashed]
                wanted["next_appointment_at"] = starts.strftime("%Y-%m-%dT%H:%M:%SZ")
                if treatment:
                    wanted["next_appointment_treatment"] = treatment
            if wanted != current:
                conn.execute(update(contacts).where(contacts.c.id == contact_id).values(attributes=wanted))


def next_appointment(conn: Connection, contact_id: int, now: datetime) -> tuple[datetime, str] | None:
    """The contact's earliest open appointment after `now` (start, treatment), or None: whether a future
    appointment exists, found by the contact's id or, for bookings that came before the contact, its hash."""
    hashed = select(contacts.c.email_hash).where(contacts.c.id == contact_id).scalar_subquery()
    query = (
        select(appointments.c.starts_at, appointments.c.treatment)
        .where(
            or_(appointments.c.contact_id == contact_id, appointments.c.email_hash == hashed),
            appointments.c.open.is_(True),
            appointments.c.starts_at > now,
        )
        .order_by(appointments.c.starts_at)
        .limit(1)
    )
    row = conn.execute(query).first()
    return (row[0], row[1]) if row else None
