"""The send report and the comparison of campaigns, as the faces show and export them: built once.

Contract:
- `send_report(engine, workspace, ...)` is one campaign's report (or every campaign's) on the clinic's clock,
  with the A/B arms' subjects and the workspace's attribution rules; an unknown campaign is `NotFound` naming
  the campaigns there are (a campaign file, or emails in the ledger).
- `campaign_comparison(engine, workspace, filters, ...)` is every campaign side by side (`reports.compare`);
  `kept_comparison` the same from the figures the web app keeps (with when they were counted).
- `shown_tables(data, names)` is each table as a person reads it: (name, heading, column titles, rows of
  text), with the columns `reports.tables` defines (one definition for the terminal, the HTML report and the
  console), rates as percentages, times to the minute on the clinic's clock.
- `report_text(data, format)` and `write_report(data, format, path, title)` give a report in a machine's
  format (`FORMATS`): CSV and JSON as text, XLSX, HTML (a report only) and Parquet as a file;
  `report_file(data, format, title)` gives that file's bytes (a download).
- `campaign_report(engine, workspace, campaign)` is the report of a campaign the workspace defines (`NotFound`
  naming the campaign otherwise); a journey's or a sequence's report (this and `send_report` of one campaign)
  also has its funnel per node and its paths (`journey_funnel`, `journey_paths`: `journey_figures`), and
  `report_page(data)` is what its page shows: every table as text, the deliverability health per campaign,
  the funnel and timeline charts (inline SVG, None without data).
- `comparison_page(data)` is what the comparison's page shows: the columns (key and title, in order), each
  campaign's row and the totals as text, the change on the previous period, the weekly trends per concern
  and per article (charts and tables) and which content converts.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from markupsafe import Markup
from sqlalchemy import Engine

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import Campaign
from needlecast.config import Workspace
from needlecast.errors import InvalidRequest, NotFound
from needlecast.readmodels.elsewhere import Where, opened
from needlecast.readmodels.email_previews import sample_arm_subjects
from needlecast.readmodels.journey_figures import journey_tables
from needlecast.readmodels.kept import KEPT, Remote, Shown
from needlecast.reports.charts_kept import keep_chart
from needlecast.reports.compare import (
    CHANGE_FIGURES,
    COMPARE_COLUMNS,
    Comparison,
    Filters,
    catalogue_of,
    load_comparison,
    trend_charts,
)
from needlecast.reports.data import MIN_GROUP, Report, load_report, report_campaigns
from needlecast.reports.export import (
    Tables,
    cell_text,
    funnel_chart,
    html_tables,
    percent,
    timeline_chart,
    title,
    to_json,
    write_csv,
    write_html,
    write_parquet,
    write_xlsx,
)
from needlecast.reports.tables import TERMINAL_TABLES

__all__ = ["Comparison", "ComparisonPage", "Filters", "HealthRow", "Report", "ReportPage", "ShownTable", "Trend"]

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
    data = load_report(
        engine,
        campaign,
        datetime.combine(since, datetime.min.time(), UTC) if since else None,
        freq="h" if hourly else "D",
        min_group=min_group,
        include_recipients=include_recipients,
        unmasked=unmasked,
        subjects=sample_arm_subjects(ctx),  # as a sample recipient reads them
        attribution=workspace.settings.attribution,
        time_zone=workspace.settings.clinic.time_zone,
    )
    if campaign is not None and campaign in ctx.campaigns:
        with_journey_tables(engine, ctx.campaigns[campaign], data)
    return data


def with_journey_tables(engine: Engine, campaign: Campaign, data: Report) -> None:
    """A journey's or a sequence's report gains its funnel per node and its paths (`journey_figures`)."""
    if campaign.journey is not None:
        data.journey_funnel, data.journey_paths = journey_tables(engine, campaign, data.funnel)


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


def kept_comparison(engine: Engine, workspace: Workspace, filters: Filters) -> tuple[Comparison | None, Shown[Any]]:
    """`campaign_comparison` for the web app's Reports page, never waiting for the sent emails' figures: from
    the ones the web app keeps (`home.sent_emails_shown`: counted again off the request after a change,
    `updating` meanwhile; None while the first are counted, `ready` False) and the workspace's files as kept
    until one changes. The `Shown` says when the figures were counted."""
    from needlecast.readmodels.home import sent_emails_shown
    from needlecast.readmodels.plans import kept_context, workspace_marks

    shown = sent_emails_shown(engine, workspace)
    if shown.figure is None:
        return None, shown

    def compare_now() -> Comparison:
        return _compared(engine, workspace, filters, shown.figure, kept_context(workspace))[0]

    # Kept per filters while the figures it compares and the files are the same ones (pandas over the groups);
    # worked out in the kept figures' process where there is one (`compare_elsewhere`).
    name = ("comparison", str(workspace.root), str(engine.url), filters)
    where = Where.of(engine, workspace)
    remote = Remote(compare_elsewhere, (where, filters, shown.figure), _with_charts) if where is not None else None
    data = KEPT.ready(name, (shown.computed_at, workspace_marks(workspace)), compare_now, remote=remote)
    assert data.figure is not None
    return data.figure, shown


Charts = tuple[list[Markup], list[Markup]]


def _compared(
    engine: Engine, workspace: Workspace, filters: Filters, emails: pd.DataFrame, context: CampaignContext
) -> tuple[Comparison, Charts]:
    """The comparison of the kept `emails`, and its trend charts by concern and by article."""
    data = load_comparison(
        engine,
        catalogue_of(context),
        filters,
        time_zone=workspace.settings.clinic.time_zone,
        attribution=workspace.settings.attribution,
        emails=emails,
    )
    # Its trend charts drawn here too (off the request, when worked out again in the background), so that the
    # page finds them kept (`charts_kept`) instead of drawing eight charts while its reader waits.
    return data, (trend_charts(data.trend_concern, "concern"), trend_charts(data.trend_article, "article"))


def compare_elsewhere(where: Where, filters: Filters, emails: pd.DataFrame) -> tuple[Comparison, Charts]:
    """`kept_comparison`'s figure and charts, worked out in the kept figures' process (`kept.Remote`), with the
    workspace's files as that process keeps them (`plans.kept_context`)."""
    from needlecast.readmodels.plans import kept_context

    engine, workspace, _frames = opened(where)
    return _compared(engine, workspace, filters, emails, kept_context(workspace))


def _with_charts(found: tuple[Comparison, Charts]) -> Comparison:
    """In the web app's process: keep the charts drawn in the kept figures' process (`charts_kept`), so that
    the page finds them; the comparison is the figure."""
    data, (by_concern, by_article) = found
    keep_chart("trend", data.trend_concern, ("concern",), by_concern)
    keep_chart("trend", data.trend_article, ("article",), by_article)
    return data


def comparison_filters(
    start: date | None = None,
    end: date | None = None,
    *,
    kind: str = "",
    segment: str = "",
    concern: str = "",
    article: str = "",
    sort: str = "sent",
    descending: bool = True,
) -> Filters:
    """The comparison's filters, sorted by `sort` (largest first unless not `descending`); `InvalidRequest`
    naming a sort column there is not, or a period backwards."""
    return Filters(start, end, kind, segment, concern, article, sort, descending)


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


def report_file(data: Tables, format: str, title: str = "Send report") -> bytes:
    """The bytes of the file `write_report` writes (a download): CSV and JSON as UTF-8 text, XLSX, HTML and
    Parquet written in a scratch folder that is gone when this returns; `InvalidRequest` as `write_report`."""
    if format in ("json", "csv"):
        return report_text(data, format).encode("utf-8")
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / f"report.{format}"
        write_report(data, format, path, title)
        return path.read_bytes()


# The send report's page (the console's dashboard of one campaign).


@dataclass(frozen=True)
class HealthRow:
    """One campaign's deliverability: its flag ("ok" or what is wrong) and its rates as percentages."""

    flag: str
    complaints: str
    bounces: str


@dataclass(frozen=True)
class ReportPage:
    """One campaign's send report as its page shows it."""

    tables: list[ShownTable]  # every table of the report, in the report's order
    health: list[HealthRow]
    funnel_chart: Markup | None  # inline SVG without style attributes; None when nothing was sent
    timeline_chart: Markup | None


def campaign_report(engine: Engine, workspace: Workspace, campaign: str) -> Report:
    """The send report of `campaign`, which the workspace defines (`NotFound` naming it and the campaigns
    there are, or the campaign file that failed to load), with every email and event, by day, on the
    clinic's clock, with the A/B arms' subjects and the workspace's attribution rules."""
    ctx = CampaignContext.load(workspace)
    found = ctx.campaign(campaign)  # NotFound first: an id no campaign has is never sent to the database
    data = load_report(
        engine,
        found.id,
        subjects=sample_arm_subjects(ctx),  # as a sample recipient reads them
        attribution=workspace.settings.attribution,
        time_zone=workspace.settings.clinic.time_zone,
    )
    with_journey_tables(engine, found, data)
    return data


def health_rows(data: Report) -> list[HealthRow]:
    """The deliverability health of each campaign in the report, in the report's order."""
    return [
        HealthRow(row.flag, percent(row.complaint_rate), percent(row.bounce_rate))
        for row in data.health.itertuples(index=False)
    ]


def report_page(data: Report) -> ReportPage:
    """What a send report's page shows (`ReportPage`)."""
    return ReportPage(shown_tables(data), health_rows(data), funnel_chart(data), timeline_chart(data))


REPORT_MAX_AGE = 10.0  # seconds: a sending campaign's emails change state without a new ledger row


def kept_report_page(engine: Engine, workspace: Workspace, campaign: str) -> Shown[ReportPage]:
    """`report_page` of `campaign_report` as the console's page shows it, never waited for (`kept.Kept.look`):
    worked out in the kept figures' process where there is one (`report_elsewhere`), again off the request
    when a workspace file, the ledger (a new row, a campaign's state), an event, a booking or the clinic's day
    changes, or when it is `REPORT_MAX_AGE` old (emails going from queued to sent during a send), the kept
    page shown meanwhile (`updating`); none the first time (`ready` False: a placeholder). A campaign's report
    reads every email and event of the campaign (1.7 s of CPU at 200,000 emails while they were sent).
    `NotFound` for a campaign the workspace does not define, at once."""
    from needlecast.readmodels.home import clinic_today
    from needlecast.readmodels.plans import heard_marks, kept_context, ledger_marks, workspace_marks

    kept_context(workspace).campaign(campaign)  # NotFound names it and the campaigns there are
    with engine.connect() as conn:
        inputs = (workspace_marks(workspace), ledger_marks(conn), heard_marks(conn), clinic_today(workspace))
    where = Where.of(engine, workspace)
    remote = Remote(report_elsewhere, (where, campaign)) if where is not None else None
    name = ("report", str(workspace.root), str(engine.url), campaign)

    def report_now() -> ReportPage:
        return report_page(campaign_report(engine, workspace, campaign))

    return KEPT.look(name, inputs, report_now, max_age=REPORT_MAX_AGE, remote=remote)


def report_elsewhere(where: Where, campaign: str) -> ReportPage:
    """A campaign's report page, worked out in the kept figures' process (`kept.Remote`) from its own engine."""
    engine, workspace, _ = opened(where)
    return report_page(campaign_report(engine, workspace, campaign))


# The comparison's page (the console's Reports page).

RATE_WORDS = {"delivered": "Delivered", "sent": "Sent", "bookings_per_1000": "Bookings per 1,000 delivered"}


@dataclass(frozen=True)
class Trend:
    """A weekly trend: one line chart per figure (a line per concern or article) and its table as text."""

    charts: list[Markup]  # none when no email was sent
    columns: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class ComparisonPage:
    """The comparison as its page shows it: cells as text ("–" where there is no figure)."""

    columns: list[tuple[str, str]]  # (sort key, title) of each column of the campaigns' table, in order
    rows: list[tuple[str, list[str]]]  # (campaign id, its cells), in the filters' order
    totals: list[str]  # the totals row's cells
    change: list[list[str]]  # (figure, this period, previous period, change); empty without a bounded period
    trend_concern: Trend
    trend_article: Trend
    content_columns: list[str]
    content_rows: list[list[str]]


def _rows(table: pd.DataFrame, columns: list[str]) -> list[list[str]]:
    return [
        [cell_text(c, v) for c, v in zip(columns, row, strict=True)] for row in table[columns].itertuples(index=False)
    ]


def change_rows(change: pd.DataFrame) -> list[list[str]]:
    """The change on the previous period, a row per figure (`CHANGE_FIGURES`): its name, this period's value,
    the previous one's and the change (rates in percentage points, bookings per 1,000 to one decimal)."""
    if change.empty:
        return []
    row = change.iloc[0]
    shown = []
    for figure in CHANGE_FIGURES:
        name = RATE_WORDS.get(figure) or title(figure)
        cells = [row[figure], row[f"previous_{figure}"], row[f"change_{figure}"]]
        text = [cell_text(figure, v) for v in cells]
        if figure.endswith("_rate") and not pd.isna(cells[2]):
            text[2] = f"{float(cells[2]) * 100:+.1f} points"
        elif not pd.isna(cells[2]):
            text[2] = f"{float(cells[2]):+,.1f}" if figure == "bookings_per_1000" else f"{int(cells[2]):+,d}"
        if figure == "bookings_per_1000":
            text[:2] = ["–" if pd.isna(v) else f"{float(v):.1f}" for v in cells[:2]]
        shown.append([name, *text])
    return shown


def trend(table: pd.DataFrame, by: str) -> Trend:
    """A weekly trend table (per `by`: "concern" or "article") with its charts."""
    columns = list(table.columns)
    return Trend(trend_charts(table, by), [title(c) for c in columns], _rows(table, columns))


def _content_cell(column: str, value: Any) -> str:
    return cell_text(column, value) if "per_1000" not in column else f"{float(value):.1f}"


def comparison_page(data: Comparison) -> ComparisonPage:
    """What the comparison's page shows (`ComparisonPage`)."""
    content_columns = list(data.content.columns)
    return ComparisonPage(
        columns=[(column, title(column)) for column in COMPARE_COLUMNS],
        rows=list(zip(data.campaigns["campaign_id"], _rows(data.campaigns, COMPARE_COLUMNS), strict=True)),
        totals=_rows(data.totals, COMPARE_COLUMNS)[0],
        change=change_rows(data.change),
        trend_concern=trend(data.trend_concern, "concern"),
        trend_article=trend(data.trend_article, "article"),
        content_columns=[title(c) for c in content_columns],
        content_rows=[
            [_content_cell(c, v) for c, v in zip(content_columns, row, strict=True)]
            for row in data.content.itertuples(index=False)
        ],
    )
