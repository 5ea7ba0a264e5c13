"""Report pages: every campaign's send report as a dashboard, and its CSV, XLSX and HTML downloads."""

from __future__ import annotations

import io
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.overview import campaign_overviews
from needlecast.errors import NotFound
from needlecast.reports import load_report
from needlecast.reports.data import Report
from needlecast.reports.export import (
    funnel_chart,
    html_tables,
    percent,
    timeline_chart,
    write_csv,
    write_html,
    write_xlsx,
)
from needlecast.web.console.auth import Console, Who

DOWNLOADS = ("csv", "xlsx", "html")
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


def routes(console: Console) -> list[Route]:
    workspace = console.workspace

    def report_of(campaign_id: str) -> Report:
        """The campaign's report; `NotFound` for a campaign the workspace does not define."""
        ctx = CampaignContext.load(workspace)
        ctx.campaign(campaign_id)
        return load_report(
            console.engine,
            campaign_id,
            subjects=ctx.arm_subjects(),
            attribution=workspace.settings.attribution,
            time_zone=workspace.settings.clinic.time_zone,
        )

    @console.page("reports.view")
    def report_list(request: Request, who: Who) -> Response:
        ctx = CampaignContext.load(workspace)
        with console.engine.connect() as conn:
            items = [i for i in campaign_overviews(ctx, conn, datetime.now(UTC)) if i.id != "?"]
        return console.render(request, who, "reports.html", title="Send reports", items=items)

    @console.page("reports.view")
    def dashboard(request: Request, who: Who) -> Response:
        campaign_id = request.path_params["campaign"]
        data = report_of(campaign_id)
        health = [
            {"flag": row.flag, "complaints": percent(row.complaint_rate), "bounces": percent(row.bounce_rate)}
            for row in data.health.itertuples(index=False)
        ]
        return console.render(
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

    @console.page("reports.view")
    def download(request: Request, who: Who) -> Response:
        campaign_id, kind = request.path_params["campaign"], request.path_params["kind"]
        if kind not in DOWNLOADS:
            raise NotFound(f"no report download '{kind}'", what="download", name=kind)
        data = report_of(campaign_id)
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

    return [
        Route("/reports", report_list),
        Route("/reports/{campaign}", dashboard),
        Route("/reports/{campaign}/report.{kind:str}", download),
    ]
