"""Who starts a journey now, and with which entry number.

Contract:
- `triggers(conn, campaign, members, facts, now, started_at)`: the segment members whom the journey's entry
  admits now, each with the moment of what admitted them (None for a segment entry): a confirmed signup, the
  latest event of the entry's type, or the date (attribute + offset, midnight in the person's zone). Only
  triggers at or after the journey's start count. A date entry is judged on the person's own calendar day
  (their zone, else the campaign's), so it fires on the day it falls due there, or later when a future
  appointment held it back (it waits while one exists: a cancelled booking lets it through). A sequence's
  `enrol:` rule admits as sequences always did (`_enrolled`).
- `admit(triggered, latest, reentry, now)`: the (contact, entry number, trigger) to insert, by the re-entry
  rule: never a second active entry; `never`: one entry ever; `after`: a new trigger (or, for a segment
  entry, still a member) once the wait since the previous entry began is over and it ended; `each_event`:
  every trigger newer than the previous entry's, once it ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta

import pandas as pd
from sqlalchemy import Connection

from needlecast.audience.segments import attributes_of
from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.journeys.conditions import Facts, all_hold
from needlecast.campaign.journeys.model import (
    AFTER,
    EACH_EVENT,
    ENTRY_DATE,
    ENTRY_ENROL,
    ENTRY_EVENT,
    ENTRY_SEGMENT,
    ENTRY_SIGNUP,
    Entry,
    Reentry,
)
from needlecast.campaign.journeys.timing import parse_date, utc
from needlecast.campaign.plan.timing import local_moment, zone
from needlecast.store import journeys as store
from needlecast.store.journeys import ACTIVE, LatestEntry


def triggers(
    conn: Connection, campaign: Campaign, members: pd.DataFrame, facts: Facts, now: datetime, started_at: datetime
) -> dict[int, datetime | None]:
    """contact -> what admits them now (see the module contract); `members` is indexed by contact id."""
    assert campaign.journey is not None
    entry = campaign.journey.entry
    ids = {int(c) for c in members.index}
    if entry.kind == ENTRY_SEGMENT:
        return dict.fromkeys(ids)
    if entry.kind == ENTRY_SIGNUP:
        return {c: utc(t) for c, t in store.confirmed_signups(conn, started_at).items() if c in ids}
    if entry.kind == ENTRY_EVENT:
        found: dict[int, datetime | None] = {}
        for contact_id, moments in facts.events(entry.event).items():
            latest = max(moments)
            if contact_id in ids and latest >= started_at:
                found[contact_id] = latest
        return found
    if entry.kind == ENTRY_DATE:
        return _dates_due(conn, campaign, entry, members, facts, now, started_at)
    if entry.kind == ENTRY_ENROL:
        return _enrolled(campaign, members, facts, started_at)
    return {}  # manual: only through `needlecast.actions.journeys.enter`


def _enrolled(
    campaign: Campaign, members: pd.DataFrame, facts: Facts, started_at: datetime
) -> dict[int, datetime | None]:
    """A sequence's `enrol:` rule, as sequences always applied it: whoever carries the tag (from their
    sign-up), or had the event since `joined_after` (default: the start; from the latest such event), or
    signed up since then. The trigger is the moment that exits count from for a new entry."""
    rule = campaign.enrol
    since = utc(rule.joined_after) if rule.joined_after is not None else started_at
    signed_up = pd.to_datetime(members["signed_up_at"], utc=True)
    if rule.event:
        found: dict[int, datetime | None] = {}
        for contact_id, moments in facts.events(rule.event).items():
            latest = max(moments)
            if contact_id in members.index and latest >= since:
                found[contact_id] = latest
        return found
    if rule.tag:
        chosen = members["tags"].map(lambda t: rule.tag in (t or "").split(";")).astype(bool)
    else:
        chosen = signed_up >= pd.Timestamp(since)
    return {int(c): _moment(t) for c, t in signed_up[chosen].items()}


def _moment(value: object) -> datetime | None:
    return None if pd.isna(value) else pd.Timestamp(value).to_pydatetime()


def _dates_due(
    conn: Connection,
    campaign: Campaign,
    entry: Entry,
    members: pd.DataFrame,
    facts: Facts,
    now: datetime,
    started_at: datetime,
) -> dict[int, datetime | None]:
    """Members whose date (attribute + offset) is today or past on their own calendar, not before the start."""
    people = members[all_hold(entry.where, members, facts, now)] if entry.where else members
    busy = store.future_appointments(conn, now) if entry.unless_appointment else set()
    found: dict[int, datetime | None] = {}
    for contact_id, person_zone, attributes in zip(
        people.index, people["time_zone"], people["attributes"], strict=True
    ):
        values = attributes_of(attributes)
        day = parse_date(values.get(entry.date_field))
        if day is None:
            continue
        due_day = day + timedelta(days=entry.offset.days)
        zone_name = person_zone or campaign.time_zone
        today = now.astimezone(zone(zone_name)).date()
        start_day = started_at.astimezone(zone(zone_name)).date()
        if not start_day <= due_day <= today:
            continue
        if entry.unless_appointment and (int(contact_id) in busy or _future(values.get("next_appointment_at"), now)):
            continue  # a future appointment exists: the recall stays silent until it is gone
        found[int(contact_id)] = local_moment(due_day, time(0, 0), zone_name)
    return found


def _future(value: object, now: datetime) -> bool:
    if not value:
        return False
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) > now


def admit(
    triggered: Mapping[int, datetime | None], latest: Mapping[int, LatestEntry], reentry: Reentry, now: datetime
) -> list[tuple[int, int, datetime | None]]:
    """(contact, entry number, trigger) of everyone `triggered` whom the re-entry rule lets in now."""
    admitted = []
    for contact_id, trigger in triggered.items():
        previous = latest.get(contact_id)
        if previous is None:
            admitted.append((contact_id, 1, trigger))
            continue
        if previous.state == ACTIVE or reentry.rule not in (AFTER, EACH_EVENT):
            continue
        before = utc(previous.trigger_at or previous.entered_at)
        newer = trigger is not None and utc(trigger) > before
        if reentry.rule == EACH_EVENT and not newer:
            continue
        waited = utc(previous.entered_at) + reentry.wait <= now
        if reentry.rule == AFTER and (not waited or (trigger is not None and not newer)):
            continue
        admitted.append((contact_id, previous.entry + 1, trigger))
    return admitted
