"""The notebook API: `needlecast.reports.open(workspace_or_url)` and the same DataFrames the console shows.

    import needlecast.reports as nr
    clinic = nr.open("path/to/workspace")          # or a database URL: postgresql+psycopg://...
    clinic.compare(start="2026-11-01", end="2026-11-30")
    clinic.trends("concern"); clinic.cohorts("source"); clinic.revenue(); clinic.report("spring-guide").funnel

Contract: `open` takes a workspace folder (its settings give the clinic's time zone, the attribution rules
and the campaign files' names, kinds and articles) or a database URL (UTC, the default attribution, no
campaign files). Every method reads the store afresh and returns what the console and `needlecast report`
show, built by the same functions (`compare.load_comparison`, `cohorts.load_cohorts`,
`revenue.load_revenue`, `data.load_report`), so a figure in a notebook is the figure on the page. `events()`
returns the raw provider events with the address's keyed hash, never the address. Nothing is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from needlecast.config import AttributionSettings, Workspace, open_workspace
from needlecast.reports.cohorts import load_cohorts
from needlecast.reports.compare import Catalogue, Comparison, Filters, catalogue_of, load_comparison
from needlecast.reports.data import MIN_GROUP, Report, load_report
from needlecast.reports.revenue import Revenue, load_revenue
from needlecast.store.engine import open_store
from needlecast.store.helpers import utcnow
from needlecast.store.schema import events

EVENT_COLUMNS = ["delivery_id", "campaign_id", "step_id", "kind", "occurred_at", "email_hash", "detail"]


@dataclass
class Analysis:
    """One clinic's store, read for analysis (see the module contract)."""

    engine: Engine
    time_zone: str = "UTC"
    attribution: AttributionSettings = field(default_factory=AttributionSettings)
    workspace: Workspace | None = None
    min_group: int = MIN_GROUP

    def catalogue(self) -> Catalogue:
        """The campaign files' names, kinds, articles and lead sections (empty without a workspace)."""
        if self.workspace is None:
            return Catalogue()
        from needlecast.campaign.context import CampaignContext

        return catalogue_of(CampaignContext.load(self.workspace))

    def comparison(self, **filters: Any) -> Comparison:
        """Every table of the Reports page; `filters` are `compare.Filters`' fields (`start` and `end` as
        dates or ISO text, `kind`, `segment`, `concern`, `article`, `sort`, `descending`)."""
        for end in ("start", "end"):
            if isinstance(filters.get(end), str):
                filters[end] = date.fromisoformat(filters[end])
        return load_comparison(
            self.engine,
            self.catalogue(),
            Filters(**filters),
            time_zone=self.time_zone,
            attribution=self.attribution,
            min_group=self.min_group,
        )

    def compare(self, **filters: Any) -> pd.DataFrame:
        """Every campaign side by side, then the totals row (the Reports page's first table)."""
        data = self.comparison(**filters)
        return pd.concat([data.campaigns, data.totals], ignore_index=True)

    def trends(self, by: str = "concern", **filters: Any) -> pd.DataFrame:
        """Weekly delivered and open, click and booking rates per concern or per article."""
        data = self.comparison(**filters)
        return data.trend_concern if by == "concern" else data.trend_article

    def content(self, **filters: Any) -> pd.DataFrame:
        """Which content converts: bookings per 1,000 delivered per lead section and concern, with intervals."""
        return self.comparison(**filters).content

    def cohorts(self, by: str = "source", now: datetime | None = None) -> pd.DataFrame:
        """Leads by signup month and source (or concern), with the share who booked within 30, 60, 90 days."""
        return load_cohorts(
            self.engine,
            by,
            now=now or utcnow(),
            time_zone=self.time_zone,
            conversions=self.attribution.conversions,
            min_group=self.min_group,
        )

    def revenue_tables(self) -> Revenue:
        return load_revenue(self.engine, self.attribution, min_group=self.min_group)

    def revenue(self) -> pd.DataFrame:
        """Booking value per campaign, per email delivered and per person mailed, in each currency."""
        return self.revenue_tables().campaigns

    def attribution_models(self) -> pd.DataFrame:
        """Bookings by last click beside bookings by last delivered, per campaign and currency."""
        return self.revenue_tables().attribution

    def report(self, campaign: str | None = None) -> Report:
        """A campaign's send report (every campaign's without one): `.funnel`, `.totals`, `.timeline`, ..."""
        return load_report(
            self.engine, campaign, min_group=self.min_group, attribution=self.attribution, time_zone=self.time_zone
        )

    def funnel(self, campaign: str | None = None) -> pd.DataFrame:
        return self.report(campaign).funnel

    def events(self, campaign: str | None = None) -> pd.DataFrame:
        """The provider events as stored (times on the clinic's clock), with the address's hash only."""
        query = select(*(events.c[c] for c in EVENT_COLUMNS)).order_by(events.c.occurred_at, events.c.id)
        if campaign:
            query = query.where(events.c.campaign_id == campaign)
        with self.engine.connect() as conn:
            frame = pd.DataFrame(conn.execute(query).all(), columns=EVENT_COLUMNS)
        moments = pd.to_datetime(frame["occurred_at"], utc=True)
        return frame.assign(occurred_at=moments.dt.tz_convert(self.time_zone))

    def close(self) -> None:
        self.engine.dispose()


def open_analysis(workspace_or_url: str | os.PathLike[str] | Workspace, *, min_group: int = MIN_GROUP) -> Analysis:
    """An `Analysis` of a workspace (a folder, or a loaded `Workspace`) or of a database URL."""
    if isinstance(workspace_or_url, Workspace):
        workspace = workspace_or_url
    elif "://" in str(workspace_or_url):
        return Analysis(open_store(str(workspace_or_url), auto_create=False), min_group=min_group)
    else:
        workspace = open_workspace(Path(workspace_or_url))
    settings = workspace.settings
    return Analysis(
        open_store(workspace.database_url, auto_create=False),
        time_zone=settings.clinic.time_zone,
        attribution=settings.attribution,
        workspace=workspace,
        min_group=min_group,
    )
