"""What the dispatcher reads of each claimed row's contact, in the claim's own statement (`ledger.claim_rows`).

A contact erased since planning has no row (its email comes back NULL); a suppressed address has its reason.
The attributes come back as JSON text on both databases: the dispatcher decodes them only when they may hold
a pause.
"""

from __future__ import annotations

from sqlalchemy import Connection

from needlecast.store.driver import is_sqlite

CLAIM_CONTACT_JOIN = (
    "LEFT JOIN contacts c ON c.id = d.contact_id LEFT JOIN suppressions s ON s.email_hash = c.email_hash"
)
_COLUMNS = ("c.email", "c.first_name", "c.status", "c.marketing_consent", "c.attributes", "s.reason")
_POSTGRES_COLUMNS = ("c.email", "c.first_name", "c.status", "c.marketing_consent", "c.attributes::text", "s.reason")


def claim_contact_columns(conn: Connection) -> tuple[str, ...]:
    """The contact's columns read with a claim: email, first name, status, consent, attributes, suppression."""
    return _COLUMNS if is_sqlite(conn) else _POSTGRES_COLUMNS
