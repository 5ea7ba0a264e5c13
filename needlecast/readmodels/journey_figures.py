"""A journey as people see it measured: each node in words, its edges with their labels, who is waiting at,
passed through and left from each node, the conversion per path, the per-node funnel of the journey's report,
and one node's people (the console's journey page and node page, `needlecast report`). Reads only.

Contract:
- `walkable_of(ctx, campaign_id)`: the journey or sequence `campaign_id` (a sequence is a straight line of
  waits and sends); `NotFound` for an unknown campaign, `InvalidRequest` for a broadcast.
- `node_words(campaign, node)` says what a node does ("wait 3 days", "until they book, at most 7 days");
  `edges_of(node)` its ways on with their labels (a branch's conditions, a split's percentage, a
  wait-until's event and timeout).
- `journey_figures(conn, campaign)`: per node in the file's order, the entries that reached it, wait there,
  passed through it and left the journey there; the nodes the file no longer has that hold people; the
  conversion per path (the choices an entry made at branches, splits and wait-untils). Counted in SQL per
  distinct (node, state, path) (`store.journey_figures.path_counts`), each group walked once in Python along
  the journey (`campaign.journeys.model.walked`); an entry whose path no longer fits the file (an edit moved
  it) counts as having reached only the node it is at (`unwalked` says how many).
- `journey_tables(engine, campaign_id, funnel)`: the report's `journey_funnel` (entered, then per node the
  entries that reached it and the sent, delivered, opened, clicked and converted of its emails, from the
  report's funnel rows `funnel`) and `journey_paths` tables; two empty frames for a broadcast.
- `node_people(engine, workspace, campaign_id, node, left=, page=, unmasked=)`: one page of the entries
  waiting at (or that left from) a node, addresses and names masked as the contact list masks them unless
  `unmasked`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, Engine

from needlecast.addresses import mask_email
from needlecast.audience.contact_export import mask_name
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.journeys.model import (
    BranchNode,
    Condition,
    Journey,
    Node,
    SendNode,
    SplitNode,
    WaitNode,
    WaitUntilNode,
    node_of_step,
    path_choices,
    walked,
)
from needlecast.config import Workspace
from needlecast.errors import InvalidRequest, NotFound
from needlecast.store import journey_figures as store
from needlecast.wording import duration_words

KIND_WORDS = {
    "send": "email",
    "wait": "wait",
    "wait_until": "wait until",
    "branch": "branch",
    "split": "split",
    "goto": "go to",
    "exit": "exit",
}
EVENT_WORDS = {
    "booked": "they book",
    "attended": "they attend",
    "no_show": "they miss an appointment",
    "cancelled_booking": "they cancel a booking",
    "purchased": "they buy",
    "enquired": "they enquire",
}
PAGE_SIZE = 50
FUNNEL_FIGURES = ("sent", "delivered", "opened", "clicked", "conversions")


def walkable_of(ctx: CampaignContext, campaign_id: str) -> Campaign:
    """The journey or sequence `campaign_id` (see the module contract)."""
    campaign = ctx.campaign(campaign_id)
    if campaign.journey is None:
        raise InvalidRequest(f"'{campaign_id}' is a {campaign.kind}: only journeys and sequences have nodes")
    return campaign


def _event_words(node: WaitUntilNode) -> str:
    if node.engagement is not None:
        action = "click" if node.engagement.action == "clicked" else "open"
        link = f" ({node.engagement.link})" if node.engagement.link else ""
        return f"they {action} the email of {node.engagement.node}{link}"
    return EVENT_WORDS.get(node.event, f"{node.event.replace('_', ' ')} happens")


def _wait_words(node: WaitNode) -> str:
    if node.delay is not None and node.from_entry:  # a sequence's step: counted from the person's entry
        return f"wait until {duration_words(node.delay)} after they entered" if node.delay else "no wait on entry"
    if node.delay is not None:
        return f"wait {duration_words(node.delay)}"
    if node.until_time is not None:
        return f"wait until {node.until_time:%H:%M}"
    offset = ""
    if node.offset:
        sign = "before" if node.offset.total_seconds() < 0 else "after"
        offset = f" {duration_words(abs(node.offset))} {sign}"
    yearly = "each year's " if node.yearly else ""
    return f"wait until {yearly}{node.until_date}{offset}, {node.at:%H:%M}"


def node_words(campaign: Campaign, node: Node) -> str:
    """What `node` does, in words."""
    if isinstance(node, SendNode):
        try:
            return f"sends {campaign.step(node.id).template}"
        except NotFound:
            return "sends an email"
    if isinstance(node, WaitNode):
        return _wait_words(node)
    if isinstance(node, WaitUntilNode):
        return f"until {_event_words(node)}, at most {duration_words(node.timeout)}"
    if isinstance(node, BranchNode):
        return f"the first of {len(node.paths)} paths that holds, else {node.next or 'the end'}"
    if isinstance(node, SplitNode):
        return "split " + " / ".join(f"{p.percent} %" for p in node.paths)
    if node.kind == "exit":
        return "leave the journey"
    return f"go to {node.next}" if node.next else "the end"


def _condition_words(condition: Condition) -> str:
    """A branch condition in words (a period in days, not as Python writes it)."""
    if condition.event and condition.within:
        return f"{condition.event.replace('_', ' ')} in the last {duration_words(condition.within)}"
    return condition.describe()


def edges_of(node: Node) -> list[tuple[str, str]]:
    """(target, label) of each way on from `node`, in the file's order ("" labels a plain next)."""
    if isinstance(node, BranchNode):
        edges = [(p.target, " and ".join(map(_condition_words, p.conditions))) for p in node.paths]
        return edges + ([(node.next, "otherwise")] if node.next else [])
    if isinstance(node, SplitNode):
        return [(p.target, f"{p.percent} %") for p in node.paths]
    if isinstance(node, WaitUntilNode):
        edges = [(node.next, f"when {_event_words(node)}")] if node.next else []
        return edges + ([(node.on_timeout, f"after {duration_words(node.timeout)}")] if node.on_timeout else [])
    return [(node.next, "")] if node.next else []


@dataclass
class NodeCount:
    node: str
    kind: str
    words: str
    reached: int = 0  # entries that arrived here (each entry once, however often a loop brought it back)
    waiting: int = 0
    passed: int = 0  # reached and went on
    left: int = 0  # left the journey here (an exit, the end, the goal, or early)
    converted: int = 0  # reached the journey's goal while here


@dataclass
class PathCount:
    path: str  # the choices in words ("route → gentle, ab → vip-offer"); "no choice yet" when none
    entries: int = 0
    waiting: int = 0
    converted: int = 0


@dataclass
class JourneyFigures:
    campaign: Campaign
    entered: int = 0
    nodes: list[NodeCount] = field(default_factory=list)
    stranded: dict[str, int] = field(default_factory=dict)  # a node the file no longer has -> people waiting
    paths: list[PathCount] = field(default_factory=list)  # most entries first
    unwalked: int = 0  # entries whose path no longer fits the file: counted at their node only


def path_words(path: str) -> str:
    """A position's `path` in words."""
    return ", ".join(f"{node} → {target}" for node, target in path_choices(path)) or "no choice yet"


def journey_figures(conn: Connection, campaign: Campaign) -> JourneyFigures:
    """The journey's figures (see the module contract)."""
    journey = campaign.journey
    assert journey is not None
    figures = JourneyFigures(campaign)
    counts = {n: NodeCount(n, node.kind, node_words(campaign, node)) for n, node in journey.nodes.items()}
    paths: dict[str, PathCount] = {}
    for node_id, state, path, entries in store.path_counts(conn, campaign.id):
        figures.entered += entries
        shown = paths.setdefault(path_words(path), PathCount(path_words(path)))
        shown.entries += entries
        shown.waiting += entries if state == store.ACTIVE else 0
        shown.converted += entries if state == "converted" else 0
        if node_id not in counts:
            if state == store.ACTIVE:
                figures.stranded[node_id] = figures.stranded.get(node_id, 0) + entries
            continue
        _count_walk(journey, counts, node_id, state, path, entries, figures)
    for count in counts.values():
        count.passed = count.reached - count.waiting - count.left
    figures.nodes = list(counts.values())
    figures.paths = sorted(paths.values(), key=lambda p: (-p.entries, p.path))
    return figures


def _count_walk(
    journey: Journey,
    counts: dict[str, NodeCount],
    node_id: str,
    state: str,
    path: str,
    entries: int,
    figures: JourneyFigures,
) -> None:
    """Count one (node, state, path) group: every node its walk reached, and where it is or left."""
    route = walked(journey, path, node_id)
    if route is None:
        figures.unwalked += entries
        route = [node_id]
    for reached in route:
        if reached in counts:
            counts[reached].reached += entries
    here = counts[node_id]
    if state == store.ACTIVE:
        here.waiting += entries
    else:
        here.left += entries
        here.converted += entries if state == "converted" else 0


def figures_of(engine: Engine, workspace: Workspace, campaign_id: str) -> JourneyFigures:
    """The figures of the journey or sequence `campaign_id` (`walkable_of` refuses another)."""
    campaign = walkable_of(CampaignContext.load(workspace), campaign_id)
    with engine.connect() as conn:
        return journey_figures(conn, campaign)


def journey_tables(engine: Engine, campaign: Campaign, funnel: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report's `journey_funnel` and `journey_paths` tables (see the module contract)."""
    if campaign.journey is None:
        return pd.DataFrame(), pd.DataFrame()
    with engine.connect() as conn:
        figures = journey_figures(conn, campaign)
    sends: dict[str, Counter[str]] = {}
    if not funnel.empty and "step_id" in funnel:
        mine = funnel[funnel["campaign_id"] == campaign.id] if "campaign_id" in funnel else funnel
        for row in mine.to_dict("records"):
            node = sends.setdefault(node_of_step(str(row["step_id"])), Counter())
            node.update({f: int(row.get(f, 0) or 0) for f in FUNNEL_FIGURES})
    rows: list[dict[str, object]] = [
        {"node": "(entered)", "kind": "", "what": "entries into the journey", "reached": figures.entered}
    ]
    for count in figures.nodes:
        row = {
            "node": count.node,
            "kind": KIND_WORDS.get(count.kind, count.kind),
            "what": count.words,
            "reached": count.reached,
            "waiting": count.waiting,
            "passed": count.passed,
            "left": count.left,
        }
        if count.kind == "send":
            row.update(sends.get(count.node, Counter({f: 0 for f in FUNNEL_FIGURES})))
        rows.append(row)
    funnel_table = pd.DataFrame(
        rows, columns=["node", "kind", "what", "reached", "waiting", "passed", "left", *FUNNEL_FIGURES]
    )
    paths = pd.DataFrame(
        [
            {
                "path": p.path,
                "entries": p.entries,
                "waiting": p.waiting,
                "converted": p.converted,
                "conversion_rate": p.converted / p.entries if p.entries else float("nan"),
            }
            for p in figures.paths
        ],
        columns=["path", "entries", "waiting", "converted", "conversion_rate"],
    )
    return funnel_table, paths


@dataclass(frozen=True)
class NodePerson:
    contact_id: int
    email: str  # masked unless the viewer may see addresses
    name: str
    since: datetime
    left_at: datetime | None
    reason: str
    entry: int


@dataclass(frozen=True)
class NodePeople:
    campaign: Campaign
    node: Node | None  # None: a node the file no longer has (people stranded there)
    words: str
    left: bool  # the people who left the journey here (else those waiting here)
    total: int
    page: int
    pages: int
    people: list[NodePerson]


def node_people(
    engine: Engine, workspace: Workspace, campaign_id: str, node_id: str, *, left: bool, page: int, unmasked: bool
) -> NodePeople:
    """One page (from 1) of the people at a node (see the module contract); `NotFound` for a node neither the
    file nor any position has."""
    campaign = walkable_of(CampaignContext.load(workspace), campaign_id)
    assert campaign.journey is not None
    node = campaign.journey.nodes.get(node_id)
    with engine.connect() as conn:
        total, rows = store.people_at(
            conn, campaign_id, node_id, left=left, offset=(max(page, 1) - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
        if (
            node is None
            and total == 0
            and not store.people_at(conn, campaign_id, node_id, left=not left, offset=0, limit=1)[0]
        ):
            raise NotFound(f"'{campaign_id}' has no node '{node_id}'", what="node", name=node_id)
    people = [
        NodePerson(
            r.contact_id,
            (r.email if unmasked else mask_email(r.email)) if r.email else "(erased)",
            _name(r.first_name, r.last_name, unmasked),
            r.since,
            r.left_at,
            r.reason,
            r.entry,
        )
        for r in rows
    ]
    words = node_words(campaign, node) if node is not None else "no longer in the journey's file"
    pages = max(1, -(-total // PAGE_SIZE))
    return NodePeople(campaign, node, words, left, total, min(max(page, 1), pages), pages, people)


def _name(first: str, last: str, unmasked: bool) -> str:
    name = f"{first} {last}".strip()
    return name if unmasked else mask_name(name)
