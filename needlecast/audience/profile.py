"""One contact's profile: what the store holds about a person, and every email and event of theirs.

Contract: `contact_profile_by_id(conn, id, unmasked=False)` returns a `Profile` (the address masked unless
`unmasked`), or raises `NotFound` (an address is found by `readmodels.contact_pages.profile_by_address`,
which never echoes it). The timeline lists the person's emails
(ledger rows, newest first) and the provider events linked to them or to their address hash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from needlecast.addresses import mask_email
from needlecast.audience.consent import consent_history
from needlecast.errors import NotFound
from needlecast.store.helpers import MAX_ID
from needlecast.store.schema import contact_lists, contacts, deliveries, events, suppressions


@dataclass
class Profile:
    id: int
    email: str
    first_name: str
    last_name: str
    status: str
    marketing_consent: bool
    concern_consent: bool
    concerns: list[str]
    time_zone: str
    tags: list[str]
    lists: list[str]
    attributes: dict[str, Any]
    signed_up_at: datetime
    suppressed: str | None
    consent: list[dict[str, Any]] = field(default_factory=list)
    emails: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def contact_profile_by_id(conn: Connection, contact_id: int, *, unmasked: bool = False) -> Profile:
    """The profile of the contact with this id; `NotFound` when there is none (erased, say), or when the id is
    not one an id column can hold (it is never sent to the database, which would refuse it with an error)."""
    row = None
    if 1 <= contact_id <= MAX_ID:
        row = conn.execute(select(contacts).where(contacts.c.id == contact_id)).mappings().first()
    if row is None:
        raise NotFound(
            f"no contact #{contact_id} (an erased person's data is gone)", what="contact", name=str(contact_id)
        )
    return _profile(conn, dict(row), unmasked)


def _profile(conn: Connection, contact: dict[str, Any], unmasked: bool) -> Profile:
    contact_id = int(contact["id"])
    lists = sorted(
        conn.execute(select(contact_lists.c.list_name).where(contact_lists.c.contact_id == contact_id)).scalars()
    )
    suppressed = conn.execute(
        select(suppressions.c.reason).where(suppressions.c.email_hash == contact["email_hash"])
    ).scalar()
    sent = (
        conn.execute(
            select(
                deliveries.c.id,
                deliveries.c.campaign_id,
                deliveries.c.step_id,
                deliveries.c.variant,
                deliveries.c.arm,
                deliveries.c.status,
                deliveries.c.due_at,
                deliveries.c.sent_at,
                deliveries.c.outcome,
                deliveries.c.error,
            )
            .where(deliveries.c.contact_id == contact_id)
            .order_by(deliveries.c.due_at.desc(), deliveries.c.id.desc())
        )
        .mappings()
        .all()
    )
    delivery_ids = [int(row["id"]) for row in sent]
    linked = (
        conn.execute(
            select(
                events.c.kind,
                events.c.occurred_at,
                events.c.campaign_id,
                events.c.step_id,
                events.c.detail,
                events.c.delivery_id,
            )
            .where(or_(events.c.email_hash == contact["email_hash"], events.c.delivery_id.in_(delivery_ids or [-1])))
            .order_by(events.c.occurred_at.desc(), events.c.id.desc())
        )
        .mappings()
        .all()
    )
    return Profile(
        id=contact_id,
        email=contact["email"] if unmasked else mask_email(contact["email"]),
        first_name=contact["first_name"],
        last_name=contact["last_name"],
        status=contact["status"],
        marketing_consent=bool(contact["marketing_consent"]),
        concern_consent=bool(contact["concern_consent"]),
        concerns=[c for c in contact["concerns"].split(";") if c],
        time_zone=contact["time_zone"],
        tags=[t for t in contact["tags"].split(";") if t],
        lists=lists,
        attributes=dict(contact["attributes"] or {}),
        signed_up_at=contact["signed_up_at"],
        suppressed=suppressed,
        consent=[{k: v for k, v in row.items() if k != "contact_id"} for row in consent_history(conn, contact_id)],
        emails=[dict(row) for row in sent],
        events=[dict(row) for row in linked],
    )
