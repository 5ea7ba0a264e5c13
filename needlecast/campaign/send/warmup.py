"""Warm-up for a new sender: the emails of a day and of an hour are capped, the most engaged go first.

Contract:
- `caps_on(warmup, day)`: the caps of a UTC day (emails per day and per hour), or None when there is no
  warm-up or it has ended. Without `first_day` they follow SendGrid's published automated IP warm-up
  schedule (`SENDGRID_HOURLY`, one hourly limit per day of warm-up; the day's cap is 24 hours of it);
  with `first_day`, day 0 allows `first_day` emails and each next day `growth` times the one before, an
  hour the day's cap spread over `hours` hours. Days before `start` count as day 0.
- Planning spreads a broadcast over the curve's days (`campaign.plan.warmup_days`, by `caps_on`). The caps
  themselves are kept per UTC day and hour.
- Sending (`admit`): before a claimed round is handed to the backend, its sendable emails are booked in
  the day's and the hour's windows of the fleet-wide counters (`store.sendcaps`, in the fleet rate limit's
  table), so every sender together stays within the caps. Those that fit go (lowest delivery id first: the
  most engaged); the others go back to `queued` (the same ledger row: sent exactly once later, never
  lost), in the booking's transaction, due at the next window that is both under the cap and outside the
  recipient's quiet hours (`next_window`: their own zone, else the campaign's, as the planner reads quiet
  hours).
- `next_window(conn, warmup, now, day_full, zone, quiet)`: from the next hour (or, when the day's cap is
  used up, the next UTC day's first hour), the first moment outside the quiet hours in `zone` whose day
  and hour windows both have room (by what is booked in them so far); a moment in quiet hours moves to
  their end, a full hour to the next hour, a full day to the next day. It looks at most 8 days ahead.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Connection, select

from needlecast.campaign.plan.timing import after_quiet_hours
from needlecast.config.deliverability import WarmupSettings
from needlecast.ledger import SENDING
from needlecast.store import sendcaps
from needlecast.store.delivery import DeliveryStore
from needlecast.store.helpers import chunked
from needlecast.store.schema import contacts, deliveries

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


Quiet = tuple[time, time] | None  # quiet hours as `campaign.plan.timing.parse_quiet_hours` reads them
_LOOK_AHEAD = 8 * 24  # hours a deferred email's window is looked for in (the curve grows: a day soon has room)


def _windows(moment: datetime) -> tuple[str, str]:
    """The names of the day's and the hour's windows `moment` (UTC) falls in."""
    return f"warmup:{moment:%Y-%m-%d}", f"warmup:{moment:%Y-%m-%dT%H}"


def next_window(
    conn: Connection,
    warmup: WarmupSettings | None,
    now: datetime,
    day_full: bool,
    zone: str,
    quiet: Quiet,
) -> datetime:
    """When an email the caps held back at `now` is due again (see the module contract)."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    day_start = hour.replace(hour=0)
    moment = day_start + timedelta(days=1) if day_full else hour + timedelta(hours=1)
    for _ in range(_LOOK_AHEAD):
        moment = after_quiet_hours(moment, zone, quiet)  # the end of the quiet hours is outside them
        caps = caps_on(warmup, moment.date())
        if caps is None:
            return moment
        day, within = _windows(moment)
        used = sendcaps.booked(conn, [day, within])
        if used[day] >= caps.day:  # the day is used up: its next hours have no room either
            moment = datetime.combine(moment.date() + timedelta(days=1), time(), UTC)
        elif used[within] >= caps.hour:
            moment = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        else:
            return moment
    return moment


def _zones(conn: Connection, ids: list[int], campaign_zone: str) -> dict[int, str]:
    """Each delivery's recipient zone: the contact's own, else the campaign's (as the planner reads them)."""
    zones: dict[int, str] = {}
    for chunk in chunked(ids, 5000):
        rows = conn.execute(
            select(deliveries.c.id, contacts.c.time_zone)
            .join(contacts, contacts.c.id == deliveries.c.contact_id)
            .where(deliveries.c.id.in_(chunk))
        ).all()
        zones.update({int(i): z or campaign_zone for i, z in rows})
    return {i: zones.get(i, campaign_zone) for i in ids}


def admit(
    store: DeliveryStore,
    warmup: WarmupSettings | None,
    ids: list[int],
    now: datetime,
    zone: str = "UTC",
    quiet: Quiet = None,
) -> set[int]:
    """The delivery ids (claimed, `sending`) that fit the caps now; the others are re-queued for their next
    window (`next_window`, in their recipient's zone, else `zone`: the campaign's) in the same transaction as
    the booking (see the module contract)."""
    caps = caps_on(warmup, now.date())
    if caps is None or not ids:
        return set(ids)
    ordered = sorted(ids)
    day, within = _windows(now)
    with store.writing() as conn:
        granted, (day_room, _) = sendcaps.book(conn, [(day, caps.day), (within, caps.hour)], len(ordered))
        later = ordered[granted:]
        due_by_zone: dict[str, datetime] = {}
        waiting: dict[datetime, list[int]] = {}
        for delivery_id, recipient_zone in _zones(conn, later, zone).items() if later else ():
            due = due_by_zone.get(recipient_zone)
            if due is None:
                due = due_by_zone[recipient_zone] = next_window(conn, warmup, now, day_room == 0, recipient_zone, quiet)
            waiting.setdefault(due, []).append(delivery_id)
        for due, held in sorted(waiting.items()):
            store.requeue(conn, {"due_at": due, "error": WAITING}, ids=held, only_from=SENDING)
    if later:
        first = min(waiting)
        log.info(
            "warm-up: %d emails go now, %d wait (the first until %s)", granted, len(later), f"{first:%Y-%m-%d %H:%M}"
        )
    return set(ordered[:granted])
