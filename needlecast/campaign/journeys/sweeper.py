"""The sweeper: one job that advances every journey's due positions, in set operations, never a job per person.

One sweep of a journey, at `now`:
1. entries: whom the entry admits and the re-entry rule lets in start at the first node (`entries`); only
   the segment's members without an active position are judged;
2. early leaves: whoever reached the goal converts, wherever they are; whoever is suppressed, withdrew
   consent or was erased exits, with that reason; their emails still queued are held back (`leaving`); only
   the positions of the people concerned are read;
3. wait-untils: whoever is waiting for an event or an engagement that happened since they arrived goes on;
4. rounds: the due positions, node by node, each node's people at once: a send enqueues their emails in the
   ledger, a branch or a split sorts them, a wait lets them go on, an exit ends their entry. Whoever arrives
   at a node due at once goes on in the same round, as far as they go without waiting (cycles without a wait
   are refused at load, so this ends): each position is written once per round, where it ends (`_walk`).

Exactly once: each round's position moves and ledger rows are written in one transaction, the ledger row's
key is (campaign, node, contact, entry) (`model.ledger_step`), and every move is a compare-and-set on the
node and the moment the position was read (`store.journeys`), written first: only the positions that moved
enqueue their emails. A crash anywhere loses the whole round or none of it; two sweepers at once enqueue
each email once, and only one of them moves each position (on PostgreSQL a journey's rounds take turns,
`store.journeys.lock_journey`).

The audience is read with the columns the journeys' segments, conditions and rules read (`frame_columns`),
not every column: a million-person sweep holds about 400-500 MB at its peak.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from needlecast import ledger
from needlecast.audience.membership import evaluate, load_frame_for
from needlecast.audience.segments import attributes_of, variant_for
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import JOURNEY, SEQUENCE, Campaign
from needlecast.campaign.journeys import entries as entering
from needlecast.campaign.journeys.conditions import Facts, all_hold
from needlecast.campaign.journeys.leaving import END_OF_JOURNEY, hold_back, leave
from needlecast.campaign.journeys.model import (
    BranchNode,
    ExitNode,
    GotoNode,
    Journey,
    Node,
    SendNode,
    SplitNode,
    WaitNode,
    WaitUntilNode,
    choice_nodes,
    ledger_step,
    split_point,
)
from needlecast.campaign.journeys.sendtimes import SendRules, send_times
from needlecast.campaign.journeys.timing import arrival_due, utc
from needlecast.campaign.plan.rules import arm_for
from needlecast.campaign.plan.scheduling import schedule_campaign
from needlecast.campaign.send.state import ACTIVE
from needlecast.config import Workspace
from needlecast.content.model import GENERAL
from needlecast.errors import NeedlecastError
from needlecast.store import journeys as store
from needlecast.store.delivery import delivery_store
from needlecast.store.journeys import CONVERTED, DONE, EXITED, Position

log = logging.getLogger("needlecast.campaign.journeys")
ROUND_SIZE = 50_000  # due positions read and advanced per round
MAX_ROUNDS = 10_000  # a safety net only: without goto cycles, rounds end when nothing is due
NO_CONTENT = "no content for their concern"


@dataclass
class SweepReport:
    """What one sweep of one journey did."""

    campaign_id: str
    entered: int = 0
    moved: int = 0
    enqueued: int = 0
    converted: int = 0
    left: Counter[str] = field(default_factory=Counter)  # reason -> how many left the journey
    deferred: Counter[str] = field(default_factory=Counter)  # reason -> emails held back (quiet hours, cap)
    rounds: int = 0
    blocked: str = ""  # why nothing moved (paused, cancelled, a problem of the journey's)


@dataclass
class _Round:
    """What a round decided, applied in one transaction."""

    moves: list[tuple[Position, str]] = field(default_factory=list)  # -> node id
    leaves: list[tuple[Position, str, str]] = field(default_factory=list)  # reason, state
    sends: list[tuple[Position, SendNode]] = field(default_factory=list)


def sweep_seconds(workspace: Workspace) -> int:
    """The journeys job's period: the sweeper's (`[schedule] sweep_interval_seconds`). A position due longer
    ago than that is overdue (`needlecast journey check`)."""
    return int(workspace.settings.schedule.sweep_interval_seconds)


def journeys_of(ctx: CampaignContext) -> list[Campaign]:
    """The live journeys (drafts are planned and previewed only)."""
    return [c for c in ctx.campaigns.values() if c.kind == JOURNEY and c.journey is not None and not c.draft]


def sweep_all(
    engine: Engine, ctx: CampaignContext, now: datetime, *, after_round: Callable[[], None] | None = None
) -> list[SweepReport]:
    """Sweep every live journey at `now`; a journey that fails is logged (ids only) and the others go on."""
    journeys = journeys_of(ctx)
    if not journeys:
        return []
    with engine.connect() as conn:
        frame = load_frame_for(conn, [ctx.segments[c.segment] for c in journeys], also=frame_columns(journeys))
    reports = []
    for campaign in journeys:
        try:
            reports.append(sweep_journey(engine, ctx, campaign, now, frame=frame, after_round=after_round))
        except NeedlecastError as err:  # one journey's problem never stops the others
            log.error("journey %s not swept: %s", campaign.id, err)
            reports.append(SweepReport(campaign.id, blocked=str(err)))
    return reports


def sweep_journey(
    engine: Engine,
    ctx: CampaignContext,
    campaign: Campaign,
    now: datetime,
    *,
    frame: pd.DataFrame | None = None,
    after_round: Callable[[], None] | None = None,
) -> SweepReport:
    """One sweep of one journey (see the module docstring). `after_round` is called after each committed round
    (tests stop a sweep there, or wait on it)."""
    journey = campaign.journey
    assert journey is not None
    report = SweepReport(campaign.id)
    writer = delivery_store(engine)
    with writer.writing() as conn:
        state = schedule_campaign(conn, campaign, (), now)
    if state["status"] != ACTIVE:  # paused or cancelled: nobody enters or moves until it is resumed
        report.blocked = f"the journey is {state['status']}"
        return report
    started_at = utc(state["started_at"])
    if frame is None:
        with engine.connect() as conn:
            frame = load_frame_for(conn, [ctx.segments[campaign.segment]], also=frame_columns([campaign]))
    people = frame.set_index("id", drop=False)
    types = tuple(sorted({*journey.event_types, *campaign.event_types}))  # a sequence's exits read events too
    with writer.writing() as conn:
        store.lock_journey(conn, campaign.id)
        if campaign.kind == SEQUENCE:
            _adopt_enrolments(conn, campaign, journey)
        facts = Facts(conn, campaign.id, types)
        active = store.active_contacts(conn, campaign.id)
        report.entered = _entries(conn, ctx, campaign, frame, people, active, facts, now, started_at)
        _leave_early(conn, campaign, journey, people, active, facts, now, report)
        _events_arrived(conn, campaign, journey, people, facts, now, report)
        if campaign.kind == SEQUENCE:
            _realign(conn, campaign, journey, now)
    if after_round is not None:
        after_round()
    concerns = ctx.segments[campaign.segment].concerns
    rules = SendRules(ctx.workspace.settings.schedule)
    while report.rounds < MAX_ROUNDS:
        with writer.writing() as conn:
            store.lock_journey(conn, campaign.id)
            due = store.due(conn, campaign.id, now, ROUND_SIZE, nodes=list(journey.nodes))
            if not due:
                break
            facts = Facts(conn, campaign.id, types)
            plan = _decide(campaign, journey, due, people, facts, now)
            _apply(conn, campaign, journey, plan, people, concerns, now, report, rules, facts)
        report.rounds += 1
        if after_round is not None:
            after_round()
    return report


def frame_columns(campaigns: Iterable[Campaign]) -> set[str]:
    """The contact columns a sweep of these journeys reads besides their segments' (`load_frame_for`): the
    variant's and the send time's, those their conditions and a sequence's enrolment and exit rules name."""
    wanted = {"concerns", "concern_consent", "time_zone", "status", "marketing_consent", "attributes"}
    for campaign in campaigns:
        journey = campaign.journey
        assert journey is not None
        conditions = [*journey.entry.where]
        for node in journey.nodes.values():
            if isinstance(node, BranchNode):
                conditions.extend(c for path in node.paths for c in path.conditions)
        wanted.update(c.field for c in conditions if c.field)
        wanted.update("tags" for c in conditions if c.tag)
        wanted.update(rule.field for rule in campaign.exits if rule.field)
        if campaign.kind == SEQUENCE:  # its enrolment rule reads tags and sign-up moments
            wanted.update(("tags", "signed_up_at"))
    return wanted


def _entries(
    conn: Connection,
    ctx: CampaignContext,
    campaign: Campaign,
    frame: pd.DataFrame,
    people: pd.DataFrame,
    active: np.ndarray,
    facts: Facts,
    now: datetime,
    started_at: datetime,
) -> int:
    """Whom the entry admits now goes in (see `entries`); how many. Whoever holds an active position is never
    admitted (at most one active entry, always their latest), so only the other members are judged, and only
    their latest entries are read (not a million of everyone's)."""
    journey = campaign.journey
    assert journey is not None
    member_ids = evaluate(ctx.segments[campaign.segment], frame, now).members["id"].to_numpy()
    candidates = member_ids[~np.isin(member_ids, active)]
    members = people.loc[people.index.isin(candidates)]
    triggered = entering.triggers(conn, campaign, members, facts, now, started_at)
    latest = store.latest_entries(conn, campaign.id, list(triggered)) if triggered else {}
    admitted = entering.admit(triggered, latest, journey.reentry, now)
    return enter(conn, campaign, admitted, people, now)


def enter(
    conn: Connection,
    campaign: Campaign,
    admitted: list[tuple[int, int, datetime | None]],
    people: pd.DataFrame,
    now: datetime,
) -> int:
    """Insert the admitted people's positions at the journey's first node; how many went in."""
    journey = campaign.journey
    assert journey is not None
    first = journey.nodes[journey.start]
    rows = []
    for contact_id, number, trigger in admitted:
        due = _due_at(campaign, first, people, contact_id, now) or now
        rows.append(
            {
                "campaign_id": campaign.id,
                "contact_id": contact_id,
                "entry": number,
                "node": first.id,
                "state": store.ACTIVE,
                "since": now,
                "due_at": due,
                "entered_at": now,
                "trigger_at": trigger,
                "left_at": None,
                "reason": "",
            }
        )
    went_in = store.entered(conn, rows)
    if campaign.kind == SEQUENCE:
        store.record_enrolments(conn, campaign.id, went_in, now)
    return len(went_in)


def _adopt_enrolments(conn: Connection, campaign: Campaign, journey: Journey) -> None:
    """Positions for the people a sequence enrolled before it ran as a journey: each starts again at the first
    node as of their enrolment. Its waits count from entry and its sends' ledger keys are the steps' own,
    so they walk past what they already had without a second email and are due where they were."""
    first = journey.nodes[journey.start]
    rows = []
    for contact_id, enrolled_at, exited_at, reason in store.unadopted_enrolments(conn, campaign.id):
        since = utc(enrolled_at)
        due = arrival_due(first, since, campaign.time_zone, {}) or since
        rows.append(
            {
                "campaign_id": campaign.id,
                "contact_id": contact_id,
                "entry": 1,
                "node": first.id,
                "state": store.ACTIVE if exited_at is None else EXITED,
                "since": since,
                "due_at": due if exited_at is None else utc(exited_at),
                "entered_at": since,
                "trigger_at": None,
                "left_at": None if exited_at is None else utc(exited_at),
                "reason": reason[:120],
            }
        )
    if rows:
        log.info("sequence %s: %d enrolment(s) adopted as positions", campaign.id, store.enter(conn, rows))


def _realign(conn: Connection, campaign: Campaign, journey: Journey, now: datetime) -> None:
    """A sequence whose file changed: whoever waits at a step that is gone starts again at the first node
    (the ledger keeps them from a second email), and a changed delay applies to those waiting for it."""
    first = journey.nodes[journey.start]
    restart, reschedule = [], []
    for position in store.waiting(conn, campaign.id):
        node = journey.nodes.get(position.node)
        if node is None:
            restart.append((position, first.id, utc(position.entered_at) + _delay(first)))
        elif isinstance(node, WaitNode) and node.from_entry:
            due = utc(position.entered_at) + _delay(node)
            if due != utc(position.due_at):
                reschedule.append((position, due))
    store.move(conn, campaign.id, restart, now)
    store.reschedule(conn, campaign.id, reschedule)


def _delay(node: Node) -> timedelta:
    if isinstance(node, WaitNode) and node.delay is not None:
        return node.delay
    return timedelta(0)


def _due_at(campaign: Campaign, node: Node, people: pd.DataFrame, contact_id: int, since: datetime) -> datetime | None:
    if contact_id in people.index:
        row = people.loc[contact_id]
        return arrival_due(node, since, row["time_zone"] or campaign.time_zone, attributes_of(row["attributes"]))
    return arrival_due(node, since, campaign.time_zone, {})


def _leave_early(
    conn: Connection,
    campaign: Campaign,
    journey: Journey,
    people: pd.DataFrame,
    active: np.ndarray,
    facts: Facts,
    now: datetime,
    report: SweepReport,
) -> None:
    """The goal converts whoever reached it since they entered; suppression, consent and erasure end entries.
    Only the positions of the people concerned are read (`_may_leave`): not a million waiting ones."""
    goal = facts.events(journey.goal) if journey.goal else {}
    blocked = _unmailable(people)
    concerned = _may_leave(campaign, people, active, facts, goal, blocked)
    waiting = store.waiting(conn, campaign.id, contacts=concerned) if concerned else []
    converted, exited = [], []
    for position in waiting:
        if any(t >= utc(position.entered_at) for t in goal.get(position.contact_id, ())):
            converted.append((position, f"goal: {journey.goal}"))
            continue
        reason = blocked.get(position.contact_id, "") if position.contact_id in people.index else "erased"
        reason = reason or _exit_rule(campaign, people, facts, position)
        if reason:
            exited.append((position, reason))
    report.converted += leave(conn, journey, campaign.id, converted, CONVERTED, now)
    report.left.update(reason for _, reason in exited)
    leave(conn, journey, campaign.id, exited, EXITED, now)
    if campaign.kind == SEQUENCE:
        store.record_exits(conn, campaign.id, {p.contact_id: r for p, r in exited}, now)


def _may_leave(
    campaign: Campaign,
    people: pd.DataFrame,
    active: np.ndarray,
    facts: Facts,
    goal: dict[int, list[datetime]],
    blocked: dict[int, str],
) -> list[int]:
    """The contacts whose positions `_leave_early` must judge, a superset of those who leave: whoever had the
    goal's event, may not be mailed, was erased (a position without a contact), or meets a sequence exit
    rule's attribute or had its event."""
    concerned = set(goal) | set(blocked)
    concerned.update(active[~np.isin(active, people.index.to_numpy())].tolist())
    for rule in campaign.exits:
        if rule.event:
            concerned.update(facts.events(rule.event))
            continue
        own = people[rule.field].tolist() if rule.field in people.columns else [None] * len(people)
        values = (attributes_of(a).get(rule.field, v) for a, v in zip(people["attributes"], own, strict=True))
        meets = [v is not None and str(v).lower() == rule.equals for v in values]  # as `_exit_rule` judges
        concerned.update(people.index[np.array(meets, dtype=bool)].tolist())
    return sorted(concerned)


def _exit_rule(campaign: Campaign, people: pd.DataFrame, facts: Facts, position: Position) -> str:
    """The sequence exit rule the person meets, in words ("booked = yes", "event booked"), else "": an
    attribute's value, or an event since what started their entry (their sign-up, the enrolling event)."""
    if not campaign.exits:
        return ""
    row = people.loc[position.contact_id]
    attributes = attributes_of(row["attributes"])
    start = min(utc(position.trigger_at or position.entered_at), utc(position.entered_at))
    for rule in campaign.exits:  # the attribute rules first, then the events, as sequences always judged them
        value = None if rule.event else attributes.get(rule.field, row[rule.field] if rule.field in row.index else None)
        if value is not None and str(value).lower() == rule.equals:
            return f"{rule.field} = {rule.equals}"
    for rule in campaign.exits:
        if rule.event and any(utc(t) >= start for t in facts.events(rule.event).get(position.contact_id, ())):
            return f"event {rule.event}"
    return ""


def _unmailable(people: pd.DataFrame) -> dict[int, str]:
    """contact -> why they may not be mailed (suppressed, consent withdrawn), for everyone at once."""
    suppressed = people["suppressed"].map(lambda v: v if isinstance(v, str) else "")
    no_consent = (people["status"] == "pending") | ~people["marketing_consent"].astype(bool)
    reasons = suppressed.where(suppressed != "", no_consent.map({True: "consent withdrawn", False: ""}))
    reasons = reasons[reasons != ""]
    return {int(c): str(r) for c, r in reasons.items()}


def _cannot_be_mailed(people: pd.DataFrame, contact_ids: list[int]) -> list[str]:
    """Why each of these contacts may not be mailed ("erased", a suppression, "consent withdrawn"), else "",
    judged column-wise for all of them at once (a row lookup per person costs a sweep tens of seconds)."""
    present = people.index.intersection(pd.Index(contact_ids).unique())
    blocked = _unmailable(people.loc[present])
    known = set(present.tolist())
    return [blocked.get(c, "") if c in known else "erased" for c in contact_ids]


def _events_arrived(
    conn: Connection,
    campaign: Campaign,
    journey: Journey,
    people: pd.DataFrame,
    facts: Facts,
    now: datetime,
    report: SweepReport,
) -> None:
    """Whoever waits for an event or an engagement that happened since they arrived goes on at once."""
    nodes = {n.id: n for n in journey.nodes.values() if isinstance(n, WaitUntilNode)}
    if not nodes:
        return
    plan = _Round()
    for position in store.waiting(conn, campaign.id, list(nodes)):
        node = nodes[position.node]
        since = utc(position.since)
        if node.event:
            happened = any(since <= t <= now for t in facts.events(node.event).get(position.contact_id, ()))
        else:
            assert node.engagement is not None
            moment = facts.engaged(node.engagement).get((position.contact_id, position.entry))
            happened = moment is not None and since <= utc(moment) <= now
        if happened:
            plan.moves.append((position, node.next) if node.next else (position, ""))
    plan.leaves.extend((p, END_OF_JOURNEY, DONE) for p, target in plan.moves if not target)
    plan.moves = [(p, t) for p, t in plan.moves if t]
    _apply(conn, campaign, journey, plan, people, (), now, report)


_split_point = split_point  # its former name (tests/test_journeys.py reads it)


def _decide(
    campaign: Campaign, journey: Journey, due: list[Position], people: pd.DataFrame, facts: Facts, now: datetime
) -> _Round:
    """What each due position does at its node (nothing is written here)."""
    plan = _Round()
    by_node: dict[str, list[Position]] = {}
    for position in due:
        by_node.setdefault(position.node, []).append(position)
    for node_id, group in by_node.items():
        node = journey.nodes[node_id]
        if isinstance(node, SendNode):
            plan.sends.extend((p, node) for p in group)
        elif isinstance(node, BranchNode):
            plan.moves.extend(_branch(node, group, people, facts, now))
        elif isinstance(node, SplitNode):
            for position in group:
                point, edge = split_point(campaign.id, node.id, position.contact_id), 0
                for path in node.paths:
                    edge += path.percent
                    if point < edge:
                        plan.moves.append((position, path.target))
                        break
        elif isinstance(node, WaitUntilNode):
            plan.moves.extend((p, node.on_timeout) for p in group)  # timed out
        elif isinstance(node, ExitNode):
            plan.leaves.extend((p, f"exit at {node.id}", DONE) for p in group)
        elif isinstance(node, WaitNode) and node.until_date:
            for position in group:  # a first node has no arrival before it: the date may be missing
                if _due_at(campaign, node, people, position.contact_id, position.since) is None:
                    plan.leaves.append((position, f"no date in {node.until_date}", EXITED))
                else:
                    plan.moves.append((position, node.next))
        else:
            assert isinstance(node, WaitNode | GotoNode)
            plan.moves.extend((p, node.next) for p in group)
    plan.leaves.extend((p, END_OF_JOURNEY, DONE) for p, target in plan.moves if not target)
    plan.moves = [(p, t) for p, t in plan.moves if t]
    return plan


def _branch(
    node: BranchNode, group: list[Position], people: pd.DataFrame, facts: Facts, now: datetime
) -> list[tuple[Position, str]]:
    """Each position's path: the first whose conditions all hold for the person, else the default."""
    known = [p for p in group if p.contact_id in people.index]
    frame = people.loc[[p.contact_id for p in known]].copy()
    frame.index = pd.Index([p.contact_id for p in known])
    frame["entry"] = [p.entry for p in known]
    chosen = pd.Series("", index=frame.index, dtype=object)
    for path in node.paths:
        open_ = chosen == ""
        if not open_.any():
            break
        chosen[open_ & all_hold(path.conditions, frame, facts, now)] = path.target
    chosen[chosen == ""] = node.next
    moves = list(zip(known, map(str, chosen.tolist()), strict=True))  # in `known`'s order, as `frame` is
    return moves + [(p, node.next) for p in group if p.contact_id not in people.index]


@dataclass
class _Walk:
    """A round's decisions taken as far as they go at `now`: the sends on the way, and where each position
    ends (moved to a node that is not due yet, or left), with the positions as read (the compare-and-set)."""

    read: dict[tuple[int, int], Position]
    sends: list[tuple[Position, SendNode]] = field(default_factory=list)
    moves: list[Position] = field(default_factory=list)  # where they arrived, due then
    leaves: list[tuple[Position, str, str]] = field(default_factory=list)  # reason, state
    steps: Counter[tuple[int, int]] = field(default_factory=Counter)  # moves made on the way
    paths: defaultdict[tuple[int, int], str] = field(default_factory=lambda: defaultdict(str))  # choices made


def _key(position: Position) -> tuple[int, int]:
    return position.contact_id, position.entry


def _walk(
    campaign: Campaign,
    journey: Journey,
    plan: _Round,
    people: pd.DataFrame,
    facts: Facts | None,
    now: datetime,
) -> _Walk:
    """Where the round's decisions (`plan`) take each position: a send's email (unless the person may not be
    mailed: they leave), then its next node. With `facts`, whoever arrives at a node due at once goes on in
    the same round, node after node (cycles without a wait are refused at load, so this ends), as the next
    round would take them: one write per position instead of one per node. Nothing is written here."""
    read = [p for p, _ in plan.moves] + [p for p, _, _ in plan.leaves] + [p for p, _ in plan.sends]
    walk = _Walk({_key(p): p for p in read})
    choices = choice_nodes(journey)
    for _ in range(len(journey.nodes) + 1):
        reasons = _cannot_be_mailed(people, [p.contact_id for p, _ in plan.sends])
        for (position, node), reason in zip(plan.sends, reasons, strict=True):
            if reason:
                plan.leaves.append((position, reason, EXITED))
                continue
            walk.sends.append((position, node))
            if node.next:
                plan.moves.append((position, node.next))
            else:
                plan.leaves.append((position, END_OF_JOURNEY, DONE))
        walk.leaves.extend(plan.leaves)
        going_on: list[Position] = []
        for position, target in plan.moves:
            due = _arrival(campaign, journey.nodes[target], position, people, now)
            if due is None:
                walk.leaves.append((position, f"no date in {_date_field(journey.nodes[target])}", EXITED))
                continue
            walk.steps[_key(position)] += 1
            if position.node in choices:  # the entry's `path` records the way a choice took it
                walk.paths[_key(position)] += f"{position.node}>{target};"
            arrived = Position(
                position.contact_id, position.entry, target, now, due, position.entered_at, position.trigger_at
            )
            (going_on if facts is not None and due <= now else walk.moves).append(arrived)
        if not going_on:
            return walk
        assert facts is not None
        plan = _decide(campaign, journey, going_on, people, facts, now)
    walk.moves.extend(going_on)  # a safety net only: the rest wait where they are for the next round
    return walk


def _arrival(
    campaign: Campaign, node: Node, position: Position, people: pd.DataFrame, now: datetime
) -> datetime | None:
    """When a position arriving at `node` now is due there (None: a date wait without the person's date)."""
    if isinstance(node, WaitNode) and node.from_entry:  # a sequence's step: entry + its delay
        return utc(position.entered_at) + _delay(node)
    if isinstance(node, WaitNode) and node.delay is None:  # a time of day, a date: in the person's zone
        return _due_at(campaign, node, people, position.contact_id, now)
    return arrival_due(node, now, campaign.time_zone, {})


def _apply(
    conn: Connection,
    campaign: Campaign,
    journey: Journey,
    plan: _Round,
    people: pd.DataFrame,
    concerns: tuple[str, ...],
    now: datetime,
    report: SweepReport,
    rules: SendRules | None = None,
    facts: Facts | None = None,
) -> None:
    """Write a round (taken as far as it goes with `facts`, see `_walk`), in `conn`'s transaction: every move
    and leave first (compare-and-set on the positions as read), then the ledger rows of the sends of the
    positions that moved or left (held back by the `rules`: quiet hours and the cap), then the emails of
    those who left are held back where their reason says so. A position another sweeper or an edit moved
    since it was read changes nothing and enqueues nothing."""
    walk = _walk(campaign, journey, plan, people, facts, now)
    moves = [(walk.read[_key(p)], p.node, p.due_at) for p in walk.moves]
    written = store.moved(conn, campaign.id, moves, now, [walk.paths[_key(p)] for p in walk.moves])
    left: list[tuple[str, list[tuple[Position, str]]]] = []
    for state in (DONE, EXITED, CONVERTED):
        rows = [(p, reason) for p, reason, s in walk.leaves if s == state]
        read = [(walk.read[_key(p)], reason) for p, reason in rows]
        arrived, paths = [p for p, _ in rows], [walk.paths[_key(p)] for p, _ in rows]
        went = store.gone(conn, campaign.id, read, state, now, arrived=arrived, paths=paths)
        left.append((state, [(p, reason) for p, reason in rows if _key(p) in went]))
        written |= went
    report.moved += sum(walk.steps[key] for key in written)
    sends = [(p, node) for p, node in walk.sends if _key(p) in written]
    report.enqueued += _enqueue(conn, campaign, sends, people, concerns, now, rules, report)
    for state, rows in left:
        report.left.update(reason for _, reason in rows)
        hold_back(conn, journey, campaign.id, rows, state)
        if rows and state == EXITED and campaign.kind == SEQUENCE:
            store.record_exits(conn, campaign.id, {p.contact_id: r for p, r in rows}, now)


def _date_field(node: Node) -> str:
    return node.until_date if isinstance(node, WaitNode) else ""


def _enqueue(
    conn: Connection,
    campaign: Campaign,
    sends: list[tuple[Position, SendNode]],
    people: pd.DataFrame,
    concerns: tuple[str, ...],
    now: datetime,
    rules: SendRules | None,
    report: SweepReport,
) -> int:
    """The sends' ledger rows (queued, with what held them back in words; skipped with the reason when no
    variant fits), keyed by (campaign, node, contact, entry): rows already there are left alone."""
    if not sends:
        return 0
    columns: dict[str, list[Any]] = {name: [] for name in (*ledger.ENQUEUE_COLUMNS, "timing")}
    plain = []
    steps = {node.id: campaign.step(node.id) for _, node in sends}
    rows = people.loc[[p.contact_id for p, _ in sends], ["concerns", "concern_consent", "time_zone"]]
    # the columns as plain lists, read once: a row lookup per person costs a sweep tens of seconds
    facts = zip(rows["concerns"].tolist(), rows["concern_consent"].tolist(), rows["time_zone"].tolist(), strict=True)
    for (position, node), (own, consent, time_zone) in zip(sends, facts, strict=True):
        step = steps[node.id]
        variant = variant_for(own if isinstance(own, str) else "", bool(consent), concerns)
        if step.variants and variant not in step.variants:
            variant = GENERAL if GENERAL in step.variants else ""
        # a sequence's step is due at entry + its delay, as it always was; a journey's send, now
        due = utc(position.entered_at) + step.delay if campaign.kind == SEQUENCE else now
        zone_of = time_zone if isinstance(time_zone, str) and time_zone else campaign.time_zone
        plain.append((position.contact_id, node.id, zone_of, due))
        values = {
            "campaign_id": campaign.id,
            "step_id": ledger_step(node.id, position.entry),
            "contact_id": position.contact_id,
            "segment": campaign.segment,
            "variant": variant,
            "arm": arm_for(campaign.id, step, position.contact_id),
            "status": ledger.QUEUED if variant else ledger.SKIPPED,
            "error": "" if variant else NO_CONTENT,
        }
        for name, value in values.items():
            columns[name].append(value)
    frame = pd.DataFrame(plain, columns=["contact_id", "step_id", "zone", "due_at"])
    if rules is not None:
        frame, deferred = send_times(conn, campaign, rules, frame, now)
        report.deferred.update(deferred)
        columns["error"] = [e or h for e, h in zip(columns["error"], frame["held"], strict=True)]
        columns["timing"] = frame["timing"].tolist()
    else:
        columns["timing"] = [""] * len(plain)
    columns["due_at"] = [pd.Timestamp(d).to_pydatetime() for d in frame["due_at"]]
    return ledger.enqueue_columns(delivery_store(conn), conn, dict(columns))
