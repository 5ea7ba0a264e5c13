"""When a person arriving at a node is due there: at once, after a delay, at a time of day in their own zone,
or on a date the clinic knows about them.

Contract: `arrival_due(node, since, zone, attributes)` returns the UTC moment the sweeper should next look
at a position that arrived at `node` at `since` (aware UTC), or None when a date wait has no date for the
person (the sweeper then lets them leave, with that reason, rather than guess). Time-of-day waits use wall
clock time in the person's zone (their own, else the campaign's), so a wait "until 09:00" across a DST change
still ends at 09:00 local.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from needlecast.campaign.journeys.model import Node, WaitNode, WaitUntilNode
from needlecast.campaign.plan.timing import local_moment, zone


def parse_date(value: Any) -> date | None:
    """A date attribute's value (ISO 8601 date or date and time) as a date; None when it is not one."""
    if value is None or value == "":
        return None
    try:
        return datetime.fromisoformat(str(value).strip().replace("Z", "+00:00")).date()
    except ValueError:
        return None


def next_local_time(node: WaitNode, since: datetime, zone_name: str) -> datetime:
    """The first moment after `since` at which the wall clock in `zone_name` shows `node.until_time`."""
    assert node.until_time is not None
    local_day = since.astimezone(zone(zone_name)).date()
    moment = local_moment(local_day, node.until_time, zone_name)
    if moment <= since:
        moment = local_moment(local_day + timedelta(days=1), node.until_time, zone_name)
    return moment


def arrival_due(node: Node, since: datetime, zone_name: str, attributes: dict[str, Any]) -> datetime | None:
    """When a position that arrived at `node` at `since` is next due (see the module contract)."""
    if isinstance(node, WaitUntilNode):
        return since + node.timeout
    if not isinstance(node, WaitNode):
        return since
    if node.delay is not None:
        return since + node.delay
    if node.until_time is not None:
        return next_local_time(node, since, zone_name)
    day = parse_date(attributes.get(node.until_date))
    if day is None:
        return None
    target = datetime.combine(day, node.at) + node.offset
    if node.yearly:
        today = since.astimezone(zone(zone_name)).date()
        for year in (today.year, today.year + 1):
            try:
                candidate = datetime.combine(day.replace(year=year), node.at) + node.offset
            except ValueError:  # 29 February in a year without one: the 28th
                candidate = datetime.combine(day.replace(year=year, day=28), node.at) + node.offset
            if local_moment(candidate.date(), candidate.time(), zone_name) > since:
                target = candidate
                break
    return local_moment(target.date(), target.time(), zone_name)


def utc(moment: datetime) -> datetime:
    """An aware UTC datetime (naive values read back from a database are UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
