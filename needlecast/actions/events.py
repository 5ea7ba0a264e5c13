"""Event actions: record events from the clinic's systems (bookings, purchases...), each stored once per id.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.audience.events import ContactEvent, store_events, validate_event
from needlecast.audience.events import EventProblem as EventProblem  # what `Recorded.rejected` holds
from needlecast.store.helpers import utcnow


@dataclass(frozen=True)
class Recorded:
    """What `record_events` did: `stored + duplicates + dropped + len(rejected)` is the batch's length."""

    stored: int
    duplicates: int  # already stored under the same id (a retry)
    dropped: int  # for an erased address: never stored
    rejected: list[EventProblem]  # each bad item with its place in the batch, its field and the fix


def record_events(engine: Engine, actor: Actor, items: Iterable[Any], source: str) -> Recorded:
    """Validate each raw event (`audience.events.validate_event`: a bad one is rejected on its own, naming its
    field) and store the good ones once per id, tagged with `source`. Needs `events.write`; audited as
    `events.stored` with every count (no addresses), in the same transaction as the events."""
    require(actor, "events.write")
    good: list[ContactEvent] = []
    bad: list[EventProblem] = []
    for index, item in enumerate(items):
        result = validate_event(item, index)
        if isinstance(result, EventProblem):
            bad.append(result)
        else:
            good.append(result)
    with engine.begin() as conn:
        stored = store_events(conn, good, source, utcnow())
        audit.record(
            conn,
            actor,
            "events.stored",
            "events",
            stored=stored.stored,
            duplicates=stored.duplicates,
            dropped=stored.dropped,
            rejected=len(bad),
        )
    return Recorded(stored.stored, stored.duplicates, stored.dropped, bad)
