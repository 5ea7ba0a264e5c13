"""Send-time optimisation: each recipient's email goes at the hour of a window at which they engage most.

Contract: `choose_send_times(campaign_id, step_id, members, plain, optimise, engagement)` returns, per member
(aligned with `members`, which has `id` and `zone`), the moment to send and the rule that chose it:
- `holdout`: a stable `optimise.holdout` share of the members (a hash of campaign, step and contact), sent at
  the `plain` time, so that the report can compare optimised sends against them;
- `own history`: a member with at least `min_events` human opens and clicks in their history; each event
  counts with a weight that halves every `HALF_LIFE_DAYS` days of age, toward the window's slot at the same
  hour of the day in the member's own zone (and half as much again at the same weekday and hour), smoothed
  toward the audience's pattern (worth `PRIOR` events); the best slot wins, the earliest of equals;
- `audience's best hour`: a member with less history, when the audience (the members sent to) has at least
  `min_events` events: the slot of the audience's pattern that scores best in the member's zone;
- `campaign's time`: otherwise, the `plain` time.
A window's slots are the whole hours from the plain time (each member's own, e.g. 09:00 in their zone) to the
end of `optimise.window`, taken in UTC and read in each member's zone, so a DST change within the window is
read as the clock on the wall shows it. Quiet hours and the frequency cap apply afterwards, as to any email.
Vectorised: members are grouped by (zone, plain time); events are weighted once and counted per (member,
slot) with `numpy.bincount`, never row by row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from needlecast.campaign.definition.model import Campaign, Optimise
from needlecast.statistics.engagement import MACHINE_OPEN_SECONDS
from needlecast.store.engagement import human_engagement

HALF_LIFE_DAYS = 30.0
LOOKBACK_DAYS = 365
WEEKDAY_BONUS = 0.5  # the same weekday and hour counts half as much again as the same hour on another day
PRIOR = 1.0  # the audience's pattern weighs like one event in each person's own
OWN, AUDIENCE, CAMPAIGN, HOLDOUT = "own history", "audience's best hour", "campaign's time", "holdout"
RULES = (OWN, AUDIENCE, CAMPAIGN, HOLDOUT)
HOUR_NS = 3_600_000_000_000
BLOCK = 100_000  # members scored at once
QUARTER = 900  # seconds: every UTC offset in use is a whole number of quarters of an hour


@dataclass
class Engagement:
    """Human opens and clicks: `contact_id` and `at` (epoch seconds), with their recency `weight`."""

    events: pd.DataFrame

    @classmethod
    def load(cls, conn: Connection, now: datetime) -> Engagement:
        events = human_engagement(conn, now - timedelta(days=LOOKBACK_DAYS), MACHINE_OPEN_SECONDS)
        return cls.of(events, now)

    @classmethod
    def none(cls) -> Engagement:
        """No history: everyone gets the campaign's time (or the holdout's)."""
        return cls(
            pd.DataFrame(
                {
                    "contact_id": pd.Series([], dtype="int64"),
                    "at": pd.Series([], dtype="int64"),
                    "weight": pd.Series([], dtype="float32"),
                }
            )
        )

    @classmethod
    def of(cls, events: pd.DataFrame, now: datetime) -> Engagement:
        """From `contact_id` and `at` (epoch seconds): adds the weight of each event's age at `now`."""
        age_days = (int(now.timestamp()) - events["at"].to_numpy()).astype("float32") / np.float32(86400)
        np.clip(age_days, 0, None, out=age_days)
        weight = np.power(np.float32(0.5), age_days / np.float32(HALF_LIFE_DAYS))
        events = events.copy(deep=False)
        events["weight"] = weight
        return cls(events)


def engagement_for(conn: Connection, campaign: Campaign, now: datetime) -> Engagement | None:
    """The engagement history when the campaign optimises any send time (None when it does not)."""
    optimised = campaign.schedule.optimise is not None or any(s.optimise is not None for s in campaign.steps)
    return Engagement.load(conn, now) if optimised else None


def in_holdout(campaign_id: str, step_id: str, contact_ids: Sequence[int], share: float) -> np.ndarray:
    edge = int(share * 2**32)
    return np.fromiter(
        (
            int(hashlib.sha256(f"{campaign_id}|{step_id}|{c}|holdout".encode()).hexdigest()[:8], 16) < edge
            for c in contact_ids
        ),
        dtype=bool,
        count=len(contact_ids),
    )


def _local(moments: pd.DatetimeIndex | pd.Series, zone: str) -> tuple[np.ndarray, np.ndarray]:
    """(hour, weekday) of UTC moments in `zone`."""
    local = pd.DatetimeIndex(moments).tz_convert(zone)
    return np.asarray(local.hour, dtype="int64"), np.asarray(local.day_of_week, dtype="int64")


def choose_send_times(
    campaign_id: str,
    step_id: str,
    members: pd.DataFrame,
    plain: pd.Series,
    optimise: Optimise,
    engagement: Engagement,
) -> tuple[pd.Series, pd.Series]:
    """(send moment, rule) per member, aligned with `members` (see the module contract)."""
    ids = members["id"].to_numpy(dtype="int64")
    zones = members["zone"].astype(str).to_numpy()
    starts = pd.DatetimeIndex(pd.to_datetime(plain, utc=True)).as_unit("ns").asi8  # ns since the epoch

    due = starts.copy()
    rule = np.full(len(ids), CAMPAIGN, dtype=object)
    if len(ids):
        held = in_holdout(campaign_id, step_id, ids.tolist(), optimise.holdout)
        rule[held] = HOLDOUT
        _optimise_open(ids, zones, starts, ~held, optimise, engagement, due, rule)
    return (
        pd.Series(pd.to_datetime(due, unit="ns", utc=True), index=members.index),
        pd.Series(rule, index=members.index, dtype=object),
    )


def _local_hours(at: np.ndarray, zone_of: np.ndarray, zone_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Local (hour, weekday) of epoch seconds `at`, each in the zone `zone_names[zone_of[i]]`. Each zone's wall
    clock is looked up once per quarter of an hour of the span (every UTC offset in use is a whole number of
    quarters), in a small table, so ten million events cost a few vector operations and no per-event object."""
    if not len(at):
        return np.zeros(0, dtype="int8"), np.zeros(0, dtype="int8")
    first = int(at.min()) // QUARTER
    quarters = (at // QUARTER - first).astype("int32")
    span = pd.DatetimeIndex(pd.to_datetime((first + np.arange(int(quarters.max()) + 1)) * QUARTER, unit="s", utc=True))
    hour_table = np.stack([np.asarray(span.tz_convert(zone).hour, dtype="int8") for zone in zone_names])
    day_table = np.stack([np.asarray(span.tz_convert(zone).day_of_week, dtype="int8") for zone in zone_names])
    return hour_table[zone_of, quarters], day_table[zone_of, quarters]


def _optimise_open(
    ids: np.ndarray,
    zones: np.ndarray,
    starts: np.ndarray,
    open_: np.ndarray,
    optimise: Optimise,
    engagement: Engagement,
    due: np.ndarray,
    rule: np.ndarray,
) -> None:
    """Fill `due` and `rule` for the members not held out (positions where `open_`)."""
    slots = int(optimise.window / timedelta(hours=1))
    events = engagement.events
    member_of_event = pd.Index(ids).get_indexer(events["contact_id"].to_numpy()).astype("int32")
    ours = member_of_event >= 0
    at, weights = events["at"].to_numpy(), events["weight"].to_numpy()
    if not ours.all():  # events of people outside this send: left out (copies only then)
        member_of_event, at, weights = member_of_event[ours], at[ours], weights[ours]
    del ours
    zone_names, zone_codes = np.unique(zones, return_inverse=True)
    hours, days = _local_hours(at, zone_codes.astype("int16")[member_of_event], [str(z) for z in zone_names])
    pattern = np.bincount(days.astype("int16") * 24 + hours, weights=weights, minlength=7 * 24).reshape(7, 24)
    by_hour = pattern.sum(axis=0)
    enough = np.bincount(member_of_event, minlength=len(ids)) >= optimise.min_events

    groups = pd.DataFrame({"zone": zones, "start": starts, "position": np.arange(len(ids))})[open_]
    for (zone, start), group in groups.groupby(["zone", "start"], sort=False):
        positions = group["position"].to_numpy()
        slot_moments = pd.DatetimeIndex(
            pd.to_datetime(int(start) + np.arange(slots, dtype="int64") * HOUR_NS, unit="ns", utc=True)
        )
        slot_hours, slot_days = _local(slot_moments, str(zone))
        audience = by_hour[slot_hours] + WEEKDAY_BONUS * pattern[slot_days, slot_hours]
        total = audience.sum()
        own = positions[enough[positions]]
        if len(own):
            prior = PRIOR * audience / total if total > 0 else np.zeros(slots)
            best = _best_slots(own, member_of_event, hours, days, weights, slot_hours, slot_days, prior, len(ids))
            due[own] = slot_moments.asi8[best]
            rule[own] = OWN
        rest = positions[~enough[positions]]
        if len(rest) and len(at) >= optimise.min_events and total > 0:
            due[rest] = slot_moments.asi8[int(np.argmax(audience))]
            rule[rest] = AUDIENCE


def _best_slots(
    own: np.ndarray,
    member_of_event: np.ndarray,
    hours: np.ndarray,
    days: np.ndarray,
    weights: np.ndarray,
    slot_hours: np.ndarray,
    slot_days: np.ndarray,
    prior: np.ndarray,
    members: int,
) -> np.ndarray:
    """The best slot of each member at positions `own`, from their events: each event counts toward every slot
    at its hour of the day, half as much again at its weekday; `prior` is added to every member's scores.
    Members are scored in blocks of BLOCK, so the scores in memory are a block's."""
    slots = len(slot_hours)
    row_of = np.full(members, -1, dtype="int32")
    row_of[own] = np.arange(len(own), dtype="int32")
    rows = row_of[member_of_event]
    del row_of
    levels = _slots_by_hour(slot_hours)
    best = np.zeros(len(own), dtype="int64")
    for first in range(0, len(own), BLOCK):
        last = min(first + BLOCK, len(own))
        picked = np.flatnonzero((rows >= first) & (rows < last))
        block_rows = rows[picked].astype("int64") - first
        block_hours, block_days, block_weights = hours[picked], days[picked], weights[picked]
        score = np.zeros((last - first) * slots, dtype="float64")
        for level in levels:
            slot = level[block_hours]
            hit = slot >= 0
            bonus = np.where(block_days[hit] == slot_days[slot[hit]], 1.0 + WEEKDAY_BONUS, 1.0)
            score += np.bincount(
                block_rows[hit] * slots + slot[hit], weights=block_weights[hit] * bonus, minlength=len(score)
            )
        table = score.reshape(last - first, slots)
        table += prior
        best[first:last] = np.argmax(table, axis=1)
    return best


def _slots_by_hour(slot_hours: np.ndarray) -> list[np.ndarray]:
    """Lookups hour of the day -> slot (or -1): the first lists each hour's first slot, the next its second
    (a window of several days, or an hour that a DST change repeats), and so on."""
    levels: list[np.ndarray] = []
    for slot, hour in enumerate(slot_hours):
        for level in levels:
            if level[hour] < 0:
                level[hour] = slot
                break
        else:
            levels.append(np.full(24, -1, dtype="int16"))
            levels[-1][hour] = slot
    return levels


def summary(rules: pd.Series, due: pd.Series, time_zone: str = "UTC") -> str:
    """How many each rule decided and the hours chosen (on the clock of `time_zone`), for `plan`."""
    counted = rules.value_counts()
    decided = ", ".join(f"{name} {int(counted.get(name, 0))}" for name in RULES)
    moments = pd.to_datetime(due[rules != HOLDOUT], utc=True).dt.tz_convert(time_zone)
    hours = moments.dt.strftime("%a %H:00").value_counts().head(6)
    shown = ", ".join(f"{hour} x {int(n)}" for hour, n in hours.items())
    return f"send-time optimisation: {decided}; busiest hours ({time_zone}): {shown or 'none'}"
