"""`needlecast report`: the send report as tables, CSV, XLSX, HTML or JSON."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from needlecast.cli.common import app, console, current_store, current_workspace, setup_logging, table
from needlecast.errors import InvalidRequest, NotFound
from needlecast.reports.data import Report

if TYPE_CHECKING:
    from needlecast.reports.compare import Comparison, Filters


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


TERMINAL_VIEWS = {
    "funnel": (
        "funnel per campaign, step, segment, variant and arm",
        [
            "campaign_id",
            "step_id",
            "segment",
            "variant",
            "arm",
            "recipients",
            "sent",
            "delivered",
            "opened",
            "opens",
            "clicked",
            "clicks",
            "opened_rate",
            "clicked_rate",
            "click_to_open_rate",
            "bounce_rate",
            "unsubscribed",
            "complained",
        ],
    ),
    "totals": (
        "totals per campaign",
        [
            "campaign_id",
            "sent",
            "delivered",
            "opened",
            "opens",
            "clicked",
            "clicks",
            "opened_rate",
            "clicked_rate",
            "click_to_open_rate",
            "bounce_rate",
            "unsubscribed",
            "complained",
        ],
    ),
    "health": ("deliverability health", ["campaign_id", "sent", "complaint_rate", "bounce_rate", "flag"]),
    "ab": (
        "A/B test (each arm against arm A)",
        [
            "campaign_id",
            "step_id",
            "arm",
            "subject",
            "delivered",
            "open_rate",
            "open_diff",
            "open_p_value",
            "click_rate",
            "click_p_value",
            "open_winner",
            "click_winner",
        ],
    ),
}


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
    """Send report: funnel per campaign, step, segment, variant and arm; totals; health; A/B; time series; links."""
    from needlecast.campaign.context import CampaignContext
    from needlecast.reports import load_report
    from needlecast.reports.data import report_campaigns
    from needlecast.reports.export import to_json, write_csv, write_html, write_parquet, write_xlsx

    setup_logging()
    if format in FILE_FORMATS and out is None:
        raise InvalidRequest(f"--format {format.value} writes a file: add --out report.{format.value}")
    if all_:
        filters = _filters(campaign, since, until, kind, segment, concern, article, sort)
        return _report_all(filters, format, out, min_group)
    if unmasked and not include_recipients:
        raise InvalidRequest("--unmasked shows recipients' addresses: add --include-recipients")
    try:
        start = datetime.combine(date.fromisoformat(since), datetime.min.time(), UTC) if since else None
    except ValueError:
        raise InvalidRequest(f"--since '{since}' is not a date; write it like 2026-11-01") from None
    workspace = current_workspace()
    ctx = CampaignContext.load(workspace)
    engine = current_store(workspace)
    if campaign is not None:
        _known(campaign, set(ctx.campaigns) | set(report_campaigns(engine)))
    data = load_report(
        engine,
        campaign,
        start,
        freq="h" if freq == Frequency.hour else "D",
        min_group=min_group,
        include_recipients=include_recipients,
        unmasked=unmasked,
        subjects=ctx.arm_subjects(),
        attribution=workspace.settings.attribution,
        time_zone=workspace.settings.clinic.time_zone,
    )
    report_title = f"Send report: {campaign or 'all campaigns'}"
    if format == ReportFormat.table:
        _print_tables(data)
    elif format == ReportFormat.json:
        text = to_json(data)
        if out:
            out.write_text(text, encoding="utf-8")
            console.print(f"report written to {out}", highlight=False)
        else:
            sys.stdout.write(text + "\n")
    elif format == ReportFormat.csv:
        write_csv(data, out)
        if out:
            console.print(f"report written to {out}", highlight=False)
    else:
        assert out is not None
        if format == ReportFormat.parquet:
            write_parquet(data, out)
        else:
            write_xlsx(data, out) if format == ReportFormat.xlsx else write_html(data, out, report_title)
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
    from needlecast.reports.compare import Filters

    if campaign is not None:
        raise InvalidRequest(f"--all compares every campaign: drop '{campaign}', or drop --all for its report")
    return Filters(_day("--since", since), _day("--until", until), kind, segment, concern, article, sort)


def _report_all(filters: Filters, format: ReportFormat, out: Path | None, min_group: int) -> None:
    """`report --all`: the comparison (`needlecast.reports.compare`) in the chosen format."""
    from needlecast.campaign.context import CampaignContext
    from needlecast.reports.compare import catalogue_of, load_comparison
    from needlecast.reports.export import to_json, write_csv, write_parquet, write_xlsx

    if format == ReportFormat.html:
        raise InvalidRequest("--all has no HTML file: the console's Reports page shows it; use xlsx, csv or parquet")
    workspace = current_workspace()
    data = load_comparison(
        current_store(workspace),
        catalogue_of(CampaignContext.load(workspace)),
        filters,
        time_zone=workspace.settings.clinic.time_zone,
        attribution=workspace.settings.attribution,
        min_group=min_group,
    )
    if format == ReportFormat.table:
        _print_comparison(data)
        return
    if format == ReportFormat.json and out is None:
        sys.stdout.write(to_json(data) + "\n")
        return
    if format == ReportFormat.csv:
        write_csv(data, out)
    elif format == ReportFormat.json:
        assert out is not None
        out.write_text(to_json(data), encoding="utf-8")
    else:
        assert out is not None
        write_xlsx(data, out) if format == ReportFormat.xlsx else write_parquet(data, out)
    if out:
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


def _print_comparison(data: Comparison) -> None:
    from needlecast.reports.export import html_tables

    for _name, heading, columns, rows in html_tables(data):
        shown = table(heading, columns)
        for row in rows:
            shown.add_row(*row)
        console.print(shown)


def _known(campaign: str, campaigns: set[str]) -> None:
    """`NotFound` naming `campaign` and the campaigns there are (a campaign file, or emails in the ledger)."""
    if campaign not in campaigns:
        there = ", ".join(sorted(campaigns)) or "none yet"
        raise NotFound(f"no campaign '{campaign}' to report on; the campaigns are: {there}")


def _print_tables(data: Report) -> None:
    from needlecast.reports.export import cell_text, title

    frames = {"funnel": data.funnel, "totals": data.totals, "health": data.health, "ab": data.ab}
    for key, (heading, columns) in TERMINAL_VIEWS.items():
        frame = frames[key]
        present = [c for c in columns if c in frame.columns]
        shown = table(heading, [title(c) for c in present])
        for row in frame[present].itertuples(index=False) if not frame.empty else []:
            shown.add_row(*(cell_text(c, v) for c, v in zip(present, row, strict=True)))
        console.print(shown)
