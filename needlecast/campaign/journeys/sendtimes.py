"""When a journey's emails go: the moment each send node's email is due, then the rules every campaign's
emails obey (`needlecast.campaign.plan.rules`): quiet hours and the frequency cap.

Contract: `send_times(conn, campaign, rules, emails, now)` takes the emails one round enqueues (a frame of
contact_id, step_id, zone, due_at: the plain moment) and returns it with `due_at` moved and `held` (the
reason in words: "deferred by quiet hours", "deferred by frequency cap", or "") per email, and how many each
rule deferred.
- The plain moment: `now` for a journey's send; for a sequence's step, entry + the step's delay, as a
  sequence always had it (the caller's), then its `optimise:` best hour (`timing` says which rule chose it).
- Quiet hours move a moment inside them to their end, in the recipient's zone.
- The frequency cap (across campaigns) defers a journey's email until the cap allows it, as it does a
  sequence's: a journey walks on in time, unlike a broadcast, whose capped emails are skipped for good.
The rows are enqueued once (the ledger's key), so a held-back email is held back once, never twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection

from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.plan.rules import DEFERRED_CAP, DEFERRED_QUIET, apply_cap, apply_quiet_hours, cap_history
from needlecast.campaign.plan.send_time import Engagement, choose_send_times, engagement_for
from needlecast.config import ScheduleSettings


@dataclass
class SendRules:
    """The rules of one sweep of one journey: the workspace's schedule settings, and the other campaigns'
    emails that count towards the cap, read once per sweep (a round's own emails are this campaign's, which
    the cap does not count, so they never change it)."""

    schedule: ScheduleSettings
    _history: pd.DataFrame | None = None

    def history(self, conn: Connection, campaign_id: str, now: datetime) -> pd.DataFrame:
        if self._history is None:
            self._history = cap_history(conn, campaign_id, now)
        return self._history


def send_times(
    conn: Connection, campaign: Campaign, rules: SendRules, emails: pd.DataFrame, now: datetime
) -> tuple[pd.DataFrame, Counter[str]]:
    """The emails with their moments and reasons (see the module contract)."""
    deferred: Counter[str] = Counter()
    schedule = rules.schedule
    emails = emails.reset_index(drop=True).assign(timing="", held="")
    emails["due_at"] = pd.to_datetime(emails["due_at"], utc=True)
    if emails.empty:
        return emails, deferred
    emails = _optimised(conn, campaign, emails, now)
    plain = emails["due_at"].copy()
    emails = apply_quiet_hours(emails, schedule, deferred)
    emails.loc[emails["due_at"] != plain, "held"] = DEFERRED_QUIET
    if schedule.max_per_day > 0 or schedule.max_per_week > 0:
        history = rules.history(conn, campaign.id, now)
        near = emails["contact_id"].isin(history["contact_id"])  # only they can be over the cap
        if near.any():
            capped = apply_cap(emails[near], history, schedule, defer=True, excluded=Counter(), deferred=deferred)
            moved = capped["due_at"] != emails.loc[near, "due_at"]
            emails.loc[capped.index, "due_at"] = capped["due_at"]
            emails.loc[moved[moved].index, "held"] = DEFERRED_CAP
    return emails, +deferred


def _optimised(conn: Connection, campaign: Campaign, emails: pd.DataFrame, now: datetime) -> pd.DataFrame:
    """A sequence step's `optimise:`: each person's best hour within the window from the plain moment."""
    optimised = {s.id: s.optimise for s in campaign.steps if s.optimise is not None}
    if not optimised or not emails["step_id"].isin(list(optimised)).any():
        return emails
    engagement = engagement_for(conn, campaign, now) or Engagement.none()
    for step_id, optimise in optimised.items():
        mask = emails["step_id"] == step_id
        if not mask.any():
            continue
        members = pd.DataFrame({"id": emails.loc[mask, "contact_id"], "zone": emails.loc[mask, "zone"]})
        due, timing = choose_send_times(campaign.id, step_id, members, emails.loc[mask, "due_at"], optimise, engagement)
        emails.loc[mask, "due_at"] = due
        emails.loc[mask, "timing"] = timing
    return emails
