"""Consent: marketing consent and, separately, consent to use the skin concern (health data).

The history is append-only (`consent_events`); the contact row carries the current state for fast
segmenting, and both change together in one transaction. Double opt-in: a contact can be `pending` until a
signed, expiring confirmation token is redeemed (`confirmation_token` / `confirm`); the web link that
redeems it comes with the tracking service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, insert, or_, select, update

from needlecast import signing
from needlecast.errors import NotFound
from needlecast.store.helpers import utcnow
from needlecast.store.schema import consent_events, contacts

Purpose = Literal["marketing", "concern"]
CONFIRMATION_TTL_SECONDS = 7 * 24 * 3600


def record_consent(
    conn: Connection,
    contact_id: int,
    purpose: Purpose,
    granted: bool,
    *,
    source: str,
    wording_version: str = "",
    at: datetime | None = None,
    address_hash: str = "",
) -> None:
    """Append a consent event and set the contact's current state to match (`address_hash`: the keyed hash
    of the network address the consent came from, for a form)."""
    column = "marketing_consent" if purpose == "marketing" else "concern_consent"
    values: dict[str, object] = {column: granted, "updated_at": utcnow()}
    if purpose == "marketing" and granted:
        values["status"] = "active"
    result = conn.execute(update(contacts).where(contacts.c.id == contact_id).values(values))
    if result.rowcount != 1:
        raise NotFound(f"no contact with id {contact_id}")
    conn.execute(
        insert(consent_events),
        {
            "contact_id": contact_id,
            "purpose": purpose,
            "action": "granted" if granted else "withdrawn",
            "source": source,
            "wording_version": wording_version,
            "recorded_at": at or utcnow(),
            "address_hash": address_hash,
        },
    )


def start_double_opt_in(conn: Connection, contact_id: int, secret: bytes, *, source: str) -> str:
    """Mark the contact pending and return a signed confirmation token valid for 7 days."""
    conn.execute(
        update(contacts)
        .where(contacts.c.id == contact_id)
        .values(status="pending", marketing_consent=False, updated_at=utcnow())
    )
    conn.execute(
        insert(consent_events),
        {
            "contact_id": contact_id,
            "purpose": "marketing",
            "action": "pending",
            "source": source,
            "wording_version": "",
            "recorded_at": utcnow(),
        },
    )
    return signing.sign(secret, signing.CONFIRM, contact_id, ttl_seconds=CONFIRMATION_TTL_SECONDS)


def confirm(conn: Connection, token: str, secret: bytes) -> int:
    """Redeem a confirmation token: the pending contact gets marketing consent. Returns the contact id.

    Raises `TokenInvalid` for a bad or expired token, `NotFound` when the contact no longer exists.
    Confirming twice is harmless (the second time records nothing).
    """
    payload = signing.verify(secret, signing.CONFIRM, token)
    row = conn.execute(select(contacts.c.id).where(contacts.c.id == payload.contact_id)).first()
    if row is None:
        raise NotFound("that confirmation link belongs to a contact who no longer exists")
    # The check is a conditional UPDATE, which waits for a concurrent confirmation and then sees its
    # consent: of confirmations at the same time exactly one records it.
    claimed = conn.execute(
        update(contacts)
        .where(
            contacts.c.id == payload.contact_id,
            or_(contacts.c.status == "pending", contacts.c.marketing_consent.is_(False)),
        )
        .values(updated_at=utcnow())
    ).rowcount
    if claimed:
        record_consent(conn, payload.contact_id, "marketing", True, source="double opt-in confirmation")
    return payload.contact_id


def consent_history(conn: Connection, contact_id: int) -> list[dict[str, object]]:
    rows = conn.execute(
        select(consent_events).where(consent_events.c.contact_id == contact_id).order_by(consent_events.c.id)
    ).mappings()
    return [dict(r) for r in rows]
