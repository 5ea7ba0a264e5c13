"""Looking up contacts by address (the address is normalised first), and one contact's upsert (the API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from needlecast.addresses import email_hash, normalise_email
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import AddressErased, InvalidRequest, NotFound
from needlecast.store.helpers import hash_key, insert_ignore, insert_new
from needlecast.store.schema import contact_lists, contacts, suppressions

ERASED = "email: this address was erased on request; it is not stored again"


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

    Race-free: concurrent upserts of one new address make one contact (the insert skips an address that is
    there, in one statement), the others update it one after another (its row is locked, on PostgreSQL;
    SQLite has one writer), so no tag, attribute or consent change is lost and no unique violation occurs.
    """
    from zoneinfo import available_timezones

    address = normalise_email(update_.email)
    hashed = email_hash(hash_key(conn), address)
    if _erased(conn, hashed):
        raise AddressErased(ERASED)
    if update_.concerns is not None:
        unknown = [c for c in update_.concerns if c not in vocabulary.names]
        if unknown:
            raise InvalidRequest(f"concerns: '{unknown[0]}' is not one of {', '.join(vocabulary.names)}")
    if update_.time_zone and update_.time_zone not in available_timezones():
        raise InvalidRequest(f"time_zone: '{update_.time_zone}' is not an IANA time zone such as Europe/London")
    values: dict[str, Any] = {"updated_at": now}
    for name in ("first_name", "last_name", "time_zone"):
        value = getattr(update_, name)
        if value is not None:
            values[name] = " ".join(str(value).split())[:200]
    if update_.concerns is not None:
        values["concerns"] = ";".join(dict.fromkeys(update_.concerns))
    contact_id, created = _create_or_update(conn, address, hashed, values, update_, now)
    insert_ignore(
        conn,
        contact_lists,
        [{"contact_id": contact_id, "list_name": name[:100]} for name in dict.fromkeys(update_.lists) if name],
        ("contact_id", "list_name"),
    )
    _record_consents(conn, contact_id, update_, now)
    return contact_id, created


def new_contact_row(address: str, hashed: str, now: datetime, status: str = "active") -> dict[str, Any]:
    """The columns of a new contact with nothing known about it but its address: no name, concern, consent,
    tag or attribute (callers add what they know)."""
    return {
        "email": address,
        "email_hash": hashed,
        "first_name": "",
        "last_name": "",
        "concerns": "",
        "time_zone": "",
        "locale": "",
        "tags": "",
        "status": status,
        "marketing_consent": False,
        "concern_consent": False,
        "attributes": {},
        "signed_up_at": now,
        "created_at": now,
    }


def _create_or_update(
    conn: Connection, address: str, hashed: str, values: dict[str, Any], update_: ContactUpdate, now: datetime
) -> tuple[int, bool]:
    """Insert the contact unless its address is there; otherwise lock its row and update it (tags and
    attributes are added to what is there). (id, created)."""
    while True:
        new = {
            **new_contact_row(address, hashed, now),
            **values,
            "tags": ";".join(dict.fromkeys(t for t in update_.tags if t))[:500],
            "attributes": dict(update_.attributes),
        }
        created_id = insert_new(conn, contacts, new, contacts.c.id)
        if created_id is not None:
            return int(created_id), True
        current = conn.execute(select(contacts).where(contacts.c.email == address).with_for_update()).mappings().first()
        if current is None:  # deleted after the insert saw it: by an erasure, or inserted anew
            if _erased(conn, hashed):
                raise AddressErased(ERASED)
            continue
        tags = [t for t in current["tags"].split(";") if t]
        tags += [t for t in update_.tags if t and t not in tags]
        merged = {**values, "tags": ";".join(tags)[:500], "attributes": {**current["attributes"], **update_.attributes}}
        conn.execute(update(contacts).where(contacts.c.id == current["id"]).values(merged))
        return int(current["id"]), False


def _erased(conn: Connection, hashed: str) -> bool:
    reason = conn.execute(select(suppressions.c.reason).where(suppressions.c.email_hash == hashed)).scalar()
    return reason == "erased"


def _record_consents(conn: Connection, contact_id: int, update_: ContactUpdate, now: datetime) -> None:
    """Append each consent change that changes the contact's state, with its evidence."""
    from needlecast.audience.consent import Purpose, record_consent

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
