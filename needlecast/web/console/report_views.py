"""Report pages: every campaign's send report as a dashboard, and its CSV, XLSX and HTML downloads.
Module-level views (`auth.page`)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from needlecast.campaign.context import CampaignContext
from needlecast.errors import InvalidRequest, NotFound
from needlecast.reports import load_report
from needlecast.reports.compare import Comparison, catalogue_of, load_comparison
from needlecast.reports.data import Report
from needlecast.reports.export import (
    funnel_chart,
    html_tables,
    percent,
    timeline_chart,
    write_csv,
    write_html,
    write_parquet,
    write_xlsx,
)
from needlecast.web.console.auth import Console, Who, console_of, page
from needlecast.web.console.compare_page import DOWNLOADS, compare_filters, compare_page

REPORT_DOWNLOADS = ("csv", "xlsx", "html")  # one campaign's report (the comparison's: compare_page.DOWNLOADS)
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


def report_of(console: Console, campaign_id: str) -> Report:
    """The campaign's report; `NotFound` for a campaign the workspace does not define."""
    workspace = console.workspace
    ctx = CampaignContext.load(workspace)
    ctx.campaign(campaign_id)
    return load_report(
        console.engine,
        campaign_id,
        subjects=ctx.arm_subjects(),
        attribution=workspace.settings.attribution,
        time_zone=workspace.settings.clinic.time_zone,
    )


def comparison_of(request: Request) -> Comparison:
    console = console_of(request)
    workspace = console.workspace
    ctx = CampaignContext.load(workspace)
    return load_comparison(
        console.engine,
        catalogue_of(ctx),
        compare_filters(dict(request.query_params)),
        time_zone=workspace.settings.clinic.time_zone,
        attribution=workspace.settings.attribution,
    )


@page("reports.view")
def report_list(request: Request, who: Who) -> Response:
    """Every campaign side by side (`needlecast.reports.compare`), filtered and sorted by the query."""
    try:
        data = comparison_of(request)
    except InvalidRequest as problem:
        return console_of(request).render(
            request, who, "message.html", status=400, title="Check the filters", message=str(problem)
        )
    return console_of(request).render(
        request, who, "reports.html", title="Send reports", **compare_page(data, request.query_params)
    )


@page("reports.view")
def compare_download(request: Request, who: Who) -> Response:
    """The comparison as CSV, XLSX or Parquet, with the page's filters."""
    kind = request.path_params["kind"]
    try:
        data = comparison_of(request)
    except InvalidRequest as problem:
        return console_of(request).render(
            request, who, "message.html", status=400, title="Check the filters", message=str(problem)
        )
    if kind not in DOWNLOADS:
        raise NotFound(f"no comparison download '{kind}'", what="download", name=kind)
    name = f"campaigns-compared.{kind}"
    disposition = {"content-disposition": f'attachment; filename="{name}"'}
    if kind == "csv":
        buffer = io.StringIO()
        write_csv(data, buffer)
        return Response(buffer.getvalue(), media_type=DOWNLOADS[kind], headers=disposition)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / name
        write_xlsx(data, path) if kind == "xlsx" else write_parquet(data, path)
        return Response(path.read_bytes(), media_type=DOWNLOADS[kind], headers=disposition)


@page("reports.view")
def dashboard(request: Request, who: Who) -> Response:
    campaign_id = request.path_params["campaign"]
    data = report_of(console_of(request), campaign_id)
    health = [
        {"flag": row.flag, "complaints": percent(row.complaint_rate), "bounces": percent(row.bounce_rate)}
        for row in data.health.itertuples(index=False)
    ]
    return console_of(request).render(
        request,
        who,
        "report.html",
        title=f"Send report: {campaign_id}",
        campaign_id=campaign_id,
        tables=html_tables(data),
        health=health,
        funnel_chart=funnel_chart(data),
        timeline_chart=timeline_chart(data),
    )


@page("reports.view")
def download(request: Request, who: Who) -> Response:
    campaign_id, kind = request.path_params["campaign"], request.path_params["kind"]
    if kind not in REPORT_DOWNLOADS:
        raise NotFound(f"no report download '{kind}'", what="download", name=kind)
    data = report_of(console_of(request), campaign_id)
    name = f"{campaign_id}-report.{kind}"
    disposition = {"content-disposition": f'attachment; filename="{name}"'}
    if kind == "csv":
        buffer = io.StringIO()
        write_csv(data, buffer)
        return Response(buffer.getvalue(), media_type="text/csv", headers=disposition)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / name
        if kind == "xlsx":
            write_xlsx(data, path)
            return Response(
                path.read_bytes(),
                headers=disposition,
                media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            )
        write_html(data, path, f"Send report: {campaign_id}")
        return HTMLResponse(path.read_text(encoding="utf-8"), headers={"content-security-policy": REPORT_CSP})


ROUTES = [
    Route("/reports", report_list),
    Route("/reports/all.{kind:str}", compare_download),
    Route("/reports/{campaign}", dashboard),
    Route("/reports/{campaign}/report.{kind:str}", download),
]
