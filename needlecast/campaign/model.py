"""The campaign model, as loaded from `campaigns/*.yaml` (see `needlecast.campaign.loader`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

BROADCAST = "broadcast"
SEQUENCE = "sequence"


@dataclass(frozen=True)
class Arm:
    """One A/B arm: a subject line and its share of the recipients (percent)."""

    name: str
    subject: str
    share: int


@dataclass(frozen=True)
class Step:
    id: str
    template: str
    subject: str | None = None
    preheader: str | None = None
    variants: tuple[str, ...] = ()  # content variants (concerns + general); empty = every one
    arms: tuple[Arm, ...] = ()
    delay: timedelta = timedelta(0)  # sequences: after enrolment


@dataclass(frozen=True)
class BroadcastSchedule:
    send_at: datetime | None = None  # aware, in the campaign's zone
    local_time: time | None = None  # with `on`: that hour in each recipient's own zone
    on: date | None = None


@dataclass(frozen=True)
class Enrolment:
    joined_after: datetime | None = None  # None: the moment the campaign was first scheduled
    tag: str = ""


@dataclass(frozen=True)
class ExitRule:
    field: str
    equals: str


@dataclass(frozen=True)
class SignOff:
    reviewer: str
    date: date
    note: str


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

    def step(self, step_id: str) -> Step:
        for candidate in self.steps:
            if candidate.id == step_id:
                return candidate
        raise KeyError(step_id)
