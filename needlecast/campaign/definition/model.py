"""The campaign model, as loaded from `campaigns/*.yaml` (see `needlecast.campaign.definition.loader`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from needlecast.errors import NotFound

if TYPE_CHECKING:
    from needlecast.campaign.journeys.model import Journey

BROADCAST = "broadcast"
SEQUENCE = "sequence"
JOURNEY = "journey"  # steps are the nodes of a graph (`needlecast.campaign.journeys`); its send nodes are its steps


@dataclass(frozen=True)
class Arm:
    """One A/B arm: a subject line and its share of the recipients (percent)."""

    name: str
    subject: str
    share: int


WINNER_METRICS = ("opens", "clicks", "conversions")
FALLBACKS = ("A", "better")


@dataclass(frozen=True)
class WinnerTest:
    """Test, then the winner: `test_fraction` of the audience (a stable random sample) is split between the
    arms; `decide_after` the test slice went out, the arm with the best `metric` rate wins when a
    two-proportion test is significant at `confidence`, else `fallback` ("A": arm A; "better": the better
    rate) does; the rest of the audience gets the winning arm only."""

    test_fraction: float
    decide_after: timedelta
    metric: str = "clicks"
    confidence: float = 0.95
    fallback: str = "A"


@dataclass(frozen=True)
class Optimise:
    """Send-time optimisation: each recipient gets the hour of the `window` (from the plain send time) at which
    they engage most (`campaign.plan.send_time`); a stable `holdout` share goes at the plain time, to measure it."""

    window: timedelta = timedelta(hours=24)
    holdout: float = 0.1
    min_events: int = 5


@dataclass(frozen=True)
class Step:
    id: str
    template: str
    subject: str | None = None
    preheader: str | None = None
    variants: tuple[str, ...] = ()  # content variants (concerns + general); empty = every one
    arms: tuple[Arm, ...] = ()
    delay: timedelta = timedelta(0)  # sequences: after enrolment
    index: int = 0  # its place in the file's `steps` list, for errors that name the field
    article: str = ""  # the article it draws on (its own, else the campaign's); "" = [content] article
    library: bool = False  # `sections: {concern: auto, from: all}`: each variant's sections from every article
    winner_test: WinnerTest | None = None  # `ab: {test_fraction, decide_after, ...}`: test a slice, then the winner
    optimise: Optimise | None = None  # sequences: `optimise: true` (a broadcast's is in its schedule)

    @property
    def field(self) -> str:
        """How errors name this step: `steps[0]`."""
        return f"steps[{self.index}]"

    @property
    def arm_names(self) -> tuple[str, ...]:
        """The A/B arms ("" alone when the step has no test)."""
        return tuple(a.name for a in self.arms) or ("",)

    def subject_for(self, arm: str) -> str | None:
        """The subject source of `arm` (the step's own, or None for the template's subject block)."""
        return next((a.subject for a in self.arms if a.name == arm), self.subject)


@dataclass(frozen=True)
class BroadcastSchedule:
    send_at: datetime | None = None  # aware, in the campaign's zone
    local_time: time | None = None  # with `on`: that hour in each recipient's own zone
    on: date | None = None
    optimise: Optimise | None = None  # `optimise: true`: each recipient's best hour within `window`


@dataclass(frozen=True)
class Enrolment:
    joined_after: datetime | None = None  # None: the moment the campaign was first scheduled
    tag: str = ""
    event: str = ""  # enrol whoever has a contact event of this type since joined_after (or the start)
    explicit: bool = False  # the file has an `enrol:` mapping (plan explains the default when it has not)


@dataclass(frozen=True)
class ExitRule:
    """Leave the sequence when an attribute `field` equals `equals`, or when a contact event of type `event`
    occurs (one or the other)."""

    field: str = ""
    equals: str = ""
    event: str = ""

    def describe(self) -> str:
        return f"event {self.event}" if self.event else f"{self.field} = {self.equals}"


@dataclass(frozen=True)
class SignOff:
    reviewer: str
    date: date
    note: str
    covers: tuple[tuple[str, str], ...] = ()  # (file, digest) of what was reviewed; empty: not recorded


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    kind: str
    segment: str
    time_zone: str
    steps: tuple[Step, ...]
    path: Path
    sender_email: str = ""
    sender_name: str = ""
    reply_to: str = ""
    schedule: BroadcastSchedule = field(default_factory=BroadcastSchedule)
    enrol: Enrolment = field(default_factory=Enrolment)
    exits: tuple[ExitRule, ...] = ()
    signoff: SignOff | None = None
    digest: str = ""  # hash of the file: a changed file reschedules
    draft: bool = False  # planned and previewed, never scheduled or sent
    journey: Journey | None = None  # kind journey: the graph its steps are nodes of

    @property
    def event_types(self) -> tuple[str, ...]:
        """The contact event types its enrolment and exits read."""
        named = [self.enrol.event, *(rule.event for rule in self.exits)]
        return tuple(sorted({name for name in named if name}))

    def step(self, step_id: str) -> Step:
        """The step `step_id` names; a journey's ledger names a send node's later entries `node#N`."""
        if self.kind == JOURNEY:
            step_id = step_id.split("#", 1)[0]
        for candidate in self.steps:
            if candidate.id == step_id:
                return candidate
        known = ", ".join(s.id for s in self.steps)
        raise NotFound(f"campaign '{self.id}' has no step '{step_id}'; its steps: {known}", what="step", name=step_id)
