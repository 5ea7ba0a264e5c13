"""Dates in an audience file: ISO 8601, or numbers with slashes or dots in the order its column shows.

A clinic's export writes dates the way its country does: 29/11/2026 in the UK, 11/29/2026 in the US. A
date with a four-digit year first (2026/11/29) is year-month-day. Otherwise the order is the workspace's
`[imports] date_order` ("DMY", "MDY" or "YMD") when it is set, else the column's own: day-first when some
value has a first part above 12 and none a second part above 12, month-first the other way round. A column
whose values are all ambiguous (03/04/2026) or that mixes both orders has its numeric dates rejected, each
with a reason naming the setting that decides them. Years are written in full: 29/11/26 is rejected.

Contract: `DateColumns(configured, scan).parse(column, value)` returns an aware UTC datetime, None for an
empty cell, or raises `DateProblem` (a `ValueError`) saying why and how to fix it. `scan()` is called at
most once, the first time a column's order is needed: it reads the whole file and returns each date
column's `Evidence` (so a file of ISO dates is never read twice).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from needlecast.errors import ConfigurationError

ORDERS = ("DMY", "MDY", "YMD")
_NUMERIC = re.compile(r"(\d{1,4})([/.\-])(\d{1,2})\2(\d{1,4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_EXAMPLES = "2026-03-01, 2026-03-01T09:30:00Z or 01/03/2026"


class DateProblem(ValueError):
    """A cell that is not a date this file's column can be read as; the message says why and the fix."""


@dataclass
class Evidence:
    """What a column's numeric dates show about their order: the first value (line, text) that can only be
    day-first, and the first that can only be month-first."""

    day_first: tuple[int, str] | None = None
    month_first: tuple[int, str] | None = None

    def see(self, line: int, value: str) -> None:
        found = _NUMERIC.fullmatch(value.strip())
        if found is None or len(found[1]) > 2 or len(found[4]) != 4:
            return
        first, second = int(found[1]), int(found[3])
        if first > 12 and second <= 12 and self.day_first is None:
            self.day_first = (line, value.strip())
        elif second > 12 and first <= 12 and self.month_first is None:
            self.month_first = (line, value.strip())

    @property
    def settled(self) -> bool:
        """Both orders seen: nothing later in the file can change the verdict (a mixed column)."""
        return self.day_first is not None and self.month_first is not None


def check_order(value: str) -> str:
    """`value` as a date order ("" for "from the column"); `ConfigurationError` naming the setting."""
    order = value.strip().upper()
    if order and order not in ORDERS:
        raise ConfigurationError(
            f'[imports] date_order must be "DMY" (29/11/2026), "MDY" (11/29/2026) or "YMD" (2026/11/29), '
            f"not {value!r}; leave it out to read each date column's order from its values"
        )
    return order


@lru_cache(maxsize=65536)
def _iso(text: str) -> datetime | None:
    """An ISO 8601 date or time as aware UTC, or None when `text` is not one."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class DateColumns:
    """Reads the date cells of one file (see the module contract)."""

    def __init__(self, configured: str, scan: Callable[[], dict[str, Evidence]]) -> None:
        self.configured = check_order(configured)
        self._scan = scan
        self._evidence: dict[str, Evidence] | None = None

    def parse(self, column: str, value: str) -> datetime | None:
        text = value.strip()
        if not text:
            return None
        return _iso(text) or self._numeric(column, text)

    def _numeric(self, column: str, text: str) -> datetime:
        label = column.replace("_", " ")
        found = _NUMERIC.fullmatch(text)
        if found is None:
            raise DateProblem(f"{label} '{text}' is not a date like {_EXAMPLES}")
        first, sep, second, third = found[1], found[2], found[3], found[4]
        if len(first) == 4:
            order = "YMD"
        elif len(third) != 4:
            raise DateProblem(f"{label} '{text}': write the year in full (like 29{sep}11{sep}2026)")
        else:
            order = self._order(column, label, text)
        year, month, day = {
            "YMD": (first, second, third),
            "DMY": (third, second, first),
            "MDY": (third, first, second),
        }[order]
        hour, minute, seconds = (int(found[i] or 0) for i in (5, 6, 7))
        try:
            return datetime(int(year), int(month), int(day), hour, minute, seconds, tzinfo=UTC)
        except ValueError:
            how = {"DMY": "day/month/year", "MDY": "month/day/year", "YMD": "year/month/day"}[order]
            raise DateProblem(f"{label} '{text}' is not a date (read as {how})") from None

    def _order(self, column: str, label: str, text: str) -> str:
        """The order of the day and month in `column`: the setting's, else the column's (or `DateProblem`)."""
        if self.configured == "YMD":
            raise DateProblem(
                f"{label} '{text}' is not year/month/day, as [imports] date_order says; write it as 2026-11-29"
            )
        if self.configured:
            return self.configured
        if self._evidence is None:
            self._evidence = self._scan()
        seen = self._evidence.get(column) or Evidence()
        if seen.day_first and seen.month_first:
            raise DateProblem(
                f"{label} '{text}': this column has day-first dates (line {seen.day_first[0]}: "
                f"{seen.day_first[1]}) and month-first ones (line {seen.month_first[0]}: {seen.month_first[1]}); "
                'write them as 2026-11-29, or set [imports] date_order = "DMY" or "MDY" in needlecast.toml'
            )
        if seen.day_first:
            return "DMY"
        if seen.month_first:
            return "MDY"
        raise DateProblem(
            f"{label} '{text}': day and month could be either way round (no value in this column has a part "
            'above 12); write it as 2026-11-29, or set [imports] date_order = "DMY" or "MDY" in needlecast.toml'
        )
