"""The global suppression list and erasure.

Suppressions are keyed by the address's keyed hash, never the address. Reasons: unsubscribed, hard_bounce,
complaint, manual, erased. A suppressed address may stay a contact (its history is useful), but no segment
includes it and dispatch re-checks the list (DESIGN.md invariant 2). Erasure deletes the person's data
(contact, lists, consent history) and keeps only the hash, so a later import of the address is refused.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from needlecast.addresses import email_hash, normalise_email
from needlecast.errors import InvalidRequest
from needlecast.store.contact_search import forget_erased
from needlecast.store.helpers import hash_key, insert_ignore, utcnow
from needlecast.store.schema import (
    appointments,
    consent_events,
    contact_events,
    contact_lists,
    contacts,
    deliveries,
    enrolments,
    erased_contacts,
    signup_requests,
    suppressions,
)

REASONS = ("unsubscribed", "hard_bounce", "complaint", "manual", "erased")


def suppress_hash(conn: Connection, hashed: str, reason: str, source: str = "") -> bool:
    """Add a hash to the list; True when it was not there yet (the first reason is kept).

    One statement checks and inserts: of concurrent suppressions of one address exactly one is the new one,
    and none fails on the unique key.
    """
    if reason not in REASONS:
        raise InvalidRequest(f"'{reason}' is not a suppression reason; use one of: {', '.join(REASONS)}")
    row = {"email_hash": hashed, "reason": reason, "source": source[:200], "created_at": utcnow()}
    return insert_ignore(conn, suppressions, [row], ("email_hash",)) == 1


def suppress(conn: Connection, email: str, reason: str, source: str = "manual") -> bool:
    """Suppress an address (contact or not); True when newly suppressed."""
    return suppress_hash(conn, email_hash(hash_key(conn), normalise_email(email)), reason, source)


def suppression_of(conn: Connection, email: str) -> str | None:
    """The reason `email` is suppressed, or None."""
    hashed = email_hash(hash_key(conn), normalise_email(email))
    return conn.execute(select(suppressions.c.reason).where(suppressions.c.email_hash == hashed)).scalar()


def erase(conn: Connection, email: str) -> bool:
    """Delete everything about `email` and keep its hash suppressed as `erased`. True when a contact existed.

    The contact, its lists, consent history, enrolments, signup requests, contact events and appointments
    (bookings and the like, found by the address hash too) are deleted; its id is remembered as erased (its
    signed links stay dead) and never handed out again; its ledger rows stay for the aggregate reports but
    are unlinked from it (`contact_id` becomes the row's own id, negated: no contact has that id), and any
    of them still queued is skipped at dispatch as erased. SQLite's trigram index of addresses and names
    (migration 0023) drops the person's entries with the contact (`contact_search.forget_erased`).
    """
    normalised = normalise_email(email)
    hashed = email_hash(hash_key(conn), normalised)
    contact_id = conn.execute(select(contacts.c.id).where(contacts.c.email == normalised)).scalar()
    conn.execute(delete(contact_events).where(contact_events.c.email_hash == hashed))
    conn.execute(delete(appointments).where(appointments.c.email_hash == hashed))
    if contact_id is not None:
        conn.execute(delete(contact_events).where(contact_events.c.contact_id == contact_id))
        conn.execute(delete(appointments).where(appointments.c.contact_id == contact_id))
        conn.execute(delete(signup_requests).where(signup_requests.c.contact_id == contact_id))
        conn.execute(delete(consent_events).where(consent_events.c.contact_id == contact_id))
        conn.execute(delete(contact_lists).where(contact_lists.c.contact_id == contact_id))
        conn.execute(delete(enrolments).where(enrolments.c.contact_id == contact_id))
        conn.execute(
            update(deliveries).where(deliveries.c.contact_id == contact_id).values(contact_id=-deliveries.c.id)
        )
        conn.execute(delete(contacts).where(contacts.c.id == contact_id))
        forget_erased(conn)  # SQLite's trigram index of names and addresses (migration 0023) keeps none of it
        insert_ignore(conn, erased_contacts, [{"contact_id": contact_id, "erased_at": utcnow()}], ("contact_id",))
    # Erasure outranks any earlier reason: replace it, so the import refuses the address from now on.
    conn.execute(delete(suppressions).where(suppressions.c.email_hash == hashed))
    suppress_hash(conn, hashed, "erased", "erasure request")
    return contact_id is not None


def is_erased(conn: Connection, contact_id: int) -> bool:
    """Whether `contact_id` belonged to a contact who was erased (a signed link to it is dead)."""
    return (
        conn.execute(select(erased_contacts.c.contact_id).where(erased_contacts.c.contact_id == contact_id)).first()
        is not None
    )
