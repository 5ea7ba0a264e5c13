"""`[deliverability]` in needlecast.toml: the pre-send checks' link hosts, the auto-pause thresholds, warm-up.

Contract: `load_deliverability_settings(path, raw)` turns the `[deliverability]` table into
`DeliverabilitySettings`, or raises a `ConfigurationError` naming the file, the key and the fix. A threshold
outside its sane bounds is refused, never clamped: a clinic that writes `hard_bounce_percent = 50` meant
something the guard cannot do for it.

    [deliverability]
    link_hosts = ["instagram.com"]   # hosts besides the clinic's own that emails may link to
    window = 1000                    # the rolling window: the campaign's last 1,000 emails handed over
    hard_bounce_percent = 5.0        # pause at 5 % hard bounces in the window
    complaint_percent = 0.1          # pause at 0.1 % spam complaints in the window
    provider_errors = 50             # pause at 50 emails the provider refused or dropped in the window
    warmup = {start = "2027-01-10"}  # SendGrid's published warm-up schedule from that day
    # or a curve of your own: warmup = {start = "2027-01-10", first_day = 50, growth = 1.4, hours = 8}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from needlecast.errors import ConfigurationError

MIN_WINDOW = 200  # fewer emails than this say too little about a list to stop a campaign on
MAX_WINDOW = 100_000
# (lowest, highest, why): the bounds a threshold must keep. The highest are Amazon SES's own pause levels
# (10 % bounces, 0.5 % complaints): a guard set above them would let a send run past what a provider stops.
BOUNCE_BOUNDS = (0.5, 10.0)
COMPLAINT_BOUNDS = (0.01, 0.5)
GROWTH_BOUNDS = (1.05, 3.0)
FIRST_DAY_BOUNDS = (10, 1_000_000)
HOURS_BOUNDS = (1, 24)
WARMUP_DAYS_BOUNDS = (1, 365)


@dataclass(frozen=True)
class WarmupSettings:
    """A new sender's warm-up: from `start` (its day 0), the emails per day and per hour are capped.

    Without `first_day`, the caps follow SendGrid's published schedule (`warmup.SENDGRID_HOURLY`: the hourly
    limit of each day, the daily cap 24 times it) until it ends. With `first_day`, day 0 allows `first_day`
    emails and each next day `growth` times the one before, for `days` days; an hour allows the day's cap
    spread over `hours` hours (rounded up)."""

    start: date
    first_day: int = 0  # 0: SendGrid's schedule
    growth: float = 1.4
    hours: int = 8
    days: int = 42  # SendGrid's schedule lasts 42 days (day 0 to day 41)


@dataclass(frozen=True)
class DeliverabilitySettings:
    """The pre-send checks' link hosts, the auto-pause thresholds (`guardrails`) and the warm-up, if any."""

    link_hosts: tuple[str, ...] = ()
    window: int = 1000
    hard_bounce_percent: float = 5.0
    complaint_percent: float = 0.1
    provider_errors: int = 50
    warmup: WarmupSettings | None = field(default=None)


def _number(path: Path, key: str, value: Any, *, whole: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or (whole and not isinstance(value, int)):
        kind = "a whole number" if whole else "a number"
        raise ConfigurationError(f"{path}: [deliverability] {key} must be {kind}, not {value!r}")
    return float(value)


def _bounded(path: Path, key: str, value: Any, bounds: tuple[float, float], why: str, *, whole: bool = False) -> Any:
    """`value`, checked to be a number within `bounds`; else a `ConfigurationError` with the bounds and why."""
    number = _number(path, key, value, whole=whole)
    low, high = bounds
    if not low <= number <= high:
        raise ConfigurationError(
            f"{path}: [deliverability] {key} must be between {low:g} and {high:g} ({why}), not {value!r}. "
            f"Fix: set {key} to a value in that range, or remove it for the default"
        )
    return int(number) if whole else number


def _warmup(path: Path, raw: Any) -> WarmupSettings:
    if not isinstance(raw, dict):
        raise ConfigurationError(
            f'{path}: [deliverability] warmup must be a table, like warmup = {{start = "2027-01-10"}}'
        )
    known = {"start", "first_day", "growth", "hours", "days"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigurationError(
            f"{path}: [deliverability] warmup has an unknown key '{unknown[0]}'. Known keys: {', '.join(sorted(known))}"
        )
    start = raw.get("start")
    if isinstance(start, str):
        try:
            start = date.fromisoformat(start)
        except ValueError:
            start = None
    if not isinstance(start, date):
        raise ConfigurationError(
            f'{path}: [deliverability] warmup.start must be the warm-up\'s first day, like "2027-01-10", '
            f"not {raw.get('start')!r}"
        )
    values: dict[str, Any] = {"start": start}
    if "first_day" in raw:
        values["first_day"] = _bounded(
            path, "warmup.first_day", raw["first_day"], FIRST_DAY_BOUNDS, "emails on the first day", whole=True
        )
    if "growth" in raw:
        values["growth"] = _bounded(path, "warmup.growth", raw["growth"], GROWTH_BOUNDS, "each day's factor")
    if "hours" in raw:
        values["hours"] = _bounded(
            path, "warmup.hours", raw["hours"], HOURS_BOUNDS, "hours a day's cap spreads over", whole=True
        )
    if "days" in raw:
        values["days"] = _bounded(path, "warmup.days", raw["days"], WARMUP_DAYS_BOUNDS, "how long it lasts", whole=True)
    return WarmupSettings(**values)


def load_deliverability_settings(path: Path, raw: Any) -> DeliverabilitySettings:
    """The `[deliverability]` table of `path` (see the module contract)."""
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: [deliverability] must be a table of keys")
    known = {"link_hosts", "window", "hard_bounce_percent", "complaint_percent", "provider_errors", "warmup"}
    values: dict[str, Any] = {}
    for key in raw:
        if key not in known:
            raise ConfigurationError(
                f"{path}: [deliverability] has an unknown key '{key}'. Known keys: {', '.join(sorted(known))}"
            )
    if "link_hosts" in raw:
        hosts = raw["link_hosts"]
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ConfigurationError(
                f'{path}: [deliverability] link_hosts must be a list of text, like ["instagram.com"]'
            )
        values["link_hosts"] = tuple(hosts)
    if "window" in raw:
        values["window"] = _bounded(
            path, "window", raw["window"], (MIN_WINDOW, MAX_WINDOW), "the emails the rates are taken over", whole=True
        )
    if "hard_bounce_percent" in raw:
        values["hard_bounce_percent"] = _bounded(
            path, "hard_bounce_percent", raw["hard_bounce_percent"], BOUNCE_BOUNDS, "Amazon SES pauses at 10 %"
        )
    if "complaint_percent" in raw:
        values["complaint_percent"] = _bounded(
            path, "complaint_percent", raw["complaint_percent"], COMPLAINT_BOUNDS, "Amazon SES pauses at 0.5 %"
        )
    window = values.get("window", DeliverabilitySettings.window)
    if "provider_errors" in raw:
        values["provider_errors"] = _bounded(
            path, "provider_errors", raw["provider_errors"], (1, window), "emails of the window", whole=True
        )
    if "warmup" in raw:
        values["warmup"] = _warmup(path, raw["warmup"])
    return DeliverabilitySettings(**values)
