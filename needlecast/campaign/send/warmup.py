"""Warm-up for a new sender: the emails of a day and of an hour are capped, the most engaged go first.

Contract:
- `caps_on(warmup, day)`: the caps of a UTC day (emails per day and per hour), or None when there is no
  warm-up or it has ended. Without `first_day` they follow SendGrid's published automated IP warm-up
  schedule (`SENDGRID_HOURLY`, one hourly limit per day of warm-up; the day's cap is 24 hours of it);
  with `first_day`, day 0 allows `first_day` emails and each next day `growth` times the one before, an
  hour the day's cap spread over `hours` hours. Days before `start` count as day 0.
- Planning (`spread`): a broadcast's queued emails are ordered by engagement (recent human opens and clicks,
  `engagement_scores`, most first; ties by contact id) and each is moved whole days later (keeping its time
  of day, so quiet hours still hold) to the first day of the curve with room for it. They are enqueued in
  that order, so the ledger's delivery ids follow engagement. `needlecast plan` shows the days
  (`days_note`), and its table counts the emails per day. Engagement order holds within each part the
  planner reads at a time (200,000 contacts).
- Sending (`admit`): before a claimed round is handed to the backend, its sendable emails are booked in
  the day's and the hour's windows of the fleet-wide counters (`store.sendcaps`, in the fleet rate limit's
  table), so every sender together stays within the caps. Those that fit go (lowest delivery id first: the
  most engaged); the others go back to `queued`, due at the next window (the next hour, or the same hour
  tomorrow when the day's cap is used up), in the booking's transaction: never sent, never lost, and sent
  exactly once later.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from needlecast.campaign.plan.send_time import Engagement
from needlecast.config.deliverability import WarmupSettings
from needlecast.ledger import SENDING
from needlecast.store import sendcaps
from needlecast.store.delivery import DeliveryStore

log = logging.getLogger("needlecast.warmup")

# SendGrid's automated IP warm-up hourly send schedule: the hourly email limit on each day of warm-up (day 0
# to day 41, after which the IP leaves warm-up). Source: Twilio SendGrid docs, "Warming Up an IP Address",
# section "Automated IP warmup hourly send schedule"
# (https://www.twilio.com/docs/sendgrid/ui/sending-email/warming-up-an-ip-address). Copied as published,
# day 12's 1,000 included (it breaks the curve's ~1.4x a day growth, but it is what SendGrid enforces).
SENDGRID_HOURLY: tuple[int, ...] = (
    *(20, 28, 39, 55, 77, 108, 151, 211, 295, 413),
    *(579, 810, 1_000, 1_587, 2_222, 3_111, 4_356, 6_098, 8_583, 11_953),
    *(16_734, 23_427, 32_798, 45_917, 64_284, 89_998, 125_997, 176_395, 246_953, 345_735),
    *(484_029, 677_640, 948_696, 1_328_175, 1_859_444, 2_603_222, 3_644_511, 5_102_316, 7_143_242, 10_000_539),
    *(14_000_754, 19_601_056),
)
WAITING = "waiting for the warm-up's next window"


@dataclass(frozen=True)
class Caps:
    day: int
    hour: int


def caps_on(warmup: WarmupSettings | None, day: date) -> Caps | None:
    """The caps of `day` (see the module contract); None when nothing is capped."""
    if warmup is None:
        return None
    age = max(0, (day - warmup.start).days)
    if not warmup.first_day:
        if age >= len(SENDGRID_HOURLY):
            return None
        return Caps(24 * SENDGRID_HOURLY[age], SENDGRID_HOURLY[age])
    if age >= warmup.days:
        return None
    daily = max(1, round(warmup.first_day * warmup.growth**age))
    return Caps(daily, math.ceil(daily / warmup.hours))


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


def days_note(emails: pd.DataFrame, warmup: WarmupSettings | None) -> str:
    """What `plan` says of a warm-up send: the days it takes and the emails on each ('' without warm-up)."""
    if warmup is None or emails.empty:
        return ""
    queued = emails[emails["status"] == "queued"]
    if queued.empty:
        return ""
    per_day = pd.to_datetime(queued["due_at"], utc=True).dt.strftime("%Y-%m-%d").value_counts().sort_index()
    listed = ", ".join(f"{count} on {day}" for day, count in per_day.items())
    return (
        f"Warm-up: the sender is new, so this send takes {len(per_day)} day(s), the most engaged people first: "
        f"{listed}."
    )


def _next_window(now: datetime, day_full: bool) -> datetime:
    hour = now.replace(minute=0, second=0, microsecond=0)
    return hour + (timedelta(days=1) if day_full else timedelta(hours=1))


def admit(store: DeliveryStore, warmup: WarmupSettings | None, ids: list[int], now: datetime) -> set[int]:
    """The delivery ids (claimed, `sending`) that fit the caps now; the others are re-queued for the next
    window in the same transaction as the booking (see the module contract)."""
    caps = caps_on(warmup, now.date())
    if caps is None or not ids:
        return set(ids)
    ordered = sorted(ids)
    windows = [(f"warmup:{now:%Y-%m-%d}", caps.day), (f"warmup:{now:%Y-%m-%dT%H}", caps.hour)]
    with store.writing() as conn:
        granted, (day_room, _) = sendcaps.book(conn, windows, len(ordered))
        later = ordered[granted:]
        if later:
            due = _next_window(now, day_full=day_room == 0)
            store.requeue(conn, {"due_at": due, "error": WAITING}, ids=later, only_from=SENDING)
    if later:
        log.info("warm-up: %d emails go now, %d wait until %s", granted, len(later), f"{due:%Y-%m-%d %H:%M}")
    return set(ordered[:granted])
