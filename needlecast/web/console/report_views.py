"""Report pages: every campaign's send report as a dashboard, and its CSV, XLSX and HTML downloads.
Module-level views (`auth.page`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from needlecast.errors import InvalidRequest, NotFound
from needlecast.readmodels.reports import (
    Comparison,
    campaign_comparison,
    campaign_report,
    kept_comparison,
    kept_report_page,
    report_file,
)
from needlecast.web.console.auth import Who, console_of, page
from needlecast.web.console.compare_page import DOWNLOADS, compare_filters, compare_page

REPORT_DOWNLOADS = {  # one campaign's report (the comparison's: compare_page.DOWNLOADS)
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "html": "text/html",
}
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


def comparison_of(request: Request) -> Comparison:
    """The comparison the page's query asks for (`InvalidRequest` naming a filter that is wrong)."""
    console = console_of(request)
    return campaign_comparison(console.engine, console.workspace, compare_filters(request.query_params))


@page("reports.view")
def report_list(request: Request, who: Who) -> Response:
    """Every campaign side by side (`readmodels.reports.kept_comparison`: the figures the web app keeps, with
    when they were counted), filtered and sorted by the query."""
    console = console_of(request)
    try:
        filters = compare_filters(request.query_params)
        data, shown = kept_comparison(console.engine, console.workspace, filters)
    except InvalidRequest as problem:
        return console.render(request, who, "message.html", status=400, title="Check the filters", message=str(problem))
    page = compare_page(data, request.query_params) if data is not None else {}  # none yet: a placeholder
    return console.render(
        request,
        who,
        "reports.html",
        title="Send reports",
        pending=data is None,
        counted_at=shown.computed_at,
        counts_updating=shown.updating,
        **page,
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
    return Response(report_file(data, kind), media_type=DOWNLOADS[kind], headers=disposition)


@page("reports.view")
def dashboard(request: Request, who: Who) -> Response:
    """One campaign's send report (`readmodels.reports.report_page`): health, charts and every table."""
    console = console_of(request)
    campaign_id = request.path_params["campaign"]
    kept = kept_report_page(console.engine, console.workspace, campaign_id)
    shown = kept.figure
    return console.render(
        request,
        who,
        "report.html",
        title=f"Send report: {campaign_id}",
        campaign_id=campaign_id,
        pending=shown is None,
        tables=shown.tables if shown else [],
        health=shown.health if shown else [],
        funnel_chart=shown.funnel_chart if shown else None,
        timeline_chart=shown.timeline_chart if shown else None,
        counted_at=kept.computed_at,
        counts_updating=kept.updating,
    )


@page("reports.view")
def download(request: Request, who: Who) -> Response:
    """One campaign's report as CSV, XLSX or a standalone HTML report (served under its own strict CSP)."""
    campaign_id, kind = request.path_params["campaign"], request.path_params["kind"]
    if kind not in REPORT_DOWNLOADS:
        raise NotFound(f"no report download '{kind}'", what="download", name=kind)
    console = console_of(request)
    data = campaign_report(console.engine, console.workspace, campaign_id)
    body = report_file(data, kind, f"Send report: {campaign_id}")
    if kind == "html":
        return HTMLResponse(body.decode("utf-8"), headers={"content-security-policy": REPORT_CSP})
    disposition = {"content-disposition": f'attachment; filename="{campaign_id}-report.{kind}"'}
    return Response(body, media_type=REPORT_DOWNLOADS[kind], headers=disposition)


ROUTES = [
    Route("/reports", report_list),
    Route("/reports/all.{kind:str}", compare_download),
    Route("/reports/{campaign}", dashboard),
    Route("/reports/{campaign}/report.{kind:str}", download),
]
