"""Audience pages: the segments with their sizes (`readmodels.segments`, the same summary as the API and the
command line), uploads imported in the background (with progress and the rejects file) through
`actions.audience`. Module-level views (`auth.page`); the running imports are `request.app.state.jobs`."""

from __future__ import annotations

import shutil
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import audience as audience_actions
from needlecast.errors import NotFound
from needlecast.readmodels.contact_pages import recent_imports
from needlecast.readmodels.segments import segment_summaries_shown
from needlecast.web.console.auth import Who, console_of, page
from needlecast.web.console.jobs import ImportJob, ImportJobs, upload_path

MAX_UPLOAD_BYTES = 512 * 1024 * 1024


def jobs_of(request: Request) -> ImportJobs:
    jobs: ImportJobs = request.app.state.jobs
    return jobs


@page("audiences.view")
def audiences(request: Request, who: Who) -> Response:
    console = console_of(request)
    summary = segment_summaries_shown(console.engine, console.workspace, console.frames)  # never waited for
    return console.render(
        request,
        who,
        "audiences.html",
        title="Audiences",
        summary=summary,
        segments=summary.figure.segments if summary.figure is not None else None,
        contacts=summary.figure.contacts if summary.figure is not None else 0,
        imports=recent_imports(console.engine),
        jobs=jobs_of(request).recent(),
        flash=request.query_params.get("flash", "")[:300],
        flash_kind="bad",
    )


async def upload(request: Request) -> Response:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        prefix = console_of(request).prefix(request)
        return RedirectResponse(f"{prefix}/audiences?flash=The+file+is+larger+than+512+MB", status_code=303)
    return await _upload(request)


@page("audiences.import", upload=True)
def _upload(request: Request, who: Who) -> Response:
    console = console_of(request)
    assert who.form is not None
    file = who.form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        return RedirectResponse(f"{console.prefix(request)}/audiences?flash=Choose+a+CSV+or+XLSX+file", status_code=303)
    target = upload_path(console.workspace.state_dir, file.filename)
    with target.open("wb") as out:
        shutil.copyfileobj(file.file, out)
    list_name = str(who.form.get("list") or "").strip()[:100]
    actor, engine, workspace, source_name = who.actor, console.engine, console.workspace, file.filename

    def run(progress: Any) -> Any:  # the job's work, in its own thread
        return audience_actions.import_audience(
            engine, workspace, actor, target, list_name=list_name, progress=progress, source_name=source_name
        )

    job = jobs_of(request).start(str(file.filename), run, target)
    return RedirectResponse(f"{console.prefix(request)}/imports/{job.id}", status_code=303)


def job_of(request: Request) -> ImportJob:
    job = jobs_of(request).get(request.path_params["job"])
    if job is None:
        raise NotFound(
            "no such import in this console (imports are listed on the Audiences page)",
            what="import",
            name=request.path_params["job"],
        )
    return job


@page("audiences.view")
def import_page(request: Request, who: Who) -> Response:
    job = job_of(request)
    # No refresh: while it runs, static/import-progress.js polls `import_status` and, at the end, puts
    # this page's result in place.
    return console_of(request).render(request, who, "import.html", title=f"Import of {job.file_name}", job=job)


@page("audiences.view")
def import_status(request: Request, who: Who) -> Response:
    return JSONResponse(job_of(request).status(), headers={"cache-control": "no-store"})


@page("contacts.view_unmasked")
def rejects(request: Request, who: Who) -> Response:
    job = job_of(request)
    if job.summary is None or job.summary.rejects_path is None:
        raise NotFound("this import rejected no row", what="rejected rows", name=job.id)
    return FileResponse(job.summary.rejects_path, media_type="text/csv", filename=f"{job.summary.rejects_path.name}")


ROUTES = [
    Route("/audiences", audiences),
    Route("/audiences/import", upload, methods=["POST"]),
    Route("/imports/{job}", import_page),
    Route("/imports/{job}/status", import_status),
    Route("/imports/{job}/rejects.csv", rejects),
]
