"""`needlecast report`: the send report as tables, CSV, XLSX, HTML or JSON."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from needlecast.cli.common import app, console, current_store, current_workspace, setup_logging, table
from needlecast.errors import InvalidRequest

if TYPE_CHECKING:
    from needlecast.readmodels.reports import Filters, ShownTable


class ReportFormat(StrEnum):
    table = "table"
    csv = "csv"
    xlsx = "xlsx"
    html = "html"
    json = "json"
    parquet = "parquet"


FILE_FORMATS = (ReportFormat.xlsx, ReportFormat.html, ReportFormat.parquet)  # these need --out


class Frequency(StrEnum):
    day = "day"
    hour = "hour"


@app.command()
def report(
    campaign: Annotated[str | None, typer.Argument(help="Campaign id (default: every campaign).")] = None,
    since: Annotated[str | None, typer.Option(help="Only emails and events since this date (YYYY-MM-DD).")] = None,
    format: Annotated[ReportFormat, typer.Option("--format", help="table, csv, xlsx, html, json or parquet.")] = (
        ReportFormat.table
    ),
    out: Annotated[
        Path | None,
        typer.Option(help="Output file (required for xlsx, html and parquet; csv and json print without it)."),
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every campaign side by side, with trends and which content converts.")
    ] = False,
    until: Annotated[str | None, typer.Option(help="With --all: emails sent up to this day (YYYY-MM-DD).")] = None,
    kind: Annotated[str, typer.Option(help="With --all: broadcast or sequence.")] = "",
    segment: Annotated[str, typer.Option(help="With --all: only emails to this segment.")] = "",
    concern: Annotated[str, typer.Option(help="With --all: only this concern's emails.")] = "",
    article: Annotated[str, typer.Option(help="With --all: only emails drawing on this article.")] = "",
    sort: Annotated[str, typer.Option(help="With --all: the column to sort campaigns by (largest first).")] = "sent",
    freq: Annotated[Frequency, typer.Option(help="Time series by day or hour.")] = Frequency.day,
    min_group: Annotated[int, typer.Option(help="Groups smaller than this show counts without rates.")] = 10,
    include_recipients: Annotated[bool, typer.Option(help="Add one row per recipient (masked).")] = False,
    unmasked: Annotated[bool, typer.Option(help="With --include-recipients: show full addresses.")] = False,
) -> None:
    """Send report: funnel per campaign, step, segment, variant and arm; totals; health; A/B; conversions;
    time series; links. The tables and their columns are the HTML report's and the console's."""
    from needlecast.readmodels.reports import report_text, send_report, terminal_tables, write_report

    setup_logging()
    if format in FILE_FORMATS and out is None:
        raise InvalidRequest(f"--format {format.value} writes a file: add --out report.{format.value}")
    if all_:
        filters = _filters(campaign, since, until, kind, segment, concern, article, sort)
        return _report_all(filters, format, out, min_group)
    if unmasked and not include_recipients:
        raise InvalidRequest("--unmasked shows recipients' addresses: add --include-recipients")
    workspace = current_workspace()
    data = send_report(
        current_store(workspace),
        workspace,
        campaign,
        _day("--since", since),
        hourly=freq == Frequency.hour,
        min_group=min_group,
        include_recipients=include_recipients,
        unmasked=unmasked,
    )
    if format == ReportFormat.table:
        _print_tables(terminal_tables(data))
    elif out is None:
        sys.stdout.write(report_text(data, format.value) + ("\n" if format == ReportFormat.json else ""))
    else:
        write_report(data, format.value, out, f"Send report: {campaign or 'all campaigns'}")
        console.print(f"report written to {out}", highlight=False)


def _day(option: str, value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise InvalidRequest(f"{option} '{value}' is not a date; write it like 2026-11-01") from None


def _filters(
    campaign: str | None,
    since: str | None,
    until: str | None,
    kind: str,
    segment: str,
    concern: str,
    article: str,
    sort: str,
) -> Filters:
    from needlecast.readmodels.reports import comparison_filters

    if campaign is not None:
        raise InvalidRequest(f"--all compares every campaign: drop '{campaign}', or drop --all for its report")
    return comparison_filters(
        _day("--since", since),
        _day("--until", until),
        kind=kind,
        segment=segment,
        concern=concern,
        article=article,
        sort=sort,
    )


def _report_all(filters: Filters, format: ReportFormat, out: Path | None, min_group: int) -> None:
    """`report --all`: the comparison (`readmodels.reports.campaign_comparison`) in the chosen format."""
    from needlecast.readmodels.reports import campaign_comparison, report_text, write_report
    from needlecast.readmodels.reports import shown_tables as every_table

    if format == ReportFormat.html:
        raise InvalidRequest("--all has no HTML file: the console's Reports page shows it; use xlsx, csv or parquet")
    workspace = current_workspace()
    data = campaign_comparison(current_store(workspace), workspace, filters, min_group=min_group)
    if format == ReportFormat.table:
        _print_tables(every_table(data))
    elif out is None:
        sys.stdout.write(report_text(data, format.value) + ("\n" if format == ReportFormat.json else ""))
    else:
        write_report(data, format.value, out)
        console.print(f"report written to {out}", highlight=False)


@app.command("cohorts")
def cohorts_report(
    by: Annotated[str, typer.Option(help="Group the leads by source (of their first consent) or concern.")] = "source",
    format: Annotated[ReportFormat, typer.Option("--format", help="table, csv, xlsx, json or parquet.")] = (
        ReportFormat.table
    ),
    out: Annotated[Path | None, typer.Option(help="Output file (required for xlsx and parquet).")] = None,
) -> None:
    """Lead cohorts (by signup month and source or concern, booked within 30/60/90 days), revenue per
    campaign, and the attribution models side by side: the console's Cohorts and revenue page."""
    from needlecast.readmodels.cohorts import cohort_by, cohort_tables, shown, write_file

    setup_logging()
    if format == ReportFormat.html:
        raise InvalidRequest("cohorts have no HTML file: the console's Cohorts page shows them; use xlsx, csv or json")
    workspace = current_workspace()
    data = cohort_tables(current_store(workspace), workspace, cohort_by(by), datetime.now(UTC))
    if format != ReportFormat.table:
        text = write_file(data, format.value, out)
        if text is None:
            console.print(f"report written to {out}", highlight=False)
        else:
            sys.stdout.write(text)
        return
    for _name, heading, columns, rows in shown(data):
        printed = table(heading, columns)
        for row in rows:
            printed.add_row(*row)
        console.print(printed)


def _print_tables(tables: list[ShownTable]) -> None:
    for shown in tables:
        printed = table(shown.heading, shown.columns)
        for row in shown.rows:
            printed.add_row(*row)
        console.print(printed)
