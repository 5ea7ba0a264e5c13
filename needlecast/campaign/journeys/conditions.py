"""Branch and entry conditions, judged for many people at once, and the facts they read (events, engagement,
future appointments), loaded once per sweep of a journey.

Contract: `holds(condition, people, facts, now)` returns a boolean Series over `people` (a contact frame
indexed by contact id, with `entries`: each person's entry number in this journey, and `since`: when they
arrived at the node asking). A contact event counts when it occurred within `within` before `now` (any time
when no `within`); an engagement counts when it is with the email of the named node in the same entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection

from needlecast.audience.segments import attributes_of
from needlecast.campaign.journeys.model import Condition, Engagement
from needlecast.campaign.plan.rules import load_events
from needlecast.store import journeys as store

_COLUMNS = ("concerns", "tags", "time_zone", "status", "locale", "first_name", "last_name")


@dataclass
class Facts:
    """What the journey's conditions read, loaded lazily once per sweep."""

    conn: Connection
    campaign_id: str
    event_types: tuple[str, ...]
    _events: dict[str, dict[int, list[datetime]]] | None = None
    _engagement: dict[Engagement, dict[tuple[int, int], datetime]] = field(default_factory=dict)

    def events(self, kind: str) -> dict[int, list[datetime]]:
        """contact -> the moments of their contact events of type `kind`."""
        if self._events is None:
            self._events = {}
            frame = load_events(self.conn, self.event_types)
            for contact_id, name, when in frame.itertuples(index=False):
                moment = pd.Timestamp(when)
                moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
                self._events.setdefault(str(name), {}).setdefault(int(contact_id), []).append(moment.to_pydatetime())
        return self._events.get(kind, {})

    def engaged(self, engagement: Engagement) -> dict[tuple[int, int], datetime]:
        """(contact, entry) -> when they first engaged so with the node's email."""
        if engagement not in self._engagement:
            self._engagement[engagement] = store.engagements(
                self.conn, self.campaign_id, engagement.node, engagement.action, engagement.link
            )
        return self._engagement[engagement]


def _attribute(people: pd.DataFrame, name: str) -> pd.Series:
    if name in people.columns and name in _COLUMNS:
        return people[name].astype(str).str.lower()
    return pd.Series(
        [
            str(attributes_of(a).get(name, "")).lower() if attributes_of(a).get(name) is not None else ""
            for a in people["attributes"]
        ],
        index=people.index,
        dtype=object,
    )


def holds(condition: Condition, people: pd.DataFrame, facts: Facts, now: datetime) -> pd.Series:
    """Whether `condition` holds for each of `people` (see the module contract)."""
    if condition.field:
        values = _attribute(people, condition.field)
        if condition.equals is not None:
            return values == condition.equals
        return (values != "") == bool(condition.exists)
    if condition.concern:
        own = people["concerns"].fillna("").map(lambda c: condition.concern in str(c).split(";"))
        return own & people["concern_consent"].astype(bool)
    if condition.tag:
        return people["tags"].fillna("").map(lambda t: condition.tag in str(t).split(";"))
    if condition.consent:
        return people["concern_consent"].astype(bool)
    if condition.event:
        moments = facts.events(condition.event)
        start = now - condition.within if condition.within is not None else None
        return pd.Series(
            [any(start is None or t >= start for t in moments.get(int(c), ())) for c in people.index],
            index=people.index,
            dtype=bool,
        )
    assert condition.engagement is not None
    engaged = facts.engaged(condition.engagement)
    return pd.Series(
        [(int(c), int(e)) in engaged for c, e in zip(people.index, people["entry"], strict=True)],
        index=people.index,
        dtype=bool,
    )


def all_hold(conditions: Iterable[Condition], people: pd.DataFrame, facts: Facts, now: datetime) -> pd.Series:
    mask = pd.Series(True, index=people.index, dtype=bool)
    for condition in conditions:
        mask &= holds(condition, people, facts, now)
    return mask
