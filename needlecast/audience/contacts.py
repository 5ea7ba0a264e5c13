"""Looking up contacts by address (the address is normalised first)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from needlecast.audience.addresses import normalise_email
from needlecast.errors import NotFound
from needlecast.store.schema import contacts


def find_contact(conn: Connection, email: str) -> dict[str, Any] | None:
    row = conn.execute(select(contacts).where(contacts.c.email == normalise_email(email))).mappings().first()
    return dict(row) if row else None


def get_contact(conn: Connection, email: str) -> dict[str, Any]:
    """The contact with `email`; `NotFound` (without echoing the address into logs) when there is none."""
    contact = find_contact(conn, email)
    if contact is None:
        raise NotFound("no contact with that address in this store")
    return contact
