"""`needlecast report`: the send report as tables, CSV, XLSX, HTML or JSON."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from needlecast.cli.common import app, console, current_store, current_workspace, setup_logging, table
from needlecast.errors import InvalidRequest, NotFound
from needlecast.reports.data import Report


class ReportFormat(StrEnum):
    table = "table"
    csv = "csv"
    xlsx = "xlsx"
    html = "html"
    json = "json"


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
    format: Annotated[ReportFormat, typer.Option("--format", help="table, csv, xlsx, html or json.")] = (
        ReportFormat.table
    ),
    out: Annotated[
        Path | None, typer.Option(help="Output file (required for xlsx and html; csv and json print without it).")
    ] = None,
    freq: Annotated[Frequency, typer.Option(help="Time series by day or hour.")] = Frequency.day,
    min_group: Annotated[int, typer.Option(help="Groups smaller than this show counts without rates.")] = 10,
    include_recipients: Annotated[bool, typer.Option(help="Add one row per recipient (masked).")] = False,
    unmasked: Annotated[bool, typer.Option(help="With --include-recipients: show full addresses.")] = False,
) -> None:
    """Send report: funnel per campaign, step, segment, variant and arm; totals; health; A/B; time series; links."""
    from needlecast.campaign.context import CampaignContext
    from needlecast.reports import load_report
    from needlecast.reports.data import report_campaigns
    from needlecast.reports.export import to_json, write_csv, write_html, write_xlsx

    setup_logging()
    if format in (ReportFormat.xlsx, ReportFormat.html) and out is None:
        raise InvalidRequest(f"--format {format.value} writes a file: add --out report.{format.value}")
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
        write_xlsx(data, out) if format == ReportFormat.xlsx else write_html(data, out, report_title)
        console.print(f"report written to {out}", highlight=False)


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
