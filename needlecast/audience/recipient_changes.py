"""What a recipient changes about themselves from the pages an email links to: unsubscribe, topics, pause.

The pause is a contact attribute (`paused_until`) that segments and the dispatcher honour through
`is_paused`; the web pages (`web.recipient_pages`) call the other functions, each in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from needlecast.audience.consent import record_consent
from needlecast.audience.suppression import suppress
from needlecast.store.helpers import utcnow
from needlecast.store.schema import contacts

PAUSE_DAYS = 30


def contact_by_id(conn: Connection, contact_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(contacts).where(contacts.c.id == contact_id)).mappings().first()
    return dict(row) if row else None


def unsubscribe(conn: Connection, contact_id: int, campaign: str) -> None:
    """Suppress the contact's address and withdraw marketing consent. Idempotent; an erased contact is a no-op."""
    contact = contact_by_id(conn, contact_id)
    if contact is None:
        return
    suppress(conn, contact["email"], "unsubscribed", source=f"unsubscribe link ({campaign or 'email'})")
    if contact["marketing_consent"]:
        record_consent(conn, contact_id, "marketing", False, source=f"unsubscribe link ({campaign or 'email'})")


def set_concerns(conn: Connection, contact_id: int, chosen: list[str]) -> None:
    """The person's own choice of topics; choosing any is consent to use them, choosing none withdraws it."""
    contact = contact_by_id(conn, contact_id)
    if contact is None:
        return
    conn.execute(
        update(contacts).where(contacts.c.id == contact_id).values(concerns=";".join(chosen), updated_at=utcnow())
    )
    wants = bool(chosen)
    if wants != bool(contact["concern_consent"]):
        record_consent(conn, contact_id, "concern", wants, source="preference page")


def pause(conn: Connection, contact_id: int, now: datetime | None = None) -> datetime:
    """No email for 30 days: the contact's `paused_until` attribute, honoured by segments and at dispatch."""
    until = (now or utcnow()) + timedelta(days=PAUSE_DAYS)
    contact = contact_by_id(conn, contact_id)
    if contact is not None:
        attributes = {**(contact["attributes"] or {}), "paused_until": until.isoformat()}
        conn.execute(
            update(contacts).where(contacts.c.id == contact_id).values(attributes=attributes, updated_at=utcnow())
        )
    return until
