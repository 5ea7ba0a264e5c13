"""Looking up contacts by address (the address is normalised first), and one contact's upsert (the API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from needlecast.audience.addresses import normalise_email
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import AddressErased, InvalidRequest, NotFound
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


@dataclass(frozen=True)
class ConsentChange:
    """A consent given or withdrawn, with its evidence."""

    granted: bool
    source: str
    wording_version: str = ""
    at: datetime | None = None


@dataclass(frozen=True)
class ContactUpdate:
    """What an upsert may set: None leaves a value as it is; lists and tags are added to."""

    email: str
    first_name: str | None = None
    last_name: str | None = None
    concerns: tuple[str, ...] | None = None
    time_zone: str | None = None
    lists: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    marketing_consent: ConsentChange | None = None
    concern_consent: ConsentChange | None = None


def upsert_contact(conn: Connection, update_: ContactUpdate, vocabulary: Vocabulary, now: datetime) -> tuple[int, bool]:
    """Create or update one contact by address; (its id, whether it was created).

    The same rules as an import: an erased address is refused (`InvalidRequest`), a suppressed one is stored
    and stays suppressed, unknown concerns and time zones are refused naming the field, and each consent
    change is appended to the history with its evidence.
    """
    from zoneinfo import available_timezones

    from needlecast.audience.addresses import email_hash
    from needlecast.audience.consent import Purpose, record_consent
    from needlecast.store.helpers import hash_key
    from needlecast.store.schema import contact_lists, suppressions

    address = normalise_email(update_.email)
    hashed = email_hash(hash_key(conn), address)
    reason = conn.execute(select(suppressions.c.reason).where(suppressions.c.email_hash == hashed)).scalar()
    if reason == "erased":
        raise AddressErased("email: this address was erased on request; it is not stored again")
    if update_.concerns is not None:
        unknown = [c for c in update_.concerns if c not in vocabulary.names]
        if unknown:
            raise InvalidRequest(f"concerns: '{unknown[0]}' is not one of {', '.join(vocabulary.names)}")
    if update_.time_zone and update_.time_zone not in available_timezones():
        raise InvalidRequest(f"time_zone: '{update_.time_zone}' is not an IANA time zone such as Europe/London")
    current = find_contact(conn, address)
    values: dict[str, Any] = {"updated_at": now}
    for name in ("first_name", "last_name", "time_zone"):
        value = getattr(update_, name)
        if value is not None:
            values[name] = " ".join(str(value).split())[:200]
    if update_.concerns is not None:
        values["concerns"] = ";".join(dict.fromkeys(update_.concerns))
    tags = [t for t in (current["tags"].split(";") if current else []) if t]
    tags += [t for t in update_.tags if t and t not in tags]
    values["tags"] = ";".join(tags)[:500]
    values["attributes"] = {**(current["attributes"] if current else {}), **update_.attributes}
    created = current is None
    if created:
        contact_id = int(
            conn.execute(
                insert(contacts).returning(contacts.c.id),
                {
                    "email": address,
                    "email_hash": hashed,
                    "first_name": "",
                    "last_name": "",
                    "concerns": "",
                    "time_zone": "",
                    "locale": "",
                    "status": "active",
                    "marketing_consent": False,
                    "concern_consent": False,
                    "signed_up_at": now,
                    "created_at": now,
                    **values,
                },
            ).scalar_one()
        )
    else:
        assert current is not None
        contact_id = int(current["id"])
        conn.execute(update(contacts).where(contacts.c.id == contact_id).values(values))
    for name in dict.fromkeys(update_.lists):
        if name:
            exists = conn.execute(
                select(contact_lists.c.contact_id).where(
                    contact_lists.c.contact_id == contact_id, contact_lists.c.list_name == name[:100]
                )
            ).first()
            if exists is None:
                conn.execute(insert(contact_lists), {"contact_id": contact_id, "list_name": name[:100]})
    changes: tuple[tuple[Purpose, ConsentChange | None], ...] = (
        ("marketing", update_.marketing_consent),
        ("concern", update_.concern_consent),
    )
    for purpose, change in changes:
        if change is None:
            continue
        column = "marketing_consent" if purpose == "marketing" else "concern_consent"
        has = bool(conn.execute(select(contacts.c[column]).where(contacts.c.id == contact_id)).scalar())
        if change.granted != has:
            record_consent(
                conn,
                contact_id,
                purpose,
                change.granted,
                source=change.source[:200],
                wording_version=change.wording_version[:100],
                at=change.at or now,
            )
    return contact_id, created
