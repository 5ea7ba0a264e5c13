"""Audience pages: uploads (imported in the background, with progress and the rejects file), segments,
the contact search and profile (masked unless the role may see addresses), suppression and erasure."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import audience as audience_actions
from needlecast.actions import contacts as contacts_actions
from needlecast.audience.contacts import find_contact
from needlecast.audience.profile import contact_profile_by_id
from needlecast.audience.segments import load_segments
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import NeedlecastError, NotFound
from needlecast.store.schema import imports
from needlecast.web.console.auth import Console, Who
from needlecast.web.console.jobs import ImportJobs, upload_path

MAX_UPLOAD_BYTES = 512 * 1024 * 1024


def routes(console: Console, jobs: ImportJobs) -> list[Route]:
    workspace = console.workspace

    @console.page("audiences.view")
    def audiences(request: Request, who: Who) -> Response:
        segments = load_segments(workspace.audiences_dir / "segments.yaml", load_vocabulary_for(workspace).names)
        now = datetime.now(UTC)
        rows = []
        with console.engine.connect() as conn:
            frame = console.frames.frame(conn)
            recent = [dict(r) for r in conn.execute(select(imports).order_by(imports.c.id.desc()).limit(10)).mappings()]
            results = [console.frames.segment(conn, segment, now) for segment in segments.values()]
        for segment, result in zip(segments.values(), results, strict=True):
            variants = result.members["variant"].value_counts().sort_index()
            rows.append(
                {
                    "segment": segment.name,
                    "members": result.size,
                    "variants": {str(k): int(v) for k, v in variants.items()},
                    "excluded": dict(sorted(result.excluded.items())),
                }
            )
        return console.render(
            request,
            who,
            "audiences.html",
            title="Audiences",
            segments=rows,
            contacts=len(frame),
            imports=recent,
            jobs=jobs.recent(),
            flash=request.query_params.get("flash", "")[:300],
            flash_kind="bad",
        )

    async def upload(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            return RedirectResponse(
                f"{console.prefix(request)}/audiences?flash=The+file+is+larger+than+512+MB", status_code=303
            )
        return await _upload(request)

    @console.page("audiences.import", upload=True)
    def _upload(request: Request, who: Who) -> Response:
        assert who.form is not None
        file = who.form.get("file")
        if not isinstance(file, UploadFile) or not file.filename:
            return RedirectResponse(
                f"{console.prefix(request)}/audiences?flash=Choose+a+CSV+or+XLSX+file", status_code=303
            )
        target = upload_path(workspace.state_dir, file.filename)
        with target.open("wb") as out:
            shutil.copyfileobj(file.file, out)
        list_name = str(who.form.get("list") or "").strip()[:100]
        actor = who.actor

        def run(progress: Any) -> Any:
            return audience_actions.import_audience(
                console.engine,
                workspace,
                actor,
                target,
                list_name=list_name,
                progress=progress,
                source_name=file.filename,
            )

        job = jobs.start(str(file.filename), run, target)
        return RedirectResponse(f"{console.prefix(request)}/imports/{job.id}", status_code=303)

    def job_of(request: Request) -> Any:
        job = jobs.get(request.path_params["job"])
        if job is None:
            raise NotFound(
                "no such import in this console (imports are listed on the Audiences page)",
                what="import",
                name=request.path_params["job"],
            )
        return job

    @console.page("audiences.view")
    def import_page(request: Request, who: Who) -> Response:
        job = job_of(request)
        # No refresh: while it runs, static/import-progress.js polls `import_status` and, at the end, puts
        # this page's result in place.
        return console.render(request, who, "import.html", title=f"Import of {job.file_name}", job=job)

    @console.page("audiences.view")
    def import_status(request: Request, who: Who) -> Response:
        return JSONResponse(job_of(request).status(), headers={"cache-control": "no-store"})

    @console.page("contacts.view_unmasked")
    def rejects(request: Request, who: Who) -> Response:
        job = job_of(request)
        if job.summary is None or job.summary.rejects_path is None:
            raise NotFound("this import rejected no row", what="rejected rows", name=job.id)
        return FileResponse(
            job.summary.rejects_path, media_type="text/csv", filename=f"{job.summary.rejects_path.name}"
        )

    @console.page("contacts.view")
    def contacts(request: Request, who: Who) -> Response:
        # The address is posted, never put in a URL (URLs end up in proxies' and browsers' logs).
        email = str(who.form.get("email") or "").strip() if who.form is not None else ""
        if email:
            with console.engine.connect() as conn:
                try:
                    found = find_contact(conn, email)
                except NeedlecastError:
                    found = None
            if found is not None:
                return RedirectResponse(f"{console.prefix(request)}/contacts/{found['id']}", status_code=303)
        return console.render(request, who, "contacts.html", title="Contacts", email=email, missing=bool(email))

    def contact_id_of(request: Request) -> int:
        """The path's contact number: digits only (`int` would also take "1_0", " 7" or other scripts' digits),
        else `NotFound`; the profile lookup refuses a number beyond the id column's range."""
        text = request.path_params["contact"]
        if not (text.isascii() and text.isdigit() and len(text) <= 20):
            raise NotFound("no such contact", what="contact", name=text)
        return int(text)

    def profile_of(request: Request, who: Who) -> Any:
        contact_id = contact_id_of(request)
        with console.engine.connect() as conn:
            return contact_profile_by_id(conn, contact_id, unmasked=who.actor.may("contacts.view_unmasked"))

    @console.page("contacts.view")
    def contact(request: Request, who: Who) -> Response:
        profile = profile_of(request, who)
        timeline = [
            {
                "at": e["due_at"] if e["sent_at"] is None else e["sent_at"],
                "what": f"email {e['status']}" + (f" ({e['outcome']})" if e["outcome"] else ""),
                "campaign": e["campaign_id"],
                "step": e["step_id"],
                "detail": f"variant {e['variant']}",
            }
            for e in profile.emails
        ]
        timeline += [
            {
                "at": e["occurred_at"],
                "what": e["kind"],
                "campaign": e["campaign_id"],
                "step": e["step_id"],
                "detail": "",
            }
            for e in profile.events
        ]
        timeline.sort(key=lambda item: item["at"], reverse=True)
        return console.render(
            request,
            who,
            "contact.html",
            title=f"Contact #{profile.id}",
            p=profile,
            timeline=timeline,
            flash=request.query_params.get("flash", "")[:300],
            flash_kind="ok",
        )

    @console.page("contacts.view")
    def confirm(request: Request, who: Who) -> Response:
        action = request.path_params["action"]
        needed = {"suppress": "contacts.suppress", "erase": "contacts.erase"}.get(action)
        if needed is None:
            raise NotFound(f"no action '{action}'", what="action", name=action)
        if not who.actor.may(needed):
            return console.render(
                request,
                who,
                "message.html",
                status=403,
                title="Not allowed",
                message=f"Your role ({who.actor.role}) may not do this ({needed}).",
            )
        profile = profile_of(request, who)
        prefix = console.prefix(request)
        question = (
            f"Suppress contact #{profile.id}? They are never mailed again by any campaign."
            if action == "suppress"
            else f"Erase contact #{profile.id}? Their data (contact, lists, consent history) is deleted for good "
            "and the address stays suppressed. This cannot be undone."
        )
        return console.render(
            request,
            who,
            "confirm.html",
            title=f"{action.capitalize()} contact #{profile.id}",
            question=question,
            button=action.capitalize(),
            kind="danger",
            action_url=f"{prefix}/contacts/{profile.id}/{action}",
            back=f"{prefix}/contacts/{profile.id}",
        )

    def address_of(contact_id: int) -> str:
        with console.engine.connect() as conn:
            return str(contact_profile_by_id(conn, contact_id, unmasked=True).email)

    @console.page("contacts.suppress")
    def suppress(request: Request, who: Who) -> Response:
        contact_id = contact_id_of(request)
        contacts_actions.suppress_contact(
            console.engine, who.actor, address_of(contact_id), "manual", source=f"console ({who.actor.name})"
        )
        return RedirectResponse(f"{console.prefix(request)}/contacts/{contact_id}?flash=Suppressed.", status_code=303)

    @console.page("contacts.erase")
    def erase(request: Request, who: Who) -> Response:
        contact_id = contact_id_of(request)
        contacts_actions.erase_contact(console.engine, who.actor, address_of(contact_id))
        return RedirectResponse(f"{console.prefix(request)}/contacts?erased=1", status_code=303)

    return [
        Route("/audiences", audiences),
        Route("/audiences/import", upload, methods=["POST"]),
        Route("/imports/{job}", import_page),
        Route("/imports/{job}/status", import_status),
        Route("/imports/{job}/rejects.csv", rejects),
        Route("/contacts", contacts, methods=["GET", "POST"]),
        Route("/contacts/{contact}", contact),
        Route("/contacts/{contact}/confirm/{action}", confirm),
        Route("/contacts/{contact}/suppress", suppress, methods=["POST"]),
        Route("/contacts/{contact}/erase", erase, methods=["POST"]),
    ]
