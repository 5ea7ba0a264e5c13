"""The send report and the comparison of campaigns, as the faces show and export them: built once.

Contract:
- `send_report(engine, workspace, ...)` is one campaign's report (or every campaign's) on the clinic's clock,
  with the A/B arms' subjects and the workspace's attribution rules; an unknown campaign is `NotFound` naming
  the campaigns there are (a campaign file, or emails in the ledger).
- `campaign_comparison(engine, workspace, filters, ...)` is every campaign side by side (`reports.compare`).
- `shown_tables(data, names)` is each table as a person reads it: (name, heading, column titles, rows of
  text), with the columns `reports.tables` defines (one definition for the terminal, the HTML report and the
  console), rates as percentages, times to the minute on the clinic's clock.
- `report_text(data, format)` and `write_report(data, format, path, title)` give a report in a machine's
  format (`FORMATS`): CSV and JSON as text, XLSX, HTML (a report only) and Parquet as a file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine

from needlecast.campaign.context import CampaignContext
from needlecast.config import Workspace
from needlecast.errors import InvalidRequest, NotFound
from needlecast.reports.compare import Comparison, Filters, catalogue_of, load_comparison
from needlecast.reports.data import MIN_GROUP, Report, load_report, report_campaigns
from needlecast.reports.export import Tables, html_tables, to_json, write_csv, write_html, write_parquet, write_xlsx
from needlecast.reports.tables import TERMINAL_TABLES

__all__ = ["Comparison", "Filters", "Report", "ShownTable"]

FORMATS = ("csv", "json", "xlsx", "html", "parquet")
FILE_FORMATS = ("xlsx", "html", "parquet")  # these are files, never text on a terminal


@dataclass(frozen=True)
class ShownTable:
    """One table as a person reads it."""

    name: str  # the table's key (`Report.tables()`)
    heading: str
    columns: list[str]  # readable titles ("Open rate"; a time's names the clinic's zone)
    rows: list[list[str]]  # cell text: rates as "42.3 %", "–" where there is no figure


def send_report(
    engine: Engine,
    workspace: Workspace,
    campaign: str | None = None,
    since: date | None = None,
    *,
    hourly: bool = False,
    min_group: int = MIN_GROUP,
    include_recipients: bool = False,
    unmasked: bool = False,
) -> Report:
    """The send report of `campaign` (None: every campaign) for emails and events since the start of `since`
    (UTC), its timeline by day (or hour); groups smaller than `min_group` show counts without rates. Recipients
    (one row each, addresses masked unless `unmasked`) only with `include_recipients`."""
    ctx = CampaignContext.load(workspace)
    if campaign is not None:
        known = set(ctx.campaigns) | set(report_campaigns(engine))
        if campaign not in known:
            there = ", ".join(sorted(known)) or "none yet"
            raise NotFound(f"no campaign '{campaign}' to report on; the campaigns are: {there}")
    return load_report(
        engine,
        campaign,
        datetime.combine(since, datetime.min.time(), UTC) if since else None,
        freq="h" if hourly else "D",
        min_group=min_group,
        include_recipients=include_recipients,
        unmasked=unmasked,
        subjects=ctx.arm_subjects(),
        attribution=workspace.settings.attribution,
        time_zone=workspace.settings.clinic.time_zone,
    )


def campaign_comparison(
    engine: Engine, workspace: Workspace, filters: Filters, *, min_group: int = MIN_GROUP
) -> Comparison:
    """Every campaign side by side, with the change on the previous period, the weekly trends and which
    content converts, for the emails `filters` chooses, on the clinic's clock."""
    return load_comparison(
        engine,
        catalogue_of(CampaignContext.load(workspace)),
        filters,
        time_zone=workspace.settings.clinic.time_zone,
        attribution=workspace.settings.attribution,
        min_group=min_group,
    )


def comparison_filters(
    start: date | None = None,
    end: date | None = None,
    *,
    kind: str = "",
    segment: str = "",
    concern: str = "",
    article: str = "",
    sort: str = "sent",
) -> Filters:
    """The comparison's filters (`InvalidRequest` naming a sort column there is not, or a period backwards)."""
    return Filters(start, end, kind, segment, concern, article, sort)


def shown_tables(data: Tables, names: tuple[str, ...] | None = None) -> list[ShownTable]:
    """The tables of `data` named in `names` (default: every one), in `data`'s order, as a person reads them."""
    return [
        ShownTable(name, heading, columns, rows)
        for name, heading, columns, rows in html_tables(data)
        if names is None or name in names
    ]


def terminal_tables(data: Report) -> list[ShownTable]:
    """The tables a terminal prints of a send report (`reports.tables.TERMINAL_TABLES`), with a table that
    has no rows still shown (its heading says there is nothing yet)."""
    return shown_tables(data, TERMINAL_TABLES)


def report_text(data: Tables, format: str) -> str:
    """A report in a text format: `json` (every table, raw columns) or `csv` (the first table, readable
    titles); `InvalidRequest` for another format."""
    if format == "json":
        return to_json(data)
    if format == "csv":
        buffer = io.StringIO()
        write_csv(data, buffer)
        return buffer.getvalue()
    raise InvalidRequest(f"'{format}' is a file format, not text; use csv or json, or write it to a file")


def write_report(data: Tables, format: str, path: Path, title: str = "Send report") -> None:
    """Write a report to `path` in `format` (`FORMATS`); HTML only for a send report (`InvalidRequest` for the
    comparison, which the console's Reports page shows)."""
    if format in ("json", "csv"):
        path.write_text(report_text(data, format), encoding="utf-8")
    elif format == "xlsx":
        write_xlsx(data, path)
    elif format == "parquet":
        write_parquet(data, path)
    elif format == "html" and isinstance(data, Report):
        write_html(data, path, title)
    elif format == "html":
        raise InvalidRequest(
            "the comparison has no HTML file: the console's Reports page shows it; use xlsx, csv or parquet"
        )
    else:
        raise InvalidRequest(f"'{format}' is not a report format; use one of: {', '.join(FORMATS)}")
