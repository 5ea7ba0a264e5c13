"""The weekly digest: a one-page summary of the last seven days against the seven before, emailed to the team.

Contract: `weekly_digest(engine, workspace, now)` builds a `Digest` from the same definitions as every report
(`compare.compare` over the emails counted by `groups.email_groups`: the figures of `metrics.METRICS`). The week is
the seven days (on the clinic's clock) before the last digest day on or before `now` (`digest_day`: a run
that comes late sums up the week it was due for), compared with the seven days before it: the headline
figures with their change (`compare.change_table`); the bookings received (conversion events of
`[attribution] conversions` in the week, against the week before) with their value per currency, and those
credited to the week's emails (their `conversions`); the best and worst campaign of the week (by
conversion rate, then click rate, among those with at least `min_group` delivered); and every health flag
(`data.health`). It holds campaign names and counts only: never a contact's address, name or concern.

`send_weekly_digest(engine, workspace, now)` renders it (`templates/digest.html` and `.txt`, through the
clinic's email pipeline: the sandboxed environment, CSS inlined) and sends it through the configured
backend to `[reports] digest.recipients`, once per week: the week is claimed in the store's `meta` table
first (so two schedulers, or a job run twice, send it once), and released when the send fails, so a later
run tries again. It is no campaign: no ledger row, so no campaign's figures count it. Returns the count of
recipients per outcome ("sent", "failed"...), or "not configured" / "already sent". Logs hold counts only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine, delete

from needlecast.config import WEEKDAYS, Workspace
from needlecast.reports.compare import CHANGE_FIGURES, Filters, annotate, catalogue_of, compare
from needlecast.reports.data import MIN_GROUP, conversion_events, health
from needlecast.reports.groups import email_groups
from needlecast.store.helpers import insert_ignore
from needlecast.store.schema import meta

log = logging.getLogger("needlecast.reports.digest")
TEMPLATES = Path(__file__).parent / "templates"
FIGURE_NAMES = {
    "sent": "Emails sent",
    "delivered": "Delivered",
    "opened_rate": "Open rate",
    "clicked_rate": "Click rate",
    "conversion_rate": "Conversion rate (bookings)",
    "bookings_per_1000": "Bookings per 1,000 delivered",
}


@dataclass
class Digest:
    clinic: str
    start: date  # the week, both ends included, on the clinic's clock
    end: date
    figures: list[tuple[str, str, str, str]]  # figure, this week, the week before, change
    bookings: int = 0
    previous_bookings: int = 0
    credited: int = 0  # bookings credited to the week's emails (the funnel's `conversions`), whenever booked
    values: list[str] = field(default_factory=list)  # "GBP 720.00" per currency of the week's bookings
    best: str = ""  # "Spring skin guide: conversion rate 2.4 %, click rate 11.0 %"
    worst: str = ""
    flags: list[str] = field(default_factory=list)  # "Spring skin guide: bounces over 2 %"
    reports_url: str = ""

    @property
    def subject(self) -> str:
        return f"{self.clinic}: your week in email, {self.start.day} {self.start:%b} to {self.end.day} {self.end:%b %Y}"

    @property
    def period(self) -> str:
        """ "9 March to 15 March 2026" (day numbers without padding, on any platform's strftime)."""
        return f"{self.start.day} {self.start:%B} to {self.end.day} {self.end:%B %Y}"


def _text(figure: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if figure.endswith("_rate"):
        return f"{value * 100:.1f} %"
    return f"{value:,.1f}" if figure == "bookings_per_1000" else f"{int(value):,d}"


def _change(figure: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if figure.endswith("_rate"):
        return f"{value * 100:+.1f} points"
    return f"{value:+,.1f}" if figure == "bookings_per_1000" else f"{int(value):+,d}"


def _campaign_line(row: Any) -> str:
    return f"{row.name or row.campaign_id}: conversion rate {_text('conversion_rate', row.conversion_rate)}, " + (
        f"click rate {_text('clicked_rate', row.clicked_rate)}, {int(row.delivered):,d} delivered"
    )


def _best_and_worst(campaigns: pd.DataFrame) -> tuple[str, str]:
    ranked = campaigns.dropna(subset=["conversion_rate", "clicked_rate"])
    if ranked.empty:
        return "", ""
    ranked = ranked.sort_values(["conversion_rate", "clicked_rate", "campaign_id"], ascending=[False, False, True])
    best = _campaign_line(next(ranked.itertuples()))
    worst = _campaign_line(list(ranked.itertuples())[-1]) if len(ranked) > 1 else ""
    return best, worst


def _bookings(engine: Engine, workspace: Workspace, start: datetime, end: datetime) -> pd.DataFrame:
    found = conversion_events(engine, workspace.settings.attribution.conversions, start - timedelta(days=7))
    if found.empty:
        return found.assign(week="")
    moments = pd.to_datetime(found["occurred_at"], utc=True)
    week = pd.Series("", index=found.index).where(~((moments >= start) & (moments < end)), "this")
    week = week.where(~((moments >= start - timedelta(days=7)) & (moments < start)), "before")
    return found.assign(week=week)


def weekly_digest(engine: Engine, workspace: Workspace, now: datetime, *, min_group: int = MIN_GROUP) -> Digest:
    """See the module contract."""
    from needlecast.campaign.context import CampaignContext

    settings = workspace.settings
    zone = ZoneInfo(settings.clinic.time_zone)
    today = digest_day(workspace, now)
    start, end = today - timedelta(days=7), today - timedelta(days=1)
    emails = annotate(  # counted in the database by group and day (`groups.email_groups`)
        email_groups(engine, settings.attribution, str(zone)), catalogue_of(CampaignContext.load(workspace)), str(zone)
    )
    data = compare(emails, Filters(start=start, end=end), str(zone), min_group)
    row = data.change.iloc[0]
    figures = [
        (FIGURE_NAMES[f], _text(f, row[f]), _text(f, row[f"previous_{f}"]), _change(f, row[f"change_{f}"]))
        for f in CHANGE_FIGURES
    ]
    since = datetime.combine(start, datetime.min.time(), zone)
    booked = _bookings(engine, workspace, since, datetime.combine(today, datetime.min.time(), zone))
    this_week = booked[booked["week"] == "this"]
    week_emails = emails[(emails["day"] >= pd.Timestamp(start)) & (emails["day"] <= pd.Timestamp(end))]
    values = this_week.dropna(subset=["value"]).groupby("currency")["value"].sum() if not this_week.empty else {}
    best, worst = _best_and_worst(data.campaigns)
    names = dict(zip(data.campaigns["campaign_id"], data.campaigns["name"], strict=True))
    flagged = health(week_emails) if not week_emails.empty else pd.DataFrame(columns=["campaign_id", "flag"])
    return Digest(
        clinic=settings.clinic.name,
        start=start,
        end=end,
        figures=figures,
        bookings=len(this_week),
        previous_bookings=int((booked["week"] == "before").sum()),
        credited=int(week_emails["conversions"].sum()) if not week_emails.empty else 0,
        values=[f"{currency} {float(total):,.2f}" for currency, total in dict(values).items() if currency],
        best=best,
        worst=worst,
        flags=[
            f"{names.get(r.campaign_id) or r.campaign_id}: {r.flag}" for r in flagged.itertuples() if r.flag != "ok"
        ],
        reports_url=_reports_url(workspace, start, end),
    )


def digest_day(workspace: Workspace, now: datetime) -> date:
    """The last digest day (`[reports] digest.day`) on or before `now` on the clinic's clock: a run that comes
    late (a scheduler down on the day) still sums up the week it was due for, and sends it once."""
    today = now.astimezone(ZoneInfo(workspace.settings.clinic.time_zone)).date()
    wanted = WEEKDAYS.index(workspace.settings.reports.digest.day)
    return today - timedelta(days=(today.weekday() - wanted) % 7)


def digest_job_id(workspace: Workspace) -> str:
    """The scheduler's job id: it names the day, time and zone, so a changed setting makes a new job."""
    digest = workspace.settings.reports.digest
    return f"digest:{digest.day}:{digest.time}:{workspace.settings.clinic.time_zone}"


def digest_trigger(workspace: Workspace) -> Any:
    """The digest's APScheduler trigger: weekly, on `[reports] digest.day` at `digest.time`, clinic's clock."""
    from apscheduler.triggers.cron import CronTrigger

    digest = workspace.settings.reports.digest
    hour, minute = (int(part) for part in digest.time.split(":"))
    return CronTrigger(
        day_of_week=digest.day[:3], hour=hour, minute=minute, timezone=ZoneInfo(workspace.settings.clinic.time_zone)
    )


def _reports_url(workspace: Workspace, start: date, end: date) -> str:
    from needlecast.templating.recipient import link_base

    return f"{link_base(workspace.settings)}/console/reports?from={start.isoformat()}&to={end.isoformat()}"


def render_digest(digest: Digest, workspace: Workspace) -> Any:
    """The digest as a `RenderedEmail`, through the clinic's email pipeline (sandboxed, CSS inlined)."""
    from needlecast.templating.environment import build_environment
    from needlecast.templating.render import render_email

    context = {"digest": digest, "clinic": workspace.settings.clinic, "lang": workspace.settings.clinic.language}
    return render_email(build_environment(TEMPLATES), "digest", context)


def send_weekly_digest(engine: Engine, workspace: Workspace, now: datetime) -> dict[str, int] | str:
    """See the module contract."""
    from needlecast.delivery import get_backend
    from needlecast.delivery.base import Batch, Outcome, Recipient

    recipients = workspace.settings.reports.digest.recipients
    if not recipients:
        return "not configured"
    digest = weekly_digest(engine, workspace, now)
    key = f"digest:{digest.end.isoformat()}"
    with engine.begin() as conn:
        if not insert_ignore(conn, meta, [{"key": key, "value": now.isoformat()}], ("key",)):
            return "already sent"
    outcomes: dict[str, int] = {}
    try:
        backend = get_backend(workspace)
        backend.check()
        clinic = workspace.settings.clinic
        stop = f"mailto:{clinic.sender_email}?subject=Stop%20the%20weekly%20digest"
        batch = Batch(
            "reports",
            "digest",
            "general",
            render_digest(digest, workspace),
            clinic.sender_email,
            clinic.sender_name,
            tuple(Recipient("", address, {}, stop) for address in recipients),
            reply_to=clinic.reply_to,
        )

        def record(_batch: Batch, done: list[Outcome]) -> None:
            for outcome in done:
                outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1

        backend.send_all([batch], record)
    except Exception:
        with engine.begin() as conn:  # not sent: the next run may try again
            conn.execute(delete(meta).where(meta.c.key == key))
        raise
    if not outcomes.get("sent"):
        with engine.begin() as conn:
            conn.execute(delete(meta).where(meta.c.key == key))
    log.info("weekly digest for %s to %s: %s", digest.start, digest.end, outcomes)
    return outcomes
