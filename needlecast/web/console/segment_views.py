"""Segment pages: one segment (its exclusions by reason and its members, paged, masked unless the actor may
see contacts unmasked) and the builder that creates and edits a segment as rows of conditions.

The builder posts its rows as `field-N`, `name-N`, `op-N`, `value-N` (N from 0). Its "Count" button (`do=count`)
shows the rows' size on the page again, so it works without JavaScript; `static/segment-builder.js` posts the
same form to `/segments/count` (JSON, the session's CSRF token in the form) as the rows change. Saving goes
through `actions.audience.save_segment`, and a mistake is shown beside its row. Module-level views
(`auth.page`)."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import audience as audience_actions
from needlecast.errors import ConfigurationError
from needlecast.readmodels.segments import (
    FIELDS,
    OPERATORS,
    Row,
    SegmentForm,
    SegmentRowsError,
    count_rows,
    segment_form,
    segment_page,
)
from needlecast.web.console.auth import Who, console_of, page

MAX_ROWS = 30
# What each exclusion reason (the audience code's words, shared with the command line) means for the clinic.
MEANINGS = {
    "no marketing consent": "They have not agreed to receive the clinic's marketing email.",
    "pending double opt-in": "They have not yet confirmed their address from the email the clinic sent.",
    "no consent to use concern": "They did not agree to the use of their skin concern; a segment without a "
    "concern condition still reaches them, with general content.",
    "paused by the person": "They asked for a pause from the clinic's email.",
}
SUPPRESSED = "Their address is on the do-not-mail list: "
SPARE_ROWS = 2  # empty rows after the segment's own, for a browser without JavaScript


def rows_posted(form: FormData) -> list[Row]:
    """The builder's rows, in order (at most MAX_ROWS); the spare empty ones kept so errors keep their index."""
    rows = []
    for index in range(MAX_ROWS):
        if f"field-{index}" not in form:
            break
        rows.append(
            Row(
                str(form.get(f"field-{index}") or "")[:40],
                str(form.get(f"name-{index}") or "")[:64],
                str(form.get(f"op-{index}") or "")[:20],
                str(form.get(f"value-{index}") or "")[:500],
            )
        )
    return rows


def _members_text(members: int) -> str:
    return f"{members:,} {'person' if members == 1 else 'people'}"


@page("audiences.view")
def segment(request: Request, who: Who) -> Response:
    console = console_of(request)
    wanted = request.query_params.get("page", "1")
    shown = segment_page(
        console.engine,
        console.workspace,
        request.path_params["segment"],
        int(wanted) if wanted.isdigit() else 1,
        unmasked=who.actor.may("contacts.view_unmasked"),
        frames=console.frames,
    )
    return console.render(
        request,
        who,
        "segment.html",
        title=f"Segment {shown.segment}",
        shown=shown,
        fields=FIELDS,
        operators=OPERATORS,
        members_text=_members_text(shown.members),
        meanings=MEANINGS,
        suppressed=SUPPRESSED,
        saved=request.query_params.get("saved") == "1",
    )


def _render_form(request: Request, who: Who, form: SegmentForm, replacing: str | None, **extra: object) -> Response:
    rows = list(form.rows) + [Row()] * SPARE_ROWS
    action = f"{console_of(request).prefix(request)}/segments/{replacing}/edit" if replacing else None
    return console_of(request).render(
        request,
        who,
        "segment_form.html",
        status=400 if extra.get("errors") else 200,
        title=f"Edit the segment {replacing}" if replacing else "New segment",
        form=form,
        rows=rows,
        fields=FIELDS,
        operators=OPERATORS,
        replacing=replacing,
        form_action=action or f"{console_of(request).prefix(request)}/segments/new",
        errors=extra.pop("errors", {}),
        **extra,
    )


def _opened(request: Request, who: Who, replacing: str | None) -> Response:
    """The builder as it opens, with the size of what it shows (everyone who may be mailed, for a new one)."""
    console = console_of(request)
    form = segment_form(console.workspace, replacing)
    counted = count_rows(console.engine, console.workspace, form.rows, frames=console.frames)
    return _render_form(request, who, form, replacing, counted=counted, counted_text=_members_text(counted.members))


@page("segments.edit")
def new_segment(request: Request, who: Who) -> Response:
    return _opened(request, who, None)


@page("segments.edit")
def edit_segment(request: Request, who: Who) -> Response:
    return _opened(request, who, request.path_params["segment"])


def _submitted(request: Request, who: Who, replacing: str | None) -> Response:
    console = console_of(request)
    assert who.form is not None
    if replacing is not None:
        segment_form(console.workspace, replacing)  # NotFound for a segment that is not there
    rows = rows_posted(who.form)
    name = str(who.form.get("name") or "").strip()[:64]
    description = str(who.form.get("description") or "").strip()[:300]
    posted = SegmentForm(
        name, description, [row for row in rows if row.field], segment_form(console.workspace, None).concerns
    )
    try:
        if who.form.get("do") == "count":
            counted = count_rows(console.engine, console.workspace, rows, frames=console.frames)
            return _render_form(
                request, who, posted, replacing, counted=counted, counted_text=_members_text(counted.members)
            )
        audience_actions.save_segment(console.engine, console.workspace, who.actor, name, description, rows, replacing)
    except SegmentRowsError as err:
        return _render_form(request, who, _kept(posted, rows), replacing, errors=err.problems)
    except ConfigurationError as err:
        return _render_form(request, who, _kept(posted, rows), replacing, errors={"general": str(err)})
    return RedirectResponse(f"{console.prefix(request)}/segments/{name}?saved=1", status_code=303)


def _kept(form: SegmentForm, rows: list[Row]) -> SegmentForm:
    """The form as posted, its rows at their posted places (so an error's index still points at its row)."""
    while rows and not rows[-1].field:
        rows = rows[:-1]
    return SegmentForm(form.name, form.description, rows, form.concerns)


@page("segments.edit")
def create_segment(request: Request, who: Who) -> Response:
    return _submitted(request, who, None)


@page("segments.edit")
def save_edited_segment(request: Request, who: Who) -> Response:
    return _submitted(request, who, request.path_params["segment"])


@page("segments.edit")
def count(request: Request, who: Who) -> Response:
    """The size of the posted rows: {"members", "text", "excluded", "problems"} (problems by row, in words)."""
    console = console_of(request)
    assert who.form is not None
    headers = {"cache-control": "no-store"}
    try:
        counted = count_rows(console.engine, console.workspace, rows_posted(who.form), frames=console.frames)
    except SegmentRowsError as err:
        return JSONResponse({"members": None, "text": "", "excluded": {}, "problems": err.problems}, headers=headers)
    return JSONResponse(
        {
            "members": counted.members,
            "text": _members_text(counted.members),
            "excluded": counted.excluded,
            "problems": {},
        },
        headers=headers,
    )


ROUTES = [
    Route("/segments/new", new_segment),
    Route("/segments/new", create_segment, methods=["POST"]),
    Route("/segments/count", count, methods=["POST"]),
    Route("/segments/{segment}", segment),
    Route("/segments/{segment}/edit", edit_segment),
    Route("/segments/{segment}/edit", save_edited_segment, methods=["POST"]),
]
