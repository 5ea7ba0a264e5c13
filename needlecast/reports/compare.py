"""Every campaign side by side: the comparison, weekly trends, and which content converts.

Contract: `load_comparison(engine, catalogue, filters, ...)` counts every sent email with the same flags as a
campaign's report (the definitions of `metrics.METRICS`), by group and day of sending, in the database
(`groups.email_groups`), and returns a `Comparison`; `compare` gives the same tables from those groups or
from the emails one by one (`email_flags`, as `delivery_flags` and `add_conversions` set them):
- `campaigns`: one row per campaign with the funnel's counts and rates (`funnel`), sorted by `filters.sort`,
  and `totals`: the same over every campaign shown; `change`: the totals of the period against the period of
  the same length just before it (only when the filters name a period).
- `trend_concern`, `trend_article`: per week (Monday, on the clinic's clock, of the email's sending) and
  concern (the email's content variant) or article, delivered and the open, click and booking rates.
- `content`: per lead section (the section that opens the email: its article and title) and concern, the
  emails delivered, those credited with a booking, bookings per 1,000 delivered and its 95 % Wilson interval.
Filters: the period (days of sending, on the clinic's clock, both ends included), the campaign's kind, the
email's segment, concern and article. A group smaller than `min_group` shows counts without rates. Emails
are counted on the day and week they were sent; their events and bookings count with them, whenever they came.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import pandas as pd
from markupsafe import Markup
from sqlalchemy import Engine

from needlecast.config import AttributionSettings
from needlecast.errors import ContentError, InvalidRequest, NotFound
from needlecast.reports.charts_kept import kept_chart
from needlecast.reports.data import (
    MIN_GROUP,
    add_conversions,
    conversion_events,
    delivery_flags,
    funnel,
    ledger_and_events,
    wilson,
)
from needlecast.reports.groups import as_groups, email_groups
from needlecast.statistics.attribution import attribute

COMPARE_COLUMNS = [
    "campaign_id",
    "name",
    "kind",
    "sent",
    "delivered",
    "bounced",
    "opened",
    "opened_human",
    "clicked",
    "unsubscribed",
    "complained",
    "conversions",
    "delivery_rate",
    "bounce_rate",
    "opened_rate",
    "human_open_rate",
    "clicked_rate",
    "click_to_open_rate",
    "conversion_rate",
]
SORTABLE = COMPARE_COLUMNS
CHANGE_FIGURES = ["sent", "delivered", "opened_rate", "clicked_rate", "conversion_rate", "bookings_per_1000"]
TREND_COLUMNS = ["week", "delivered", "opened_rate", "clicked_rate", "conversion_rate"]
CONTENT_COLUMNS = [
    "article",
    "section",
    "concern",
    "delivered",
    "booked",
    "bookings_per_1000",
    "per_1000_lower",
    "per_1000_upper",
]


@dataclass(frozen=True)
class Catalogue:
    """What the campaign files say about the ledger's emails (`catalogue_of` builds it from a `CampaignContext`):
    campaign -> (name, kind); (campaign, step) -> article; (campaign, step, concern) -> (article, lead section)."""

    campaigns: dict[str, tuple[str, str]] = field(default_factory=dict)
    articles: dict[tuple[str, str], str] = field(default_factory=dict)
    leads: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Filters:
    start: date | None = None
    end: date | None = None  # included
    kind: str = ""
    segment: str = ""
    concern: str = ""
    article: str = ""
    sort: str = "sent"
    descending: bool = True

    def __post_init__(self) -> None:
        if self.sort not in SORTABLE:
            raise InvalidRequest(f"sort: '{self.sort}' is not a column; choose one of {', '.join(SORTABLE)}")
        if self.start and self.end and self.start > self.end:
            raise InvalidRequest(f"period: the start ({self.start}) is after the end ({self.end}); swap them")

    def previous(self) -> Filters | None:
        """The period of the same length just before this one (None without a bounded period)."""
        if not (self.start and self.end):
            return None
        days = (self.end - self.start).days + 1
        return replace(self, start=self.start - timedelta(days=days), end=self.start - timedelta(days=1))


@dataclass
class Comparison:
    campaigns: pd.DataFrame
    totals: pd.DataFrame
    change: pd.DataFrame
    trend_concern: pd.DataFrame
    trend_article: pd.DataFrame
    content: pd.DataFrame
    filters: Filters
    options: dict[str, list[str]]  # the values each filter can take (kinds, segments, concerns, articles)
    time_zone: str = "UTC"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "compare": pd.concat([self.campaigns, self.totals], ignore_index=True),
            "change": self.change,
            "trend_concern": self.trend_concern,
            "trend_article": self.trend_article,
            "content": self.content,
        }


def email_flags(engine: Engine, attribution: AttributionSettings | None = None) -> pd.DataFrame:
    """Every sent email with its flags and credited bookings, as a campaign's report counts them."""
    rules = attribution or AttributionSettings()
    ledger, stored = ledger_and_events(engine, None, None)
    settled = delivery_flags(ledger, stored)
    credited = attribute(settled, stored, conversion_events(engine, rules.conversions, None), rules.window_days)
    flags = add_conversions(settled, credited)
    return flags[flags["sent"]].reset_index(drop=True)


def annotate(flags: pd.DataFrame, catalogue: Catalogue, time_zone: str) -> pd.DataFrame:
    """`flags` (emails one by one, `email_flags`, or counted by group and day, `groups.email_groups`) with the
    campaign's name and kind, the step's article, the email's lead section, and the day and week (Monday)
    of its sending on the clinic's clock."""
    out = flags.copy()
    out["name"] = [catalogue.campaigns.get(c, (c, ""))[0] for c in out["campaign_id"]]
    out["kind"] = [catalogue.campaigns.get(c, ("", "unknown"))[1] for c in out["campaign_id"]]
    steps = list(zip(out["campaign_id"], out["step_id"], strict=True))
    out["article"] = [catalogue.articles.get(s, "unknown") for s in steps]
    leads = [catalogue.leads.get((c, s, v), ("", "")) for c, s, v in zip(*(out[k] for k in GROUP3), strict=True)]
    out["lead_article"] = [a for a, _ in leads]
    out["section"] = [t for _, t in leads]
    if "day" not in out:  # emails one by one; `groups.email_groups` counted them by their day already
        local = pd.to_datetime(out["sent_at"], utc=True).dt.tz_convert(time_zone).dt.tz_localize(None)
        out["day"] = local.dt.normalize()
    out["week"] = (out["day"] - pd.to_timedelta(out["day"].dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
    return out


GROUP3 = ("campaign_id", "step_id", "variant")


def chosen(emails: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The emails the filters keep."""
    keep = pd.Series(True, index=emails.index)
    if filters.start:
        keep &= emails["day"] >= pd.Timestamp(filters.start)
    if filters.end:
        keep &= emails["day"] <= pd.Timestamp(filters.end)
    for column, wanted in (
        ("kind", filters.kind),
        ("segment", filters.segment),
        ("variant", filters.concern),
        ("article", filters.article),
    ):
        if wanted:
            keep &= emails[column] == wanted
    return emails[keep]


def per_campaign(emails: pd.DataFrame, min_group: int) -> pd.DataFrame:
    """One row per campaign: name, kind, the funnel's counts and rates."""
    return funnel(emails, ["campaign_id", "name", "kind"], min_group=min_group).reindex(columns=COMPARE_COLUMNS)


TOTAL = "All campaigns"


def totals_row(emails: pd.DataFrame, min_group: int) -> pd.DataFrame:
    """The one row of the totals over `emails` (zero counts and no rates when there are none)."""
    if emails.empty:
        row: dict[str, Any] = {c: float("nan") if c.endswith("_rate") else 0 for c in COMPARE_COLUMNS}
        return pd.DataFrame([{**row, "campaign_id": TOTAL, "name": "", "kind": ""}], columns=COMPARE_COLUMNS)
    table = funnel(emails.assign(campaign_id=TOTAL, name="", kind=""), ["campaign_id", "name", "kind"], min_group)
    return table.reindex(columns=COMPARE_COLUMNS)


def bookings_per_1000(emails: pd.DataFrame) -> float:
    """Delivered emails credited with a booking per 1,000 delivered (`emails` as `groups.as_groups` gives)."""
    delivered = int(emails["delivered"].sum())
    return 1000 * int(emails["delivered_converted"].sum()) / delivered if delivered else float("nan")


def change_table(current: pd.DataFrame, previous: pd.DataFrame, min_group: int) -> pd.DataFrame:
    """One row: each headline figure in the period (`sent`), in the period before (`previous_sent`) and the
    change (`change_sent`; a rate's change is in percentage points, as a fraction: 0.02 is two points)."""
    now, before = totals_row(current, min_group).iloc[0], totals_row(previous, min_group).iloc[0]
    row: dict[str, float] = {}
    for figure in CHANGE_FIGURES:
        if figure == "bookings_per_1000":
            this, last = bookings_per_1000(current), bookings_per_1000(previous)
        else:
            this, last = float(now[figure]), float(before[figure])
        row |= {figure: this, f"previous_{figure}": last, f"change_{figure}": this - last}
    return pd.DataFrame([row])


def trend(emails: pd.DataFrame, by: str, min_group: int) -> pd.DataFrame:
    """Per week and `by` (variant -> concern, article): delivered and the open, click and booking rates."""
    if emails.empty:
        return pd.DataFrame(columns=["week", by, *TREND_COLUMNS[1:]])
    table = funnel(emails, ["week", by], min_group=min_group)
    name = "concern" if by == "variant" else by
    return table[["week", by, *TREND_COLUMNS[1:]]].rename(columns={by: name}).sort_values(["week", name])


def content_table(emails: pd.DataFrame) -> pd.DataFrame:
    """Bookings per 1,000 delivered per lead section and concern, with the 95 % Wilson interval (`wilson`)."""
    delivered = emails[(emails["delivered"] > 0) & (emails["section"] != "")]
    if delivered.empty:
        return pd.DataFrame(columns=CONTENT_COLUMNS)
    grouped = delivered.groupby(["lead_article", "section", "variant"], as_index=False).agg(
        delivered=("delivered", "sum"), booked=("delivered_converted", "sum")
    )
    rows = []
    for row in grouped.itertuples(index=False):
        rate, low, high = wilson(int(row.booked), int(row.delivered))
        rows.append(
            [
                row.lead_article,
                row.section,
                row.variant,
                row.delivered,
                int(row.booked),
                1000 * rate,
                1000 * low,
                1000 * high,
            ]
        )
    table = pd.DataFrame(rows, columns=CONTENT_COLUMNS)
    return table.sort_values(["bookings_per_1000", "delivered"], ascending=False).reset_index(drop=True)


def compare(emails: pd.DataFrame, filters: Filters, time_zone: str = "UTC", min_group: int = MIN_GROUP) -> Comparison:
    """The comparison of the annotated emails (`annotate`) the filters keep; see the module contract."""
    emails = as_groups(emails)
    kept = chosen(emails, filters)
    campaigns = per_campaign(kept, min_group).sort_values(
        [filters.sort, "campaign_id"], ascending=[not filters.descending, True], na_position="last"
    )
    earlier = filters.previous()
    change = (
        change_table(kept, chosen(emails, earlier), min_group)
        if earlier
        else pd.DataFrame(columns=["figure", "this_period", "previous_period", "change"])
    )
    options: dict[str, list[str]] = {
        "kind": sorted(set(emails["kind"])),
        "segment": sorted(set(emails["segment"])),
        "concern": sorted(set(emails["variant"])),
        "article": sorted(set(emails["article"])),
    }
    return Comparison(
        campaigns=campaigns.reset_index(drop=True),
        totals=totals_row(kept, min_group),
        change=change,
        trend_concern=trend(kept, "variant", min_group),
        trend_article=trend(kept, "article", min_group),
        content=content_table(kept),
        filters=filters,
        options=options,
        time_zone=time_zone,
    )


def load_comparison(
    engine: Engine,
    catalogue: Catalogue,
    filters: Filters,
    *,
    time_zone: str = "UTC",
    attribution: AttributionSettings | None = None,
    min_group: int = MIN_GROUP,
    emails: pd.DataFrame | None = None,
) -> Comparison:
    """The comparison (see the module contract), counted in the database (`groups.email_groups`); `emails`:
    those groups already counted (the web app keeps them), default: counted now."""
    emails = email_groups(engine, attribution, time_zone) if emails is None else emails
    return compare(annotate(emails, catalogue, time_zone), filters, time_zone, min_group)


def catalogue_of(ctx: Any) -> Catalogue:
    """The `Catalogue` of a `CampaignContext`: an article that does not parse leaves its emails' sections unknown."""
    from needlecast.content.model import GENERAL, lead_of

    campaigns, articles, leads = {}, {}, {}
    for campaign in ctx.campaigns.values():
        campaigns[campaign.id] = (campaign.name, campaign.kind)
        for step in campaign.steps:
            articles[(campaign.id, step.id)] = "all" if step.library else step.article or ctx.library.default_id
            try:
                pool = ctx.sections_for(step)
            except (ContentError, NotFound):  # a broken article: its emails' sections are unknown, the rest shown
                continue
            for concern in {*(s for section in pool for s in section.concerns), GENERAL, *step.variants}:
                covered = concern == GENERAL or any(s.is_for(concern) for s in pool)
                lead = lead_of(pool, concern if covered else GENERAL)
                if lead is not None:
                    leads[(campaign.id, step.id, concern)] = (
                        lead.article or articles[(campaign.id, step.id)],
                        lead.title,
                    )
    return Catalogue(campaigns, articles, leads)


TREND_CHARTS = [
    ("delivered", "Delivered"),
    ("opened_rate", "Open rate"),
    ("clicked_rate", "Click rate"),
    ("conversion_rate", "Conversion rate (bookings)"),
]


def trend_charts(table: pd.DataFrame, by: str) -> list[Markup]:
    """One small line chart per figure (delivered, open, click and conversion rates per week), a line per `by`;
    inline SVG without style attributes (`export.without_inline_styles`), each readable on a phone's width.
    Drawn once per table and `by` (`charts_kept`)."""
    return list(kept_chart("trend", table, (by,), lambda: tuple(_draw_trend_charts(table, by))))


def _draw_trend_charts(table: pd.DataFrame, by: str) -> list[Markup]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from needlecast.reports.export import _svg

    charts: list[Markup] = []
    for column, label in TREND_CHARTS if not table.empty else []:
        figure, axis = plt.subplots(figsize=(4.2, 2.8))
        scale = 1 if column == "delivered" else 100
        for group, part in table.groupby(by):
            axis.plot(part["week"], part[column] * scale, marker="o", label=str(group))
        axis.set_title(label + ("" if column == "delivered" else " (%)"), fontsize=10)
        axis.set_ylim(bottom=0)  # from nought: a small wobble must not look like a cliff
        axis.tick_params(axis="x", rotation=30, labelsize=8)
        axis.tick_params(axis="y", labelsize=8)
        axis.legend(fontsize=7, title=by, title_fontsize=7)
        figure.tight_layout()
        charts.append(_svg(figure, f"Line chart of the weekly {label.lower()} per {by} (see the table below)"))
    return charts
