"""Warm-up days in a plan: a broadcast's emails spread over a new sender's warm-up curve (`campaign.send.warmup`).

Contract: `spread(emails, warmup, scores, placed)` orders a broadcast's queued emails by engagement (recent human
opens and clicks, `engagement_scores`, most first; ties by contact id) and moves each whole days later (keeping
its time of day, so quiet hours still hold) to the first day of the curve (`caps_on`) with room for it. They are
enqueued in that order, so the ledger's delivery ids follow engagement. `needlecast plan` and the console's
campaign page show the days (`days_note`: the clinic's dates, `[clinic] time_zone`), and its table counts the
emails per day. Engagement order holds within each part the planner reads at a time (200,000 contacts).
Sending keeps to the caps by itself (`campaign.send.warmup.admit`), without pandas.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from needlecast.campaign.plan.send_time import Engagement
from needlecast.campaign.send.warmup import caps_on
from needlecast.config.deliverability import WarmupSettings


def engagement_scores(conn: Connection, now: datetime) -> pd.Series:
    """Each contact's engagement: its recent human opens and clicks, weighted by recency (send-time
    optimisation's history), indexed by contact id; contacts without any are absent."""
    events = Engagement.load(conn, now).events
    return events.groupby("contact_id")["weight"].sum()


def _day_offsets(warmup: WarmupSettings, first: date, positions: np.ndarray) -> np.ndarray:
    """For each position in the send order (0 = most engaged), the days after `first` it goes on."""
    limits: list[int] = []  # cumulative caps, day by day, until every position has a day or the curve ends
    total = 0
    needed = int(positions.max()) + 1 if len(positions) else 0
    while total < needed:
        caps = caps_on(warmup, first + timedelta(days=len(limits)))
        if caps is None:
            break
        total += caps.day
        limits.append(total)
    offsets = np.searchsorted(np.asarray(limits, dtype="int64"), positions, side="right")
    return np.asarray(offsets, dtype="int64")


def spread(
    emails: pd.DataFrame, warmup: WarmupSettings | None, scores: pd.Series | None, placed: int = 0
) -> tuple[pd.DataFrame, int]:
    """A broadcast plan's emails spread over the warm-up's days (see the module contract), and how many
    queued emails are placed so far (`placed` plus this plan's: the next part of the audience starts there)."""
    if warmup is None or emails.empty:
        return emails, placed
    queued = emails[emails["status"] == "queued"]
    if queued.empty:
        return emails, placed
    score = queued["contact_id"].map(scores if scores is not None else pd.Series(dtype="float64")).fillna(0.0)
    order = np.lexsort((queued["contact_id"].to_numpy(), -score.to_numpy()))
    queued = queued.iloc[order]
    due = pd.to_datetime(queued["due_at"], utc=True)
    first = due.min().date()
    offsets = _day_offsets(warmup, first, np.arange(placed, placed + len(queued), dtype="int64"))
    moved = queued.assign(due_at=(due + pd.to_timedelta(offsets, unit="D")).to_numpy())
    moved["due_at"] = pd.to_datetime(moved["due_at"], utc=True)
    rest = emails[emails["status"] != "queued"]
    return pd.concat([moved, rest], ignore_index=True), placed + len(queued)


def days_note(emails: pd.DataFrame, warmup: WarmupSettings | None, time_zone: str = "UTC") -> str:
    """What `plan` says of a warm-up send: the days it takes and the emails on each, days as the calendar of
    `time_zone` (the clinic's) has them ('' without warm-up)."""
    if warmup is None or emails.empty:
        return ""
    queued = emails[emails["status"] == "queued"]
    if queued.empty:
        return ""
    local = pd.to_datetime(queued["due_at"], utc=True).dt.tz_convert(time_zone)
    per_day = local.dt.strftime("%Y-%m-%d").value_counts().sort_index()
    listed = ", ".join(f"{count} on {day}" for day, count in per_day.items())
    return (
        f"Warm-up: the sender is new, so this send takes {len(per_day)} day(s), the most engaged people first: "
        f"{listed}."
    )
