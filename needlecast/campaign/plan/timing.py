"""Time: local-time sends, quiet hours, frequency caps. Inside needlecast every datetime is aware UTC.

Local times are resolved with zoneinfo. A wall-clock time that does not exist on a DST change day (01:30 on
the morning clocks spring forward) moves forward by the gap; an ambiguous one (clocks fall back) takes the
first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_moment(on: date, at: time, zone_name: str) -> datetime:
    """The UTC moment of wall-clock `at` on `on` in `zone_name` (gaps move forward, folds take the first)."""
    # With fold=0 zoneinfo reads a wall time in a spring-forward gap with the offset before the change, which
    # lands it `gap` later on the clock (01:30 -> 02:30 BST), and an ambiguous one as its first occurrence.
    return datetime.combine(on, at, tzinfo=zone(zone_name)).astimezone(UTC)


def parse_quiet_hours(text: str) -> tuple[time, time] | None:
    """'21:00-08:00' -> (21:00, 08:00); '' or 'off' -> None."""
    if not text or text.strip().lower() in ("off", "none"):
        return None
    start, _, end = text.partition("-")
    return time.fromisoformat(start.strip()), time.fromisoformat(end.strip())


def after_quiet_hours(moment: datetime, zone_name: str, quiet: tuple[time, time] | None) -> datetime:
    """`moment` if it is outside the recipient's quiet hours, else the end of those quiet hours (UTC)."""
    if quiet is None:
        return moment
    start, end = quiet
    tz = zone(zone_name)
    local = moment.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    if start <= end:
        inside = start <= clock < end
        wake_day = local.date()
    else:  # spans midnight, e.g. 21:00-08:00
        inside = clock >= start or clock < end
        wake_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return moment
    return local_moment(wake_day, end, zone_name)
