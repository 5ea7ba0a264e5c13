"""Contact pages: a contact's profile, contacts and suppressions a page at a time, as the API and the
console show them.

Contract: `contact_vocabulary(workspace)` is the concerns a contact may take; `profile(engine, id)` and
`profile_by_address(engine, email)` are one contact's `Profile` (full addresses only when `unmasked`), or
`NotFound`; `contact_page(engine, after, limit)` is up to `limit` profiles
with ids above `after`, by id, and whether more follow; `suppression_page(engine, after, limit)` the same for
the suppression list (keyed hashes, by hash: the addresses are not kept); `contact_view` is a contact's
console page (profile and timeline); `contact_id_for(engine, email)` finds an id by address (None when none);
`recent_imports` the latest imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from needlecast.audience.contacts import find_contact
from needlecast.audience.profile import Profile, contact_profile_by_id
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import NotFound
from needlecast.store.schema import contacts, suppressions


def contact_vocabulary(workspace: Workspace) -> Vocabulary:
    """The concerns a contact may take: the workspace's vocabulary (`vocabulary.names`), read now."""
    return load_vocabulary_for(workspace)


def profile(engine: Engine, contact_id: int, *, unmasked: bool = False) -> Profile:
    """The contact with this id; `NotFound` when there is none (an erased person's data is gone)."""
    with engine.connect() as conn:
        return contact_profile_by_id(conn, contact_id, unmasked=unmasked)


def profile_by_address(engine: Engine, email: str, *, unmasked: bool = False) -> Profile:
    """The contact with this address; `NotFound` naming the field `email` (never the address) when none."""
    with engine.connect() as conn:
        found = find_contact(conn, email)
        if found is None:
            raise NotFound("no contact with that address", what="contact", field="email")
        return contact_profile_by_id(conn, int(found["id"]), unmasked=unmasked)


@dataclass(frozen=True)
class ContactPage:
    items: list[Profile]
    more: bool  # whether contacts follow the last one


def contact_page(engine: Engine, after: int, limit: int) -> ContactPage:
    """Up to `limit` contacts with ids above `after`, by id, unmasked (the API's `contacts.view_unmasked`)."""
    with engine.connect() as conn:
        ids = [
            int(i)
            for i in conn.execute(
                select(contacts.c.id).where(contacts.c.id > after).order_by(contacts.c.id).limit(limit + 1)
            ).scalars()
        ]
        items = [contact_profile_by_id(conn, i, unmasked=True) for i in ids[:limit]]
    return ContactPage(items, len(ids) > limit)


@dataclass(frozen=True)
class SuppressionPage:
    items: list[dict[str, Any]]  # email_hash, reason, source, created_at
    more: bool


def suppression_page(engine: Engine, after: str, limit: int) -> SuppressionPage:
    """Up to `limit` suppressions with hashes above `after`, by hash."""
    with engine.connect() as conn:
        rows = (
            conn.execute(
                select(suppressions)
                .where(suppressions.c.email_hash > after)
                .order_by(suppressions.c.email_hash)
                .limit(limit + 1)
            )
            .mappings()
            .all()
        )
    return SuppressionPage([dict(r) for r in rows[:limit]], len(rows) > limit)


def contact_id_for(engine: Engine, email: str) -> int | None:
    """The id of the contact with this address; None when there is none or the text is not an address."""
    from needlecast.errors import NeedlecastError

    with engine.connect() as conn:
        try:
            found = find_contact(conn, email)
        except NeedlecastError:  # not an address at all: no contact has it
            return None
    return int(found["id"]) if found is not None else None


@dataclass(frozen=True)
class ContactView:
    """A contact's page: the profile, and its emails and events as one timeline, latest first."""

    profile: Profile
    timeline: list[dict[str, Any]]  # at, what, campaign, step, detail


def contact_view(engine: Engine, contact_id: int, *, unmasked: bool) -> ContactView:
    """The contact's page (see `ContactView`); `NotFound` when there is none."""
    shown = profile(engine, contact_id, unmasked=unmasked)
    timeline = [
        {
            "at": e["due_at"] if e["sent_at"] is None else e["sent_at"],
            "what": f"email {e['status']}" + (f" ({e['outcome']})" if e["outcome"] else ""),
            "campaign": e["campaign_id"],
            "step": e["step_id"],
            "detail": f"variant {e['variant']}",
        }
        for e in shown.emails
    ]
    timeline += [
        {"at": e["occurred_at"], "what": e["kind"], "campaign": e["campaign_id"], "step": e["step_id"], "detail": ""}
        for e in shown.events
    ]
    timeline.sort(key=lambda item: item["at"], reverse=True)
    return ContactView(shown, timeline)


def recent_imports(engine: Engine, limit: int = 10) -> list[dict[str, Any]]:
    """The latest `limit` imports of contact files, latest first (counts and file names only)."""
    from needlecast.store.schema import imports

    with engine.connect() as conn:
        rows = conn.execute(select(imports).order_by(imports.c.id.desc()).limit(limit)).mappings()
        return [dict(r) for r in rows]
