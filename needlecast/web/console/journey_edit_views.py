"""Creating and editing a journey in the console: a form of node rows (`journey_form`), or its file's text for
those who want it, written through the same loader that reads campaign files.

Routes: `/journeys/new` (the form; POST creates the journey as a draft through `actions.journeys.create`),
`/journeys/{journey}/edit` (the form of a journey's file; POST previews the change: when people wait in the
journey, the confirmation page says per node how many wait there and what the change does to them, with a
choice for each removed node that holds people: another node, or leaving the journey), and
`/journeys/{journey}/save` (the confirmed save: `actions.journeys.save`, refused until each such node has a
choice, versioned and audited: what `needlecast journey save --move NODE=TARGET` does); `/journeys/check`
answers the builder's script with the loader's first problem (nothing written). A loader error is
shown beside its field, in words; an error in the text, with its line. The form works without JavaScript
(`static/journey-builder.js` adds, removes and moves rows and shows each row's kind's fields only).
Every route needs `campaigns.edit` (the `auth.page` decorator: permission and CSRF on the server).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from needlecast.actions import journeys as journey_actions
from needlecast.errors import CampaignFileError, InvalidRequest
from needlecast.readmodels.journey_edits import JourneySource, journey_source
from needlecast.readmodels.journeys import journey_overview, preview_save
from needlecast.web.console.auth import Who, console_of, page
from needlecast.web.console.campaign_views import back_to
from needlecast.web.console.journey_form import (
    CONDITIONS,
    ENTRIES,
    NODE_KINDS,
    REENTRIES,
    document_from_form,
    dump,
    field_of,
    form_values,
    line_of,
    unshown,
)

FORM_FIELDS_LIMIT = 2000  # a journey of 40 nodes, every kind's fields in each row (the form works without JS)
EXIT_CHOICE = "exit"
# A fix the loader words for a file ("write timeout: 7d"), said for the form instead, by the field it is about.
FORM_FIXES = {
    "timeout": "enter how long they wait at most, e.g. 7d",
    "next": "choose a step of this journey",
    "on_timeout": "choose a step of this journey",
    "default": "choose a step of this journey",
    "paths": "give at least one path: a condition and where it goes",
    "when": "choose a condition for this path",
    "percent": "enter a whole percentage, e.g. 50",
    "entry": "choose one way in",
    "reentry": "choose “again after a number of days” instead",
    "yearly": "tick it or leave it",
}


NODE_WORDS = (
    ("is not a node of this journey", "is not a step of this journey"),
    ("is not a node id", "is not a step name"),
    ("is used by another node", "is used by another step"),
    ("give every node its own id", "give every step its own name"),
    ("is not a send node", "is not a step that sends an email"),
    ("is not a kind of node", "is not a kind of step"),
    ("Fix: name one of", "Fix: choose one of"),
)


def _fix_in_words(field: str, fix: str) -> str:
    if field.endswith(".template"):
        return "choose an email in the list"
    if "{" in fix or "[" in fix or re.match(r"^write [a-z_]+:", fix) or fix.startswith("keep id:"):
        key = re.sub(r"\[\d+\]", "", field).split(".")[-1]
        return FORM_FIXES.get(key, "correct this field")
    return fix.partition(": needlecast ")[0]


def in_words(err: CampaignFileError) -> str:
    """A loader error for the form, beside its field: the problem and the fix, no file, no YAML."""
    problem = "is empty" if err.problem == "must be text" else err.problem
    loop = re.search(r"leads back to '([^']+)' with no wait on the way", problem)
    if loop:
        fix = f"add a Wait row on the loop (e.g. a wait of 1d) before '{loop.group(1)}', or point it elsewhere"
    else:
        fix = _fix_in_words(err.field, err.fix)
    said = f"{problem[0].upper()}{problem[1:]}. Fix: {fix}."
    for engine_words, form_words in NODE_WORDS:  # the form calls nodes steps
        said = said.replace(engine_words, form_words)
    return said


def steps_words(line: str) -> str:
    """The engine's words about a change (shared with the command line, which says "node" and "exit") as the
    form says them: steps, and leaving the journey."""
    line = line.replace("(a node, or exit)", "(another step, or out of the journey)")
    line = line.replace("choose a node for them", "choose a step for them").replace(
        ") or exit", ") or out of the journey"
    )
    return line.replace("is not a node of the journey", "is not a step of the journey")


def text_error(text: str, err: CampaignFileError) -> str:
    """A loader error for the text editor: the line, the problem and the fix (no file path, no traceback)."""
    if err.field == "(file)":
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as bad:
            mark = getattr(bad, "problem_mark", None)
            problem = getattr(bad, "problem", None) or "it cannot be read"
            where = f" at line {mark.line + 1}" if mark is not None else ""
            return f"The text is not valid YAML{where}: {problem}. Fix: check the indentation and quoting there."
        return f"The text {err.problem}. Fix: {err.fix}."
    line = line_of(text, err.field)
    where = f"Line {line} ({err.field})" if line else f"The field {err.field}"
    return f"{where}: {err.problem}. Fix: {err.fix.partition(': needlecast ')[0]}."


def _render_form(
    request: Request,
    who: Who,
    journey_id: str | None,
    source: JourneySource,
    values: dict[str, Any],
    *,
    errors: dict[str, str] | None = None,
    text: str = "",
    text_problem: str = "",
    status: int = 200,
) -> Response:
    console = console_of(request)
    prefix = console.prefix(request)
    action = f"{prefix}/journeys/{journey_id}/edit" if journey_id else f"{prefix}/journeys/new"
    cannot_show = unshown(source.document) if journey_id else []
    ids = [row["id"] for row in values["rows"] if row["id"]]
    waiting: dict[str, int] = {}
    if journey_id:  # who waits at each step now: what removing or changing a row concerns
        overview = journey_overview(console.engine, console.workspace, journey_id)
        waiting = {figures.node: figures.waiting for figures in overview.nodes if figures.waiting}
    return console.render(
        request,
        who,
        "journey_form.html",
        status=status,
        title=f"Edit the journey {source.name or journey_id}" if journey_id else "New journey",
        journey_id=journey_id,
        v=values,
        node_ids=ids,
        waiting=waiting,
        errors=errors or {},
        text=text or source.text,
        text_problem=text_problem,
        cannot_show=cannot_show,
        form_action=action,
        segments=source.segments,
        templates=source.templates,
        variants=source.variants,
        kinds=NODE_KINDS,
        conditions=CONDITIONS,
        entries=ENTRIES,
        reentries=REENTRIES,
    )


@page("campaigns.edit")
def new_journey(request: Request, who: Who) -> Response:
    source = journey_source(console_of(request).workspace, None)
    return _render_form(request, who, None, source, form_values({}))


@page("campaigns.edit")
def edit_journey(request: Request, who: Who) -> Response:
    journey_id = request.path_params["journey"]
    source = journey_source(console_of(request).workspace, journey_id)
    return _render_form(request, who, journey_id, source, form_values(source.document))


def _id_in(text: str) -> str:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return ""
    return str(raw.get("id") or "") if isinstance(raw, dict) else ""


def _says_draft(text: str) -> bool:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return True  # the loader names the mistake; nothing is written
    return not isinstance(raw, dict) or "draft" in raw


def _posted(who: Who, journey_id: str | None, source: JourneySource) -> tuple[str, dict[str, Any] | None]:
    """The journey's text as posted: the text editor's, or the form's rows dumped (None: from the text)."""
    assert who.form is not None
    if who.form.get("do") == "source":
        text = str(who.form.get("source") or "").replace("\r\n", "\n")
        if journey_id is None and not _says_draft(text):
            text = "draft: true\n" + text  # a new journey is a draft, however it is written
        return text, None
    document = document_from_form(who.form, source.document or None)
    if journey_id is None:  # a new journey is a draft: nobody enters it until someone schedules it
        document = {**dict(list(document.items())[:3]), "draft": True, **dict(list(document.items())[3:])}
    return dump(document), document


def _submitted(request: Request, who: Who, journey_id: str | None) -> Response:
    console = console_of(request)
    source = journey_source(console.workspace, journey_id)
    text, document = _posted(who, journey_id, source)
    try:
        if journey_id is None:
            created = _id_in(text)
            journey_actions.create(console.engine, console.workspace, who.actor, created, text)
            said = f"Saved the journey {created} as a draft: nobody enters it until you press Schedule."
            return back_to(request, created, said)
        preview = preview_save(console.workspace, console.engine, journey_id, text)
        if preview.waiting:
            return _render_confirm(request, who, journey_id, text, preview, {}, {})
        saved = journey_actions.save(console.engine, console.workspace, who.actor, journey_id, text)
    except CampaignFileError as err:
        if document is None:
            values = form_values(source.document)
            return _render_form(
                request, who, journey_id, source, values, text=text, text_problem=text_error(text, err), status=422
            )
        errors = {field_of(err.field): in_words(err)}
        return _render_form(
            request, who, journey_id, source, form_values(document), errors=errors, text=text, status=422
        )
    return back_to(request, journey_id, f"Saved the journey: version {saved.version}. Nobody was waiting in it.")


@page("campaigns.edit", fields=FORM_FIELDS_LIMIT)
def create_journey(request: Request, who: Who) -> Response:
    return _submitted(request, who, None)


@page("campaigns.edit", fields=FORM_FIELDS_LIMIT)
def submit_edit(request: Request, who: Who) -> Response:
    return _submitted(request, who, request.path_params["journey"])


def _render_confirm(
    request: Request,
    who: Who,
    journey_id: str,
    text: str,
    preview: Any,
    moves: dict[str, str],
    errors: dict[str, str],
) -> Response:
    """The confirmation of a save: per node, how many wait there and what the change does to them."""
    console = console_of(request)
    raw = yaml.safe_load(text)
    nodes = [(str(s.get("id")), str(s.get("kind") or "send")) for s in raw.get("steps") or [] if isinstance(s, dict)]
    rows = []
    for node_id, kind in nodes:
        waiting = preview.waiting.get(node_id, 0)
        if node_id in preview.added:
            fate = "new"
        elif node_id in preview.retimed:
            fate = "waits differently: those waiting are re-timed from when they arrived"
        else:
            fate = "unchanged" if waiting else ""
        rows.append({"id": node_id, "kind": NODE_KINDS.get(kind, kind), "waiting": waiting, "fate": fate})
    removed = [(node, count) for node, count in preview.removed.items() if count]
    return console.render(
        request,
        who,
        "journey_form_confirm.html",
        status=422 if errors else 200,
        title=f"Save the journey {raw.get('name') or journey_id}?",
        journey_id=journey_id,
        rows=rows,
        removed=removed,
        targets=[node for node, _ in nodes],
        moves=moves,
        lines=[steps_words(line) for line in preview.describe(moves)],
        waiting_total=sum(preview.waiting.values()),
        text=text,
        errors=errors,
        exit_choice=EXIT_CHOICE,
        form_action=f"{console.prefix(request)}/journeys/{journey_id}/save",
        back=f"{console.prefix(request)}/campaigns/{journey_id}",
    )


@page("campaigns.edit", fields=FORM_FIELDS_LIMIT)
def confirm_save(request: Request, who: Who) -> Response:
    """Save the confirmed version (`actions.journeys.save`), moving each removed node's people as chosen."""
    console = console_of(request)
    journey_id = request.path_params["journey"]
    assert who.form is not None
    journey_source(console.workspace, journey_id)  # NotFound unless it is a journey: never another kind's file
    text = str(who.form.get("source") or "").replace("\r\n", "\n")
    moves = {
        key.removeprefix("move-"): str(value)
        for key, value in who.form.multi_items()
        if key.startswith("move-") and str(value)
    }
    try:
        saved = journey_actions.save(console.engine, console.workspace, who.actor, journey_id, text, moves)
    except CampaignFileError as err:
        source = journey_source(console.workspace, journey_id)
        values = form_values(source.document)
        problem = text_error(text, err)
        return _render_form(request, who, journey_id, source, values, text=text, text_problem=problem, status=422)
    except InvalidRequest as err:
        refused = str(getattr(err, "field", ""))  # `EditRefused`: a removed node's people have no destination
        if not refused.startswith("moves."):
            return back_to(request, journey_id, str(err), "bad")
        preview = preview_save(console.workspace, console.engine, journey_id, text)
        errors = {refused.removeprefix("moves."): steps_words(str(err))}
        return _render_confirm(request, who, journey_id, text, preview, moves, errors)
    lines = [steps_words(line) for line in saved.preview.describe(moves)]
    return back_to(request, journey_id, f"Saved the journey: version {saved.version}. " + "; ".join(lines) + ".")


@page("campaigns.edit", fields=FORM_FIELDS_LIMIT)
def check(request: Request, who: Who) -> Response:
    """The posted form checked by the loader, for `static/journey-builder.js` as the rows change (nothing is
    written): {"ok", "field" (the form field of the first problem), "said" (in words)}."""
    console = console_of(request)
    assert who.form is not None
    editing = str(who.form.get("editing") or "") or None
    source = journey_source(console.workspace, editing)
    document = document_from_form(who.form, source.document or None)
    journey_id = editing or str(document.get("id") or "")
    headers = {"cache-control": "no-store"}
    if editing is None and journey_id in source.others:
        said = f"The id '{journey_id}' is already another campaign's: give the journey its own id."
        return JSONResponse({"ok": False, "field": "id", "said": said}, headers=headers)
    try:
        preview = preview_save(console.workspace, console.engine, journey_id, dump(document))
    except CampaignFileError as err:
        return JSONResponse({"ok": False, "field": field_of(err.field), "said": in_words(err)}, headers=headers)
    waiting = sum(preview.waiting.values())
    said = "Looks right: ready to save."
    if waiting:
        people = f"{waiting:,} {'person is' if waiting == 1 else 'people are'}"
        said += f" {people} in it now: before anything is saved, the next page shows what the change does to them."
    return JSONResponse({"ok": True, "field": "", "said": said}, headers=headers)


ROUTES = [
    Route("/journeys/check", check, methods=["POST"]),
    Route("/journeys/new", new_journey),
    Route("/journeys/new", create_journey, methods=["POST"]),
    Route("/journeys/{journey}/edit", edit_journey),
    Route("/journeys/{journey}/edit", submit_edit, methods=["POST"]),
    Route("/journeys/{journey}/save", confirm_save, methods=["POST"]),
]
