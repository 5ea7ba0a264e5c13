"""The journey engine's forecast: how many emails each send node is expected to send per day over the next days,
from where people are now (their positions and due moments) and the emails already queued in the ledger.

Contract: `forecast(campaign_id, journey, waiting, queued, now, horizon, people=..., zone_name=...)` returns one
row per (send node, moment) with `emails`, `at_most` and `queued`:
- `queued`: emails already in the ledger (deferred by quiet hours, the cap or warm-up) due by the horizon.
- Each waiting person walks the journey from their node, as the sweeper would move them: a fixed wait ends
  after its delay (a sequence's, counted from entry), a time-of-day or date wait in the person's zone
  (their attributes; a missing date ends the walk, as the sweeper lets them leave), a split by its stable
  percentages (the same cohort the sweeper gives each person), a goto at once, an exit or the end stops.
- What the forecast cannot know is counted as an upper bound (`at_most`): after a wait-until, both the
  timeout path (at the timeout) and the event's path (as if it happened at once); after a branch, every
  path. A person reaching the goal, unsubscribing or leaving early sends fewer; newcomers are not counted
  (the caller adds the people who would enter now as positions of their own).
- Quiet hours and the frequency cap are not applied: a moment in quiet hours is the moment the sweeper
  enqueues the email, which then goes at their end.
Deterministic: the same positions and `now` give the same rows (tests count them by hand).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pandas as pd

from needlecast.campaign.journeys.model import (
    BranchNode,
    ExitNode,
    Journey,
    SendNode,
    SplitNode,
    WaitNode,
    WaitUntilNode,
    node_of_step,
    split_point,
)
from needlecast.campaign.journeys.timing import arrival_due, utc
from needlecast.store.journeys import Position

FORECAST_COLUMNS = ["node", "due_at", "emails", "at_most", "queued"]
_MAX_HOPS = 10_000  # a safety net per walk: walks end at the horizon (cycles without a wait are refused at load)


@dataclass(frozen=True)
class _Walk:
    """People walking together: at `node`, arriving at `at`, who entered at `entered`."""

    node: str
    at: datetime
    entered: datetime
    ids: tuple[int, ...]
    at_most: bool
    acting: bool = False  # True: `at` is when the node acts (a position read with its due moment)
    hops: int = 0  # steps walked so far


def forecast(
    campaign_id: str,
    journey: Journey,
    waiting: Sequence[Position],
    queued: Sequence[tuple[str, datetime, int]],
    now: datetime,
    horizon: datetime,
    *,
    people: Mapping[int, tuple[str, dict[str, Any]]] | None = None,
    zone_name: str = "UTC",
) -> pd.DataFrame:
    """The rows of the forecast (see the module contract), `FORECAST_COLUMNS`, in moment and node order."""
    counts: Counter[tuple[str, datetime, bool, bool]] = Counter()
    for step_id, due, count in queued:
        if utc(due) <= horizon:
            counts[(node_of_step(step_id), max(utc(due), now), False, True)] += count
    groups: dict[tuple[str, datetime, datetime], list[int]] = {}
    for p in waiting:
        groups.setdefault((p.node, max(utc(p.due_at), now), utc(p.entered_at)), []).append(p.contact_id)
    stack = [_Walk(node, at, entered, tuple(ids), False, True) for (node, at, entered), ids in groups.items()]
    walker = _Walker(campaign_id, journey, people or {}, zone_name, now, horizon, counts)
    while stack:
        walk = stack.pop()
        if walk.hops < _MAX_HOPS:
            stack.extend(walker.step(walk))
    rows = [(node, at, n, at_most, was_queued) for (node, at, at_most, was_queued), n in counts.items() if n]
    frame = pd.DataFrame(rows, columns=FORECAST_COLUMNS)
    return frame.sort_values(["due_at", "node", "at_most", "queued"], ignore_index=True)


@dataclass
class _Walker:
    campaign_id: str
    journey: Journey
    people: Mapping[int, tuple[str, dict[str, Any]]]
    zone_name: str
    now: datetime
    horizon: datetime
    counts: Counter[tuple[str, datetime, bool, bool]]

    def step(self, walk: _Walk) -> list[_Walk]:
        """The walks that follow `walk`: its node's moment first (unless known), then what the node does."""
        node = self.journey.nodes.get(walk.node)
        if node is None or walk.at > self.horizon:
            return []
        if not walk.acting:
            return self._arrive(walk)
        if isinstance(node, SendNode):
            self.counts[(node.id, walk.at, walk.at_most, False)] += len(walk.ids)
            return self._next(walk, node.next)
        if isinstance(node, ExitNode):
            return []
        if isinstance(node, WaitUntilNode):
            happened = replace(walk, at=max(walk.at - node.timeout, self.now))  # as if it came at once
            return self._next(walk, node.on_timeout, at_most=True) + self._next(happened, node.next, at_most=True)
        if isinstance(node, BranchNode):
            targets = dict.fromkeys([*(p.target for p in node.paths), node.next])
            return [w for t in targets for w in self._next(walk, t, at_most=True)]
        if isinstance(node, SplitNode):
            return self._split(walk, node)
        return self._next(walk, node.next)  # a wait that ended, a goto

    def _next(self, walk: _Walk, target: str, *, at_most: bool = False) -> list[_Walk]:
        if not target:
            return []
        return [_Walk(target, walk.at, walk.entered, walk.ids, walk.at_most or at_most, False, walk.hops + 1)]

    def _split(self, walk: _Walk, node: SplitNode) -> list[_Walk]:
        cohorts: dict[str, list[int]] = {}
        for contact_id in walk.ids:
            point, edge = split_point(self.campaign_id, node.id, contact_id), 0
            for path in node.paths:
                edge += path.percent
                if point < edge:
                    cohorts.setdefault(path.target, []).append(contact_id)
                    break
        return [w for target, ids in cohorts.items() for w in self._next(_with(walk, ids), target)]

    def _arrive(self, walk: _Walk) -> list[_Walk]:
        """When the node acts for people arriving at `walk.at` (each in their own zone where it matters)."""
        node = self.journey.nodes[walk.node]
        if isinstance(node, WaitNode) and node.from_entry and node.delay is not None:
            return [_acting(walk, walk.entered + node.delay)]
        personal = isinstance(node, WaitNode) and node.delay is None
        if not personal:
            due = arrival_due(node, walk.at, self.zone_name, {})
            return [_acting(walk, due or walk.at)]
        moments: dict[datetime, list[int]] = {}
        for contact_id in walk.ids:
            zone, attributes = self.people.get(contact_id, (self.zone_name, {}))
            due = arrival_due(node, walk.at, zone or self.zone_name, attributes)
            if due is not None:  # no date: the sweeper lets them leave
                moments.setdefault(due, []).append(contact_id)
        return [_acting(_with(walk, ids), due) for due, ids in moments.items()]


def _with(walk: _Walk, ids: list[int]) -> _Walk:
    return _Walk(walk.node, walk.at, walk.entered, tuple(ids), walk.at_most, walk.acting, walk.hops)


def _acting(walk: _Walk, at: datetime) -> _Walk:
    return _Walk(walk.node, at, walk.entered, walk.ids, walk.at_most, True, walk.hops + 1)
