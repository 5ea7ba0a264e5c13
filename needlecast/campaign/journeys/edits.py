"""Editing a live journey: what a change does to the people waiting in it, moving them explicitly, and the
check that finds positions an edit or a stopped sweeper left behind.

Contract:
- `preview_change(conn, campaign_id, old, new)`: how many wait at each node now, which removed nodes hold
  people (they need a destination), which waits changed (their people are re-timed), which nodes are new;
  changes nothing. `ChangePreview.describe()` says it in words, for the console and the CLI.
- `apply_change(conn, campaign, preview, moves, people, now)`: the people at each removed node go to
  `moves[node]` (a node of the new journey, where they arrive now, or `EXIT_MOVE`: they leave, with that
  reason); nobody is left at a removed node (`EditRefused` names a removed node with people and no
  destination, before anything changes) and nobody is re-run (a send node sends once per entry: its ledger
  key). Whoever waits at a wait whose timing changed is due by the new timing, counted from when they arrived.
- `check(conn, campaign, now, period)`: positions at nodes the journey no longer has (stranded), and
  positions due more than `period` ago (overdue: the sweeper has not run, or failed).
- `repair(conn, campaign, moves, people, now)`: the stranded people moved as `apply_change` moves them
  (overdue ones are advanced by the next sweep, which the caller may run at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import Connection

from needlecast.audience.segments import attributes_of
from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.journeys.leaving import leave
from needlecast.campaign.journeys.model import Journey, Node, WaitNode, WaitUntilNode
from needlecast.campaign.journeys.timing import arrival_due
from needlecast.errors import InvalidRequest
from needlecast.store import journeys as store
from needlecast.store.journeys import EXITED, Position

EXIT_MOVE = "exit"  # a destination for the people of a removed node: they leave the journey
REMOVED_REASON = "their node was removed by an edit"


class EditRefused(InvalidRequest):
    """A change would strand people: a removed node holds people and no destination (or an unknown one) was
    given. `field` names the request field (`moves.<node>`), for a 4xx that names it."""

    def __init__(self, message: str, *, field: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass
class ChangePreview:
    """What a change does to the people waiting (see the module contract)."""

    waiting: dict[str, int] = field(default_factory=dict)  # node -> active positions there now
    removed: dict[str, int] = field(default_factory=dict)  # a node the new file drops -> people there
    retimed: dict[str, int] = field(default_factory=dict)  # a wait whose timing changed -> people there
    added: list[str] = field(default_factory=list)

    def needs_destination(self, moves: Mapping[str, str]) -> list[str]:
        """The removed nodes with people and no destination in `moves`."""
        return [node for node, count in self.removed.items() if count and node not in moves]

    def describe(self, moves: Mapping[str, str] | None = None) -> list[str]:
        """The change in words, one line per node that it touches."""
        moves = moves or {}
        lines = []
        for node, count in self.removed.items():
            where = moves.get(node)
            fate = (
                "they leave the journey"
                if where == EXIT_MOVE
                else f"they move to '{where}'"
                if where
                else "choose where they go (a node, or exit) before saving"
            )
            lines.append(f"'{node}' is removed; {count} waiting there: {fate}")
        for node, count in self.retimed.items():
            lines.append(f"'{node}' waits differently; {count} waiting there are re-timed from when they arrived")
        lines.extend(f"'{node}' is new" for node in self.added)
        return lines or ["nothing changes for the people waiting"]


def _timing(node: Node) -> tuple[object, ...]:
    if isinstance(node, WaitNode):
        return (node.delay, node.until_time, node.until_date, node.offset, node.at, node.yearly)
    if isinstance(node, WaitUntilNode):
        return (node.timeout,)
    return ()


def preview_change(conn: Connection, campaign_id: str, old: Journey | None, new: Journey) -> ChangePreview:
    """What replacing `old` by `new` does to the journey's people (changes nothing)."""
    counts = store.counts_by_node(conn, campaign_id)
    waiting = {node: n for (node, state), n in counts.items() if state == store.ACTIVE}
    preview = ChangePreview(waiting=waiting)
    known = set(old.nodes) if old is not None else set()
    for node_id, count in waiting.items():
        if node_id not in new.nodes:
            preview.removed[node_id] = count
    for node_id, node in new.nodes.items():
        if node_id not in known:
            preview.added.append(node_id)
            continue
        assert old is not None
        before = old.nodes[node_id]
        changed = type(before) is not type(node) or _timing(before) != _timing(node)
        if changed and waiting.get(node_id) and isinstance(node, WaitNode | WaitUntilNode):
            preview.retimed[node_id] = waiting[node_id]
    return preview


def _due(campaign: Campaign, node: Node, people: pd.DataFrame, contact_id: int, since: datetime) -> datetime | None:
    if contact_id in people.index:
        row = people.loc[contact_id]
        return arrival_due(node, since, row["time_zone"] or campaign.time_zone, attributes_of(row["attributes"]))
    return arrival_due(node, since, campaign.time_zone, {})


def _move_out(
    conn: Connection,
    campaign: Campaign,
    positions: list[Position],
    target: str,
    people: pd.DataFrame,
    now: datetime,
) -> int:
    """Move `positions` to `target` (arriving now) or out of the journey (`EXIT_MOVE`)."""
    journey = campaign.journey
    assert journey is not None
    if target == EXIT_MOVE:
        return leave(conn, journey, campaign.id, [(p, REMOVED_REASON) for p in positions], EXITED, now)
    node = journey.nodes[target]
    moves, gone = [], []
    for position in positions:
        due = _due(campaign, node, people, position.contact_id, now)
        if due is None:
            gone.append((position, f"no date in {getattr(node, 'until_date', '')}"))
        else:
            moves.append((position, target, due))
    return store.move(conn, campaign.id, moves, now) + leave(conn, journey, campaign.id, gone, EXITED, now)


def _check_moves(campaign: Campaign, nodes: list[str], moves: Mapping[str, str]) -> None:
    journey = campaign.journey
    assert journey is not None
    for node in nodes:
        target = moves.get(node)
        if target is None:
            raise EditRefused(
                f"people wait at '{node}', which the journey no longer has: choose a node for them "
                f"({', '.join(journey.nodes)}) or exit",
                field=f"moves.{node}",
            )
        if target != EXIT_MOVE and target not in journey.nodes:
            raise EditRefused(
                f"'{target}' is not a node of the journey: use one of {', '.join(journey.nodes)}, or exit",
                field=f"moves.{node}",
            )


def apply_change(
    conn: Connection,
    campaign: Campaign,
    preview: ChangePreview,
    moves: Mapping[str, str],
    people: pd.DataFrame,
    now: datetime,
) -> dict[str, int]:
    """Move the people of removed nodes and re-time the changed waits (see the module contract); how many
    people each touched node's change moved or re-timed."""
    journey = campaign.journey
    assert journey is not None
    removed = [node for node, count in preview.removed.items() if count]
    _check_moves(campaign, removed, moves)
    done: dict[str, int] = {}
    if removed:
        for position_group, node in _grouped(store.waiting(conn, campaign.id, removed)):
            done[node] = _move_out(conn, campaign, position_group, moves[node], people, now)
    if preview.retimed:
        retimed = []
        for position in store.waiting(conn, campaign.id, list(preview.retimed)):
            due = _due(campaign, journey.nodes[position.node], people, position.contact_id, position.since)
            retimed.append((position, due or now))
            done[position.node] = done.get(position.node, 0) + 1
        store.reschedule(conn, campaign.id, retimed)
    return done


def _grouped(positions: list[Position]) -> list[tuple[list[Position], str]]:
    by_node: dict[str, list[Position]] = {}
    for position in positions:
        by_node.setdefault(position.node, []).append(position)
    return [(group, node) for node, group in by_node.items()]


@dataclass
class CheckReport:
    """What `check` found in one journey."""

    campaign_id: str
    stranded: dict[str, int] = field(default_factory=dict)  # a node the journey no longer has -> people there
    overdue: int = 0  # due longer ago than the sweeper's period
    oldest_due: datetime | None = None

    @property
    def healthy(self) -> bool:
        return not self.stranded and not self.overdue


def check(conn: Connection, campaign: Campaign, now: datetime, period: timedelta) -> CheckReport:
    """Stranded and overdue positions of the journey (changes nothing)."""
    journey = campaign.journey
    assert journey is not None
    report = CheckReport(campaign.id)
    for (node, state), count in store.counts_by_node(conn, campaign.id).items():
        if state == store.ACTIVE and node not in journey.nodes:
            report.stranded[node] = count
    late = [p for p in store.overdue(conn, campaign.id, now - period) if p.node in journey.nodes]
    report.overdue = len(late)
    report.oldest_due = min((p.due_at for p in late), default=None)
    return report


def repair(
    conn: Connection, campaign: Campaign, moves: Mapping[str, str], people: pd.DataFrame, now: datetime
) -> dict[str, int]:
    """Move the stranded people of each node named in `moves` (see `apply_change`); how many per node."""
    journey = campaign.journey
    assert journey is not None
    stranded = {
        node: count
        for (node, state), count in store.counts_by_node(conn, campaign.id).items()
        if state == store.ACTIVE and node not in journey.nodes
    }
    _check_moves(campaign, list(stranded), moves)
    return apply_change(conn, campaign, ChangePreview(removed=stranded), moves, people, now)
