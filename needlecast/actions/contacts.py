"""Contact actions: create or update a contact (with its consent evidence), suppress, erase, record consent,
start a double opt-in; and on a selection of the contact list: add a tag, suppress, export as CSV.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.audience.contact_export import export_csv
from needlecast.audience.contact_filter import Selection as Selection  # what a face builds for a bulk action
from needlecast.audience.contact_filter import selection_query
from needlecast.audience.contacts import ConsentChange as ConsentChange  # what a face builds to call `upsert`
from needlecast.audience.contacts import ContactUpdate as ContactUpdate
from needlecast.audience.contacts import get_contact, upsert_contact
from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.suppression import erase, suppress
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import InvalidRequest
from needlecast.store import contact_search
from needlecast.store.contact_search import ContactQuery
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


# Bulk actions on a selection of the console's contact list. Each counts the selection in its own
# transaction and does nothing when that count is not the `expected` one the person confirmed (the list
# changed in between): the face asks again with the new count.

TAG_SEPARATORS = ";,/|"
LONGEST_TAG = 60


@dataclass(frozen=True)
class BulkDone:
    """What a bulk action did: how many it was asked for (`selected`), how many changed (`changed`: the rest
    already had the tag or were suppressed already), or `done=False` when the selection no longer held
    `expected` contacts (nothing was changed; `selected` is the new count)."""

    selected: int
    changed: int = 0
    done: bool = True


def clean_tag(raw: str) -> str:
    """A tag as contacts keep it; `InvalidRequest` naming the field for an empty or unusable one."""
    tag = " ".join(str(raw).split())
    if not tag:
        raise InvalidRequest("tag: give the tag to add")
    if len(tag) > LONGEST_TAG or any(ch in TAG_SEPARATORS or not ch.isprintable() for ch in tag):
        raise InvalidRequest(f"tag: use at most {LONGEST_TAG} characters, without ; , / or |")
    return tag


def _query(
    conn: Connection, workspace: Workspace, actor: Actor, selection: Selection, frames: FrameCache | None
) -> ContactQuery:
    unmasked = actor.may("contacts.view_unmasked")
    return selection_query(conn, workspace, selection, unmasked=unmasked, now=utcnow(), frames=frames)


def tag_contacts(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    selection: Selection,
    tag: str,
    *,
    expected: int,
    frames: FrameCache | None = None,
) -> BulkDone:
    """Add `tag` to every contact of `selection` (see the contract above). Needs `contacts.tag`; audited as
    `contacts.tagged` with the tag and the counts (never an address or a name)."""
    require(actor, "contacts.tag")
    tag = clean_tag(tag)
    with engine.begin() as conn:
        query = _query(conn, workspace, actor, selection, frames)
        selected = contact_search.count(conn, query)
        if selected != expected:
            return BulkDone(selected, done=False)
        changed = contact_search.add_tag(conn, query, tag, utcnow())
        audit.record(conn, actor, "contacts.tagged", "contacts", tag=tag, selected=selected, changed=changed)
    return BulkDone(selected, changed)


def suppress_contacts(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    selection: Selection,
    *,
    expected: int,
    frames: FrameCache | None = None,
) -> BulkDone:
    """Suppress every contact of `selection` (reason `manual`, the source naming the actor). Needs
    `contacts.suppress`; audited as `contacts.suppressed` with the counts."""
    require(actor, "contacts.suppress")
    with engine.begin() as conn:
        query = _query(conn, workspace, actor, selection, frames)
        found = contact_search.hashes(conn, query)
        if len(found) != expected:
            return BulkDone(len(found), done=False)
        changed = contact_search.suppress_hashes(conn, found, "manual", f"console ({actor.name})", utcnow())
        audit.record(conn, actor, "contacts.suppressed", "contacts", selected=len(found), changed=changed)
    return BulkDone(len(found), changed)


def export_contacts(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    selection: Selection,
    *,
    expected: int,
    frames: FrameCache | None = None,
) -> tuple[BulkDone, str]:
    """The contacts of `selection` as CSV text (`audience.contact_export.export_csv`), addresses and names
    masked unless the actor may see them. Needs `contacts.view`; audited as
    `contacts.exported` with the count and whether it was masked. ("" when the count changed.)"""
    require(actor, "contacts.view")
    unmasked = actor.may("contacts.view_unmasked")
    with engine.begin() as conn:
        query = _query(conn, workspace, actor, selection, frames)
        selected = contact_search.count(conn, query)
        if selected != expected:
            return BulkDone(selected, done=False), ""
        text = export_csv(contact_search.export_rows(conn, query), unmasked=unmasked)
        audit.record(conn, actor, "contacts.exported", "contacts", selected=selected, masked=not unmasked)
    return BulkDone(selected, selected), text
