"""The Reports section's Cohorts page: lead cohorts, revenue per campaign and the attribution models side by
side (`needlecast.readmodels.cohorts`), and their downloads. Server-rendered, no script."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from needlecast.errors import InvalidRequest, NotFound
from needlecast.readmodels.cohorts import (
    FILE_KINDS,
    CohortTables,
    cohort_by,
    cohort_tables,
    kept_cohort_tables,
    shown,
    write_file,
)
from needlecast.web.console.auth import Who, console_of, page

MEDIA = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
}


def _tables_of(request: Request) -> CohortTables:
    console = console_of(request)
    by = cohort_by(request.query_params.get("by"))
    return cohort_tables(console.engine, console.workspace, by, datetime.now(UTC))


def _check_the_grouping(request: Request, who: Who, problem: InvalidRequest) -> Response:
    return console_of(request).render(
        request, who, "message.html", status=400, title="Check the grouping", message=str(problem)
    )


@page("reports.view")
def cohorts_page(request: Request, who: Who) -> Response:
    """The cohort, revenue and attribution tables, grouped as `?by=` asks (source or concern), as the web app
    keeps them (`kept_cohort_tables`: a placeholder while the first are worked out, then the kept ones with
    when they were worked out)."""
    console = console_of(request)
    try:
        by = cohort_by(request.query_params.get("by"))
    except InvalidRequest as problem:
        return _check_the_grouping(request, who, problem)
    kept = kept_cohort_tables(console.engine, console.workspace, by)
    data = kept.figure
    return console.render(
        request,
        who,
        "cohorts.html",
        title="Cohorts and revenue",
        pending=data is None,
        tables={name: (heading, columns, rows) for name, heading, columns, rows in shown(data)} if data else {},
        by=by,
        time_zone=console.workspace.settings.clinic.time_zone,
        attribution=console.workspace.settings.attribution,
        counted_at=kept.computed_at,
        counts_updating=kept.updating,
    )


@page("reports.view")
def cohorts_download(request: Request, who: Who) -> Response:
    """The same tables as a CSV, XLSX, Parquet or JSON file."""
    kind = request.path_params["kind"]
    if kind not in FILE_KINDS:
        raise NotFound(f"no cohorts download '{kind}'", what="download", name=kind)
    try:
        data = _tables_of(request)
    except InvalidRequest as problem:
        return _check_the_grouping(request, who, problem)
    name = f"cohorts-by-{data.by}.{kind}"
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    if kind in ("csv", "json"):
        return Response(write_file(data, kind, None), media_type=MEDIA[kind], headers=headers)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / name
        write_file(data, kind, path)
        return Response(path.read_bytes(), media_type=MEDIA[kind], headers=headers)


# Ahead of `/reports/{campaign}` in the console's routes, which would take "cohorts" for a campaign.
ROUTES = [Route("/reports/cohorts", cohorts_page), Route("/reports/cohorts.{kind:str}", cohorts_download)]
