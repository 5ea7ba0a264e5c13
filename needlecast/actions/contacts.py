"""Contact actions: create or update a contact (with its consent evidence), suppress, erase, record consent,
start a double opt-in.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.audience.contacts import ConsentChange as ConsentChange  # what a face builds to call `upsert`
from needlecast.audience.contacts import ContactUpdate as ContactUpdate
from needlecast.audience.contacts import get_contact, upsert_contact
from needlecast.audience.suppression import erase, suppress
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import InvalidRequest
from needlecast.store.helpers import utcnow

if TYPE_CHECKING:
    from needlecast.audience.consent import Purpose
    from needlecast.content.vocabulary import Vocabulary


@dataclass(frozen=True)
class Upserted:
    """What `upsert` did: the contact's id and whether it was created."""

    contact_id: int
    created: bool


def upsert(
    engine: Engine, workspace: Workspace, actor: Actor, change: ContactUpdate, vocabulary: Vocabulary | None = None
) -> Upserted:
    """Create or update one contact by address, with each consent change's evidence (`ContactUpdate`; the
    rules are `audience.contacts.upsert_contact`'s: an erased address is `AddressErased`, an unknown concern
    or time zone `InvalidRequest` naming the field); the concerns are the workspace's (`vocabulary`, read from
    the workspace unless given). Needs `contacts.write`; audited as `contact.upserted`
    by contact id (never the address), with `created`, in the same transaction as the change."""
    require(actor, "contacts.write")
    for name in ("marketing_consent", "concern_consent"):
        given: ConsentChange | None = getattr(change, name)
        if given is not None and given.at is not None and given.at.tzinfo is None:
            raise InvalidRequest("at: give the time with a time zone (Z or an offset)")
    with engine.begin() as conn:
        contact_id, created = upsert_contact(conn, change, vocabulary or load_vocabulary_for(workspace), utcnow())
        audit.record(conn, actor, "contact.upserted", f"contact:#{contact_id}", created=created)
    return Upserted(contact_id, created)


MANUAL_REASONS = ("unsubscribed", "hard_bounce", "complaint", "manual")


def suppress_contact(engine: Engine, actor: Actor, email: str, reason: str, source: str) -> bool:
    """Suppress an address (a contact or not); True when newly suppressed."""
    require(actor, "contacts.suppress")
    if reason not in MANUAL_REASONS:
        raise InvalidRequest(f"'{reason}' is not one of: {', '.join(MANUAL_REASONS)}")
    with engine.begin() as conn:
        try:
            target = f"contact:#{get_contact(conn, email)['id']}"
        except LookupError:
            target = "address (not a contact)"
        added = suppress(conn, email, reason, source=source)
        audit.record(conn, actor, "contact.suppressed", target, reason=reason, new=added)
    return added


def erase_contact(engine: Engine, actor: Actor, email: str) -> bool:
    """Erase a person (see `audience.suppression.erase`); True when a contact existed."""
    require(actor, "contacts.erase")
    with engine.begin() as conn:
        try:
            target = f"contact:#{get_contact(conn, email)['id']}"
        except LookupError:
            target = "address (not a contact)"
        existed = erase(conn, email)
        audit.record(conn, actor, "contact.erased", target)
    return existed


def record_contact_consent(
    engine: Engine, actor: Actor, email: str, purpose: Purpose, granted: bool, *, source: str, wording: str = ""
) -> int:
    """Record consent given or withdrawn (`audience.consent.record_consent`) for the contact with `email`;
    audited as `contact.consent` by contact id. Returns the id; `NotFound` for an unknown address."""
    from needlecast.audience.consent import record_consent

    require(actor, "contacts.write")
    with engine.begin() as conn:
        contact_id = int(get_contact(conn, email)["id"])
        record_consent(conn, contact_id, purpose, granted, source=source, wording_version=wording)
        audit.record(
            conn, actor, "contact.consent", f"contact:#{contact_id}", purpose=purpose, granted=granted, source=source
        )
    return contact_id


def start_opt_in(engine: Engine, actor: Actor, email: str, secret: bytes, *, source: str) -> str:
    """Start double opt-in for the contact with `email` (pending, marketing consent off until confirmed);
    audited as `contact.opt_in_started`. Returns the signed confirmation token."""
    from needlecast.audience.consent import start_double_opt_in

    require(actor, "contacts.write")
    with engine.begin() as conn:
        contact_id = int(get_contact(conn, email)["id"])
        token = start_double_opt_in(conn, contact_id, secret, source=source)
        audit.record(conn, actor, "contact.opt_in_started", f"contact:#{contact_id}", source=source)
    return token
