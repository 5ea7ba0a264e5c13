"""What a send will do and what it did, in the clinic's words: the console's confirmations, its campaign page
and `needlecast campaign status` read the same sentences from here.

Contract:
- `in_words(reason)` turns a rule's reason (a plan's exclusion or deferral, a skipped ledger row's `error`)
  into words that follow a number of people ("72 had another email from the clinic within 24 hours ...").
  An unknown reason is shown as it is.
- `reach_of(plan, now, send_now=...)` counts what a send would do after every rule: the emails and people it
  sends to, those that go later (quiet hours, the cap of a sequence, an A/B winner) and those held back, by
  rule; `Reach.sentence(zone)` says it, times in `zone` (the campaign's).
- `outcome_of(counts, skipped, queued_by_due)` is what happened to a campaign's emails (sent, skipped by
  reason, waiting, failed, unknown); `Outcome.sentence(zone)` says it.
Counts and reasons only: never an address, a name or a concern.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from needlecast.campaign.plan.rules import (
    DEFERRED_CAP,
    DEFERRED_QUIET,
    EXCLUDED_ALREADY,
    EXCLUDED_CAPPED,
    EXCLUDED_CAPPED_EARLIER,
    EXCLUDED_NO_VARIANT,
    WAITING_WINNER,
    Plan,
)

FOR_GOOD = "the frequency cap skips them for good: a broadcast is not sent to them later"
_WORDS = {
    EXCLUDED_CAPPED: f"had another email from the clinic too recently ({FOR_GOOD})",
    EXCLUDED_CAPPED_EARLIER: f"were held back by the frequency cap when it was sent ({FOR_GOOD})",
    EXCLUDED_ALREADY: "already have this email (sent, or waiting to be sent)",
    EXCLUDED_NO_VARIANT: "have a skin concern this email has no version for",
    DEFERRED_QUIET: "fall in quiet hours: they get it when quiet hours end",
    DEFERRED_CAP: "wait for the frequency cap: they get it as soon as it allows",
    WAITING_WINNER: "wait for the A/B test's winner",
    "pending double opt-in": "have not confirmed their sign-up yet",
    "no marketing consent": "have not agreed to marketing email",
    "no consent to use concern": "have not agreed to their skin concern being used",
    "paused by the person": "asked for a pause in their emails",
    "suppressed: unsubscribed": "unsubscribed",
    "suppressed: hard_bounce": "have an address that bounced",
    "suppressed: complaint": "marked an email from the clinic as spam",
    "suppressed: manual": "were taken off mailing by the clinic",
    "capped: another email within 24 hours": f"had another email from the clinic within 24 hours ({FOR_GOOD})",
}


def in_words(reason: str) -> str:
    """A rule's reason in the clinic's words, to follow a count of people (see the module contract)."""
    if reason in _WORDS:
        return _WORDS[reason]
    if reason.startswith("capped: ") and " emails in the 7 days before" in reason:
        count = reason.removeprefix("capped: ").split(" ", 1)[0]
        return f"had {count} emails from the clinic in the 7 days before ({FOR_GOOD})"
    if reason.startswith("capped"):
        return f"were held back by the frequency cap ({FOR_GOOD})"
    if reason.startswith("suppressed: "):
        return f"are not mailed ({reason.removeprefix('suppressed: ').replace('_', ' ')})"
    if reason.startswith("erased"):
        return "were erased at their request"
    if reason.startswith("exited: "):
        return f"left the sequence ({reason.removeprefix('exited: ')})"
    return reason


def local(moment: datetime, zone: str) -> str:
    """`moment` as the clinic's clock shows it, with the zone's name."""
    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M} ({zone})"


def _listed(items: list[tuple[int, str]]) -> str:
    return "; ".join(f"{count} {words}" for count, words in items)


@dataclass
class Reach:
    """What a send would do after every rule (see the module contract)."""

    emails: int = 0  # emails it sends (now, or at the scheduled time)
    people: int = 0
    first: datetime | None = None  # when the first of them goes
    later: list[tuple[int, str]] = field(default_factory=list)  # (count, words): sent, but later
    later_from: datetime | None = None  # a send-now's emails moved past now: the first of them
    held: list[tuple[int, str]] = field(default_factory=list)  # (count, words): not sent

    def sentence(self, zone: str, *, send_now: bool) -> str:
        when = "now" if send_now else "at its scheduled time"
        if not send_now and self.first is not None:
            when += f" (from {local(self.first, zone)})"
        said = f"This sends {self.emails} email(s) to {self.people} person(s) {when}."
        if self.later:
            start = f", from {local(self.later_from, zone)}" if self.later_from else ""
            said += f" Later{start}: {_listed(self.later)}."
        if self.held:
            said += f" Not sent: {_listed(self.held)}."
        return said


def reach_of(plan: Plan, now: datetime, *, send_now: bool) -> Reach:
    """What `plan` sends, and to whom not, by rule (see the module contract)."""
    reach = Reach()
    emails = plan.emails
    queued = emails[emails["status"] == "queued"] if not emails.empty else emails
    if not queued.empty:
        due = pd.to_datetime(queued["due_at"], utc=True)
        late = due > pd.Timestamp(now) + timedelta(minutes=1) if send_now else pd.Series(False, index=due.index)
        reach.emails = int((~late).sum())
        reach.people = int(queued.loc[~late, "contact_id"].nunique())
        reach.first = due[~late].min().to_pydatetime() if reach.emails else None
        reach.later_from = due[late].min().to_pydatetime() if late.any() else None
    later = {**plan.deferred}
    if not send_now:
        later.pop(DEFERRED_QUIET, None)  # at its scheduled time: the moment quiet hours allow is its time
    reach.later = sorted(((n, in_words(r)) for r, n in later.items() if n), reverse=True)
    reach.held = sorted(((n, in_words(r)) for r, n in plan.excluded.items() if n), reverse=True)
    return reach


@dataclass
class Outcome:
    """What happened to a campaign's emails (see the module contract)."""

    sent: int = 0
    sending: int = 0
    failed: int = 0
    unknown: int = 0
    cancelled: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (count, words)
    waiting: int = 0
    waiting_from: datetime | None = None

    @property
    def skipped_total(self) -> int:
        return sum(n for n, _ in self.skipped)

    def sentence(self, zone: str) -> str:
        parts = [f"{self.sent} sent"]
        if self.sending:
            parts.append(f"{self.sending} being sent")
        if self.skipped:
            parts.append(f"{self.skipped_total} not sent: {_listed(self.skipped)}")
        if self.waiting:
            start = f", the first at {local(self.waiting_from, zone)}" if self.waiting_from else ""
            parts.append(f"{self.waiting} waiting to be sent{start}")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.unknown:
            parts.append(f"{self.unknown} unknown (the provider may have them; they are settled from its events)")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        return ". ".join(p[0].upper() + p[1:] for p in parts) + "."


def outcome_of(counts: dict[str, int], skipped: dict[str, int], queued_by_due: list[tuple[datetime, int]]) -> Outcome:
    """What happened to a campaign's emails, from its ledger counts, skipped reasons and queue."""
    return Outcome(
        sent=counts.get("sent", 0),
        sending=counts.get("sending", 0),
        failed=counts.get("failed", 0),
        unknown=counts.get("unknown", 0),
        cancelled=counts.get("cancelled", 0),
        skipped=[(n, in_words(reason)) for reason, n in skipped.items() if n],
        waiting=counts.get("queued", 0),
        waiting_from=queued_by_due[0][0] if queued_by_due else None,
    )
