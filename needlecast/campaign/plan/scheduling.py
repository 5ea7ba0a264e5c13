"""When a campaign goes out: a broadcast's send moments, and scheduling a campaign for the first time.

Contract:
- `broadcast_moments(campaign, zones)`: the distinct UTC moments a broadcast sends at: its `send_at`, or
  `local_time` on `date` in each of `zones` (the recipients' own, and the campaign's).
- `schedule_campaign(conn, campaign, zones, now, send_now=...)` is called whenever a campaign is
  scheduled: by `schedule sync`, by the scheduler re-reading the files, by `needlecast send`, by the
  console. The first time (or when the file changed since it was last scheduled) a broadcast that has
  sent nothing yet and whose earliest moment is already past is refused with a `CampaignFileError`
  naming `schedule.send_at` or `schedule.date`, unless `send_now` (then it goes at once, on purpose).
  Otherwise the campaign's state is recorded: active, started (the first time) at `now`, and the file's
  digest, so that a scheduler catching up on a moment it missed while down is not refused.
- A draft (`draft: true`) is never scheduled: `CampaignBlocked` says how to make it live.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from needlecast.campaign.definition.model import BROADCAST, Campaign
from needlecast.campaign.plan.timing import local_moment
from needlecast.errors import CampaignBlocked, CampaignFileError
from needlecast.store.audience import time_zones
from needlecast.store.delivery import delivery_store
from needlecast.store.schema import campaign_state

# A schedule written for "now" reaches the scheduler a little later: that much in the past is not refused.
PAST_TOLERANCE = timedelta(minutes=1)


def audience_zones(conn: Connection) -> set[str]:
    """The time zones the contacts have ('' for those without one): a few index seeks (`store.audience`)."""
    return time_zones(conn)


def broadcast_moments(campaign: Campaign, zones: Iterable[str]) -> list[datetime]:
    """The distinct UTC moments a broadcast sends at: one, or one per recipients' time zone."""
    schedule = campaign.schedule
    if schedule.send_at is not None:
        return [schedule.send_at.astimezone(UTC)]
    assert schedule.on is not None and schedule.local_time is not None  # the loader requires both
    wanted = {z or campaign.time_zone for z in zones} | {campaign.time_zone}
    return sorted({local_moment(schedule.on, schedule.local_time, z) for z in wanted})


def refuse_if_past(campaign: Campaign, zones: Iterable[str], now: datetime) -> None:
    """`CampaignFileError` when the broadcast's earliest moment is already past (see the module contract)."""
    schedule = campaign.schedule
    fix = f"choose a later time, or send it at once on purpose: needlecast send {campaign.id} --now"
    if schedule.send_at is not None:
        if schedule.send_at.astimezone(UTC) < now - PAST_TOLERANCE:
            raise CampaignFileError(
                str(campaign.path),
                "schedule.send_at",
                f"{schedule.send_at:%Y-%m-%d %H:%M} ({campaign.time_zone}) is already past",
                fix,
                campaign_id=campaign.id,
            )
        return
    zone_list = sorted({z or campaign.time_zone for z in zones} | {campaign.time_zone})
    assert schedule.on is not None and schedule.local_time is not None
    past = [z for z in zone_list if local_moment(schedule.on, schedule.local_time, z) < now - PAST_TOLERANCE]
    if past:
        raise CampaignFileError(
            str(campaign.path),
            "schedule.date",
            f"{schedule.local_time:%H:%M} on {schedule.on} has already passed in {past[0]}"
            + (f" and {len(past) - 1} other recipient time zone(s)" if len(past) > 1 else ""),
            fix,
            campaign_id=campaign.id,
        )


def refuse_draft(campaign: Campaign) -> None:
    if campaign.draft:
        raise CampaignBlocked(
            f"campaign '{campaign.id}' is a draft: it is planned and previewed but never scheduled or sent. "
            f"Remove 'draft: true' from {campaign.path.name} when it is ready."
        )


def schedule_campaign(
    conn: Connection, campaign: Campaign, zones: Iterable[str], now: datetime, *, send_now: bool = False
) -> dict[str, Any]:
    """Schedule `campaign` (see the module contract) and return its state row."""
    refuse_draft(campaign)
    state = conn.execute(select(campaign_state).where(campaign_state.c.campaign_id == campaign.id)).mappings().first()
    changed = state is None or state["digest"] != campaign.digest
    store = delivery_store(conn)
    if changed and campaign.kind == BROADCAST and not send_now and not store.has_rows(conn, campaign.id):
        refuse_if_past(campaign, zones, now)
    row = store.ensure_campaign_state(conn, campaign.id, campaign.digest, now)
    if row["digest"] != campaign.digest:
        conn.execute(
            update(campaign_state)
            .where(campaign_state.c.campaign_id == campaign.id)
            .values(digest=campaign.digest, updated_at=now)
        )
        row = {**row, "digest": campaign.digest}
    return row
