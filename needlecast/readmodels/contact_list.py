"""The console's contact list and what a contact's page adds to `contact_pages.contact_view`.

Contract:
- `contact_list(engine, workspace, wanted, page, unmasked=..., frames=None, now=None)` is a `ContactList`: the
  contacts that `wanted` (an `audience.contact_filter.ContactFilter`) matches, `PAGE_SIZE` a page, newest
  first, with how many match in all, and the choices the filters offer. Counted and paged in SQL (see
  `store.contact_search`); a segment's members come from the shared frame cache. Addresses and names are
  masked unless `unmasked`; sources and consent are in words; times stay instants (the page shows them on
  the clinic's clock). A page beyond the last shows the last. With `frames` (the web app), how many match a
  filter without a text, an address, chosen ids or activity (and how many contacts there are) is kept
  (`readmodels.kept`, until the audience's fingerprint changes, then counted again off the request:
  `counted_at`, `count_updating`); the page's rows are always read on the view.
- `selection_size(engine, workspace, selection, unmasked=..., frames=None)` is how many contacts a bulk
  action on `selection` would touch now.
- `contact_extras(engine, workspace, contact_id, unmasked=...)`: the person's name as the role may see it,
  their source and concerns in words, and their journey positions in words (`JourneyPlace`), latest first.
- `consent_in_words(history)`: a profile's consent history with purposes, actions and sources in words.
- `describe(workspace, wanted, unmasked)`: a filter in words, for a bulk action's confirmation.
- `mask_name(name)` is "K***" for "Kaia" (the first letter, as `mask_email` keeps it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from needlecast.audience.contact_export import ContactRow, contact_row, mask_name
from needlecast.audience.contact_filter import (
    ACTIVITY_CHOICES,
    CONSENT_CHOICES,
    SUPPRESSION_CHOICES,
    ContactFilter,
    Selection,
    selection_query,
    to_query,
)
from needlecast.audience.contact_filter import describe as describe_filter
from needlecast.audience.frame_cache import FrameCache, fingerprint
from needlecast.audience.segments import load_segments
from needlecast.audience.sources import NOT_RECORDED, source_words
from needlecast.campaign.definition.model import JOURNEY
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import NeedlecastError
from needlecast.readmodels.kept import KEPT, Shown
from needlecast.readmodels.plans import kept_context
from needlecast.store import contact_search

PAGE_SIZE = 50
JOURNEY_STATES = {
    "active": "Waiting",
    "done": "Finished",
    "exited": "Left early",
    "converted": "Reached the goal",
}

__all__ = [
    "ContactFilter",
    "ContactRow",
    "Selection",
    "contact_extras",
    "contact_list",
    "describe",
    "mask_name",
    "selection_size",
]


@dataclass(frozen=True)
class Choices:
    concerns: list[tuple[str, str]]  # (value, label)
    segments: list[str]
    sources: list[tuple[str, str]]  # (raw value, in words)
    journeys: list[tuple[str, str]] = field(default_factory=list)  # (id, name): live journeys people can be put in
    consent: dict[str, str] = field(default_factory=lambda: dict(CONSENT_CHOICES))
    suppressed: dict[str, str] = field(default_factory=lambda: dict(SUPPRESSION_CHOICES))
    activity: dict[str, str] = field(default_factory=lambda: dict(ACTIVITY_CHOICES))


@dataclass(frozen=True)
class ContactList:
    wanted: ContactFilter
    rows: list[ContactRow]
    total: int  # every contact the filter matches
    page: int  # 1-based
    pages: int  # at least 1
    first: int  # the number of the page's first row (1-based; 0 when none)
    everyone: int  # every contact in the store
    choices: Choices
    counted_at: datetime | None = None  # when `total` was counted, when the web app keeps it (UTC)
    count_updating: bool = False  # `total` predates a change to the audience: counted again meanwhile


def concern_labels(workspace: Workspace) -> dict[str, str]:
    """Each concern's name -> its label in the workspace's vocabulary ("acne" -> "Acne and scarring")."""
    vocabulary = load_vocabulary_for(workspace)
    return {name: vocabulary.label(name) for name in vocabulary.names}


def describe(workspace: Workspace, wanted: ContactFilter, unmasked: bool) -> list[str]:
    """`wanted` in words, one line a filter, concerns by their labels (for a bulk action's confirmation)."""
    return describe_filter(wanted, unmasked, concern_labels(workspace))


def _choices(conn: Any, workspace: Workspace) -> Choices:
    vocabulary = load_vocabulary_for(workspace)
    segments = load_segments(workspace.audiences_dir / "segments.yaml", vocabulary.names)
    return Choices(
        concerns=[(name, vocabulary.label(name)) for name in vocabulary.names],
        segments=list(segments),
        sources=[(raw, source_words(raw)) for raw in contact_search.sources(conn)],
        journeys=live_journeys(workspace),
    )


def live_journeys(workspace: Workspace) -> list[tuple[str, str]]:
    """(id, name) of each journey that is not a draft, by name: the ones the console can put people into. From
    the workspace's campaigns as kept until a file changes (`plans.kept_context`: parsing every article on
    each view of the list cost more than the list's own SQL)."""
    try:
        campaigns = kept_context(workspace).campaigns.values()
    except NeedlecastError:  # a campaign file that does not load: the list works without the choice
        return []
    found = [(c.id, c.name or c.id) for c in campaigns if c.kind == JOURNEY and not c.draft]
    return sorted(found, key=lambda item: item[1].lower())


def contact_list(
    engine: Engine,
    workspace: Workspace,
    wanted: ContactFilter,
    page: int,
    *,
    unmasked: bool,
    frames: FrameCache | None = None,
    now: datetime | None = None,
) -> ContactList:
    """A page of the contacts `wanted` matches (see the module contract)."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        query = to_query(conn, workspace, wanted, unmasked=unmasked, now=now, frames=frames)
        marks = fingerprint(conn) if frames is not None else None
        kept = _kept_count(engine, query, marks)
        counted = kept.figure if kept is not None else None
        total, found_ids = contact_search.find(conn, query, (page - 1) * PAGE_SIZE, PAGE_SIZE, counted=counted)
        pages = max(1, -(-total // PAGE_SIZE))
        if page > pages:  # beyond the last page: show the last
            page = pages
            found_ids = contact_search.find(conn, query, (page - 1) * PAGE_SIZE, PAGE_SIZE, counted=total)[1]
        page = max(1, page)
        if wanted.empty:
            everyone = total
        else:
            all_kept = _kept_count(engine, contact_search.ContactQuery(), marks)
            kept_all = all_kept.figure if all_kept is not None else None
            everyone = kept_all if kept_all is not None else contact_search.count(conn, contact_search.ContactQuery())
        found = contact_search.details(conn, found_ids)
        choices = _choices(conn, workspace)
    labels = concern_labels(workspace)
    rows = [contact_row(row, unmasked) for row in found]
    rows = [replace(r, concerns=[labels.get(c, c) for c in r.concerns]) for r in rows]
    first = (page - 1) * PAGE_SIZE + 1 if rows else 0
    at, updating = (kept.computed_at, kept.updating) if kept is not None else (None, False)
    return ContactList(wanted, rows, total, page, pages, first, everyone, choices, at, updating)


def _kept_count(engine: Engine, query: contact_search.ContactQuery, marks: object) -> Shown[int] | None:
    """How many contacts `query` matches, kept by the web app (`marks`: the audience's fingerprint; None: not
    kept) for a filter that does not change with the clock or name people (no text, address, ids or
    activity): counted once (one scan of the audience), then shown at once and counted again off the request
    when the audience changes. None for any other query: counted on the view. Never for an action's count."""
    plain = not (query.text or query.email or query.active_since or query.quiet_since)
    if marks is None or not plain or query.member_ids is not None or query.chosen_ids is not None:
        return None

    def count_now() -> int:
        with engine.connect() as conn:
            return contact_search.count(conn, query)

    return KEPT.ready(("contact count", str(engine.url), query), marks, count_now)


def selection_size(
    engine: Engine, workspace: Workspace, selection: Selection, *, unmasked: bool, frames: FrameCache | None = None
) -> int:
    """How many contacts `selection` holds now."""
    with engine.connect() as conn:
        query = selection_query(conn, workspace, selection, unmasked=unmasked, now=datetime.now(UTC), frames=frames)
        return contact_search.count(conn, query)


@dataclass(frozen=True)
class JourneyPlace:
    journey: str
    state: str  # in words
    step: str  # the step they are at, or left from
    since: datetime
    next_at: datetime | None  # when they move on (waiting only)
    entered_at: datetime
    left_at: datetime | None
    reason: str


@dataclass(frozen=True)
class ContactExtras:
    name: str  # first and last, masked unless unmasked
    source: str  # of their first consent, in words
    concerns: list[str]  # by their labels
    journeys: list[JourneyPlace]


def contact_extras(engine: Engine, workspace: Workspace, contact_id: int, *, unmasked: bool) -> ContactExtras:
    """What a contact's page shows beside its profile (see the module contract); names of a contact that is
    gone are ""."""
    with engine.connect() as conn:
        first, last, source = contact_search.names_of(conn, contact_id)
        places = contact_search.journey_positions_of(conn, contact_id)
        concerns = contact_search.concerns_of(conn, contact_id)
    labels = concern_labels(workspace)
    name = " ".join(n for n in (first, last) if n)
    journeys = [
        JourneyPlace(
            journey=p["campaign_id"],
            state=JOURNEY_STATES.get(p["state"], p["state"]),
            step=p["node"],
            since=p["since"],
            next_at=p["due_at"] if p["state"] == "active" else None,
            entered_at=p["entered_at"],
            left_at=p["left_at"],
            reason=p["reason"],
        )
        for p in places
    ]
    return ContactExtras(
        name if unmasked else mask_name(name),
        source_words(source) if source else NOT_RECORDED,
        [labels.get(c, c) for c in concerns],
        journeys,
    )


CONSENT_PURPOSES = {"marketing": "Marketing emails", "concern": "Use of their skin concern"}
CONSENT_ACTIONS = {
    "granted": "Agreed",
    "withdrawn": "Withdrew",
    "pending": "Asked to confirm",
    "confirmed": "Confirmed",
}


def consent_in_words(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A profile's consent history (`Profile.consent`) as its page says it: purpose, action and source in
    words, the moment as it was."""
    return [
        {
            "recorded_at": row["recorded_at"],
            "purpose": CONSENT_PURPOSES.get(row["purpose"], row["purpose"]),
            "action": CONSENT_ACTIONS.get(row["action"], row["action"]),
            "source": source_words(row["source"]),
        }
        for row in history
    ]
