"""The journey model: a graph of nodes that each person walks through, one position at a time.

A journey is a campaign of `kind: journey` (see `needlecast.campaign.journeys.loader` for the file). Its `steps` are
nodes, each with an id that the file names; a node's successors are named by id (`next`, `on_event`,
`on_timeout`, a branch's or a split's paths). A send node is also a campaign `Step` (same id), so the
dispatcher renders it as any other email.

Kinds:
- send: the email of the step with the same id, then `next`.
- wait: a fixed `delay`; or until a time of day (`until_time`) in the person's zone; or until a date
  attribute (`until_date`) plus or minus `offset`, at `at` in the person's zone (with `yearly`, its next
  anniversary: a birthday); a date already past lets the person go on at once.
- wait_until: until an `event` (booked, attended, ...) or `engagement` with an earlier send happens after
  the person arrived (then `next`), at most `timeout` (then `on_timeout`).
- branch: the first path whose conditions all hold, else `default`.
- split: stable random percentages (a hash of journey, node and contact).
- goto: straight to `next`.
- exit: the person leaves the journey.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import time, timedelta

SEND, WAIT, WAIT_UNTIL, BRANCH, SPLIT, GOTO, EXIT = "send", "wait", "wait_until", "branch", "split", "goto", "exit"
NODE_KINDS = (SEND, WAIT, WAIT_UNTIL, BRANCH, SPLIT, GOTO, EXIT)
WAITING_KINDS = (WAIT, WAIT_UNTIL)  # the kinds a person stays at until a moment: what breaks a goto cycle

# Entry kinds: who starts the journey.
ENTRY_SEGMENT, ENTRY_SIGNUP, ENTRY_EVENT, ENTRY_DATE, ENTRY_MANUAL = "segment", "signup", "event", "date", "manual"
ENTRY_ENROL = "enrol"  # a sequence's `enrol:` rule (`needlecast.campaign.journeys.straight`), never written in a file
ENTRY_KINDS = (ENTRY_SEGMENT, ENTRY_SIGNUP, ENTRY_EVENT, ENTRY_DATE, ENTRY_MANUAL)

# Re-entry rules: whether someone who was in the journey may start it again.
NEVER, AFTER, EACH_EVENT = "never", "after", "each_event"

OPENED, CLICKED = "opened", "clicked"  # engagement actions (an open by a human, a click, a click on `link`)


@dataclass(frozen=True)
class Engagement:
    """Engagement with the email of an earlier send node `node`: `opened` (by a human) or `clicked` (a named
    `link`, matched as a substring of the clicked URL, when given)."""

    node: str
    action: str
    link: str = ""


@dataclass(frozen=True)
class Condition:
    """One test of a branch path or an entry's `where`; exactly one of its groups is set.

    field/equals (or field/exists): an attribute or a contact column; concern: the person has that concern
    (and consented to its use); tag: carries the tag; consent: `concern` (consent to use concerns);
    event + within: a contact event of that type in the last `within`; engagement: see `Engagement`.
    """

    field: str = ""
    equals: str | None = None
    exists: bool | None = None
    concern: str = ""
    tag: str = ""
    consent: str = ""
    event: str = ""
    within: timedelta | None = None
    engagement: Engagement | None = None

    def describe(self) -> str:
        if self.field:
            return f"{self.field} = {self.equals}" if self.equals is not None else f"{self.field} exists"
        if self.concern:
            return f"concern {self.concern}"
        if self.tag:
            return f"tag {self.tag}"
        if self.consent:
            return f"{self.consent} consent"
        if self.event:
            return f"event {self.event}" + (f" within {self.within}" if self.within else "")
        assert self.engagement is not None
        return f"{self.engagement.action} {self.engagement.node}"


@dataclass(frozen=True)
class Node:
    """A node: its id, kind and place in the file (`index`, for errors that name `steps[i]`), and its
    successor `next` ("" for exit). Subclasses add what their kind needs."""

    id: str
    index: int
    next: str

    kind = ""

    @property
    def field(self) -> str:
        return f"steps[{self.index}]"

    def targets(self) -> tuple[str, ...]:
        """Every node this one can lead to, in the file's order."""
        return (self.next,) if self.next else ()


@dataclass(frozen=True)
class SendNode(Node):
    kind = SEND


@dataclass(frozen=True)
class WaitNode(Node):
    """Exactly one of `delay`, `until_time`, `until_date` is set."""

    delay: timedelta | None = None
    until_time: time | None = None
    until_date: str = ""  # an attribute holding a date (ISO 8601)
    offset: timedelta = timedelta(0)
    at: time = time(9, 0)
    yearly: bool = False  # until_date: the next anniversary of the date (a birthday), not the date itself
    from_entry: bool = False  # delay: counted from the person's entry, not their arrival (a sequence's steps)

    kind = WAIT

    @property
    def breaks_cycle(self) -> bool:
        """Whether a person stays here for a while (a 0d delay does not hold anyone)."""
        return self.delay is None or self.delay > timedelta(0)


@dataclass(frozen=True)
class WaitUntilNode(Node):
    """Until `event` or `engagement` (then `next`), at most `timeout` (then `on_timeout`)."""

    timeout: timedelta = timedelta(days=7)
    on_timeout: str = ""
    event: str = ""
    engagement: Engagement | None = None

    kind = WAIT_UNTIL

    def targets(self) -> tuple[str, ...]:
        return tuple(t for t in (self.next, self.on_timeout) if t)


@dataclass(frozen=True)
class Path:
    """A branch path (all `conditions` hold) or a split path (`percent` of the people)."""

    target: str
    conditions: tuple[Condition, ...] = ()
    percent: int = 0


@dataclass(frozen=True)
class BranchNode(Node):
    """The first path whose conditions all hold; else `next` (the file's `default`)."""

    paths: tuple[Path, ...] = ()

    kind = BRANCH

    def targets(self) -> tuple[str, ...]:
        return (*(p.target for p in self.paths), *((self.next,) if self.next else ()))


@dataclass(frozen=True)
class SplitNode(Node):
    paths: tuple[Path, ...] = ()

    kind = SPLIT

    def targets(self) -> tuple[str, ...]:
        return tuple(p.target for p in self.paths)


@dataclass(frozen=True)
class GotoNode(Node):
    kind = GOTO


@dataclass(frozen=True)
class ExitNode(Node):
    kind = EXIT


@dataclass(frozen=True)
class Entry:
    """Who starts the journey.

    - segment: every member of the campaign's segment (its consent and suppression rules applied);
    - signup: members who confirmed a signup since the journey started;
    - event: members with a contact event of type `event` since the journey started;
    - date: members whose date attribute `date_field` plus `offset` is today or earlier in their own zone
      (and not before the journey started), whose `where` conditions hold, and (with `unless_appointment`)
      who have no future appointment;
    - manual: only through `needlecast.actions.journeys.enter` (the API and the console);
    - enrol: a sequence's `enrol:` rule (the campaign's `Enrolment`: a sign-up since `joined_after` or the
      start, a tag, or an event since then), for sequences run as a straight line.
    """

    kind: str = ENTRY_SEGMENT
    event: str = ""
    date_field: str = ""
    offset: timedelta = timedelta(0)
    where: tuple[Condition, ...] = ()
    unless_appointment: bool = False


@dataclass(frozen=True)
class Reentry:
    """`never`; `after` (`wait` after the previous entry began, once it ended); `each_event` (each new
    trigger - event, signup, date - after the previous entry ended starts another)."""

    rule: str = NEVER
    wait: timedelta = timedelta(0)

    def describe(self) -> str:
        return f"after {self.wait.days}d" if self.rule == AFTER else self.rule.replace("_", " ")


@dataclass(frozen=True)
class Journey:
    """The graph: nodes by id in the file's order, the first one the start."""

    nodes: dict[str, Node]
    entry: Entry = field(default_factory=Entry)
    reentry: Reentry = field(default_factory=Reentry)
    goal: str = ""  # a contact event type: it exits the person wherever they are, as a conversion

    @property
    def start(self) -> str:
        return next(iter(self.nodes))

    def node(self, node_id: str) -> Node | None:
        return self.nodes.get(node_id)

    @property
    def event_types(self) -> tuple[str, ...]:
        """The contact event types the journey reads (entry, goal, wait-until, branch conditions)."""
        names = {self.entry.event, self.goal}
        for node in self.nodes.values():
            if isinstance(node, WaitUntilNode):
                names.add(node.event)
            if isinstance(node, BranchNode):
                names.update(c.event for p in node.paths for c in p.conditions)
        return tuple(sorted(n for n in names if n))


def ledger_step(node_id: str, entry: int) -> str:
    """The ledger's step id of a send node for an entry: the node's id for the first entry (as a sequence
    step's), `node#N` for the Nth: the ledger's key (campaign, step, contact) is then (campaign, node, contact,
    entry), so a node sends once per entry whatever happens to the sweep."""
    return node_id if entry <= 1 else f"{node_id}#{entry}"


def split_point(campaign_id: str, node_id: str, contact_id: int) -> int:
    """A stable point in [0, 100) for a person at a split: the same every time, independent across splits (the
    sweeper sorts people with it, the forecast predicts the same cohorts)."""
    return int(hashlib.sha256(f"{campaign_id}|{node_id}|{contact_id}".encode()).hexdigest()[:8], 16) % 100


def node_of_step(step_id: str) -> str:
    """The send node's id of a ledger step id (`ledger_step` undone)."""
    return step_id.split("#", 1)[0]


CHOICE_KINDS = (BRANCH, SPLIT, WAIT_UNTIL)  # the nodes whose way on is a choice: an entry's `path` records it


def choice_nodes(journey: Journey) -> frozenset[str]:
    """The ids of the journey's nodes whose way on is a choice (what a position's `path` records)."""
    return frozenset(node_id for node_id, node in journey.nodes.items() if node.kind in CHOICE_KINDS)


def path_choices(path: str) -> list[tuple[str, str]]:
    """A position's `path` ("route>gentle;ab>vip;") as its (node, target) choices, in order."""
    return [(token.split(">", 1)[0], token.split(">", 1)[1]) for token in path.split(";") if ">" in token]


def walked(journey: Journey, path: str, node: str) -> list[str] | None:
    """The nodes an entry now at `node` has reached, in the order first reached, walking from the start along
    each node's way on and, at a choice, the `path`'s next choice; None when the path does not lead there (an
    edit moved the entry, or the file changed since)."""
    choices = path_choices(path)
    seen: dict[str, None] = {}
    at = journey.start
    for _ in range(len(journey.nodes) * (len(choices) + 2)):  # a walk longer than this goes round for nothing
        current = journey.nodes.get(at)
        if current is None:
            return None
        seen[at] = None
        if at == node and not choices:
            return list(seen)
        if current.kind in CHOICE_KINDS:
            if not choices or choices[0][0] != at:
                return None
            at = choices.pop(0)[1]
        elif current.next:
            at = current.next
        else:
            return None
    return None
