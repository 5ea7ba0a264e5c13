"""The contact list: every contact a page at a time, searched and filtered, and bulk actions on a selection
(add a tag, suppress, export as CSV, put into a journey), each confirmed with its count first and done through
`actions.contacts` (`actions.journeys` for a journey). Module-level views (`auth.page`).

A search names a person, so it is posted, never put in a URL (URLs end up in proxies' and browsers' logs):
the list's search, its pages and its bulk actions are forms that carry the search along. Filters that name
no one (concern, segment, consent, source, suppression, activity, page) also work in a link's query.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import contacts as contacts_actions
from needlecast.actions import journeys as journeys_actions
from needlecast.errors import InvalidRequest
from needlecast.readmodels import contact_list as list_read
from needlecast.web.console.auth import Who, console_of, page

MOST_CHOSEN = 200  # ids picked on a page (a page holds 50)
ACTIONS = {
    "tag": ("contacts.tag", "Add the tag"),
    "suppress": ("contacts.suppress", "Suppress"),
    "export": ("contacts.view", "Export as CSV"),
    "journey": ("campaigns.schedule", "Put into a journey"),
}


def _fields(request: Request, who: Who) -> Mapping[str, Any]:
    if who.form is not None:
        fields = dict(who.form.items())
        if fields.get("email") and not fields.get("q"):  # the former search's field: an address
            fields["q"] = fields["email"]
        return fields
    return {k: v for k, v in request.query_params.items() if k != "q"}  # a search is never taken from a URL


def _page_number(fields: Mapping[str, Any]) -> int:
    text = str(fields.get("page") or "1")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else 1


def _chosen(who: Who) -> tuple[int, ...] | None:
    """The ids ticked on the page, when the person chose "the contacts ticked"; None for "all that match"."""
    if who.form is None or who.form.get("scope") != "chosen":
        return None
    ids = [str(v) for v in who.form.getlist("ids")]
    return tuple(int(v) for v in ids[:MOST_CHOSEN] if v.isascii() and v.isdigit() and len(v) <= 18)


def show_list(request: Request, who: Who, *, flash: str = "", flash_kind: str = "ok", status: int = 200) -> Response:
    console = console_of(request)
    fields = _fields(request, who)
    wanted = list_read.ContactFilter.from_fields(fields)
    unmasked = who.actor.may("contacts.view_unmasked")
    shown = list_read.contact_list(
        console.engine, console.workspace, wanted, _page_number(fields), unmasked=unmasked, frames=console.frames
    )
    if (
        who.form is not None
        and not flash
        and shown.total == 1
        and wanted.fields() == {"q": wanted.text}
        and (not unmasked or shown.rows[0].email == wanted.text.lower())  # masked: only a whole address finds
    ):
        # An address typed in full finds its person: open their page, as the search always did.
        return RedirectResponse(f"{console.prefix(request)}/contacts/{shown.rows[0].id}", status_code=303)
    return console.render(
        request,
        who,
        "contacts.html",
        status=status,
        title="Contacts",
        shown=shown,
        state=wanted.fields(),
        unmasked=unmasked,
        flash=flash,
        flash_kind=flash_kind,
    )


@page("contacts.view")
def contacts(request: Request, who: Who) -> Response:
    return show_list(request, who)


def _bulk(request: Request, who: Who, action: str) -> Response:
    assert who.form is not None  # a POST (the route takes no other method)
    wanted = list_read.ContactFilter.from_fields(who.form)
    chosen = _chosen(who)
    if chosen == ():
        return show_list(
            request, who, flash="Tick at least one contact first, or choose all that match.", flash_kind="bad"
        )
    selection = list_read.Selection(wanted, chosen)
    tag = ""
    if action == "tag":
        try:
            tag = contacts_actions.clean_tag(str(who.form.get("tag") or ""))
        except InvalidRequest as problem:
            return show_list(request, who, flash=_words(problem), flash_kind="bad")
    if action == "journey":  # the journey's id travels in `tag`'s place: the one word a bulk action carries
        tag = str(who.form.get("journey") or "")
        journeys = dict(list_read.live_journeys(console_of(request).workspace))
        if tag not in journeys:
            return show_list(request, who, flash="Choose the journey to put them into.", flash_kind="bad")
    expected = str(who.form.get("expected") or "")
    if not (expected.isascii() and expected.isdigit()):
        return _confirm(request, who, action, selection, tag)
    return _apply(request, who, action, selection, tag, int(expected))


def _apply(
    request: Request, who: Who, action: str, selection: list_read.Selection, tag: str, expected: int
) -> Response:
    console = console_of(request)
    engine, workspace, actor, frames = console.engine, console.workspace, who.actor, console.frames
    if action == "export":
        done, text = contacts_actions.export_contacts(
            engine, workspace, actor, selection, expected=expected, frames=frames
        )
        if done.done:
            day = datetime.now(UTC).date().isoformat()
            disposition = f'attachment; filename="contacts-{day}.csv"'
            return Response(text, media_type="text/csv; charset=utf-8", headers={"content-disposition": disposition})
    elif action == "journey":
        size, entered = journeys_actions.enter_selection(
            engine, workspace, actor, tag, selection, expected=expected, frames=frames
        )
        if entered is not None:
            return show_list(request, who, flash=_entered_words(entered, dict(list_read.live_journeys(workspace))[tag]))
        note = f"The selection changed since you looked: it now holds {_people(size)}."
        return _confirm(request, who, action, selection, tag, note=note, count=size)
    elif action == "tag":
        done = contacts_actions.tag_contacts(engine, workspace, actor, selection, tag, expected=expected, frames=frames)
        if done.done:
            had = done.selected - done.changed
            extra = f" ({had:,} had it already)" if had else ""
            return show_list(request, who, flash=f"Added the tag “{tag}” to {_people(done.changed)}{extra}.")
    else:
        done = contacts_actions.suppress_contacts(engine, workspace, actor, selection, expected=expected, frames=frames)
        if done.done:
            had = done.selected - done.changed
            extra = f" ({had:,} were suppressed already)" if had else ""
            flash = f"Suppressed {_people(done.changed)}: no campaign will email them{extra}."
            return show_list(request, who, flash=flash)
    note = f"The selection changed since you looked: it now holds {_people(done.selected)}."
    return _confirm(request, who, action, selection, tag, note=note, count=done.selected)


def _entered_words(entered: journeys_actions.EnterResult, journey: str) -> str:
    said = f"Put {_people(len(entered.entered))} into the journey “{journey}”: they start at its first step."
    if entered.already_in:
        kept = _people(len(entered.already_in))
        said += f" {kept} were not put in: they are in it now, or its re-entry rule keeps them out."
    return said


def _people(n: int) -> str:
    return f"{n:,} contact" if n == 1 else f"{n:,} contacts"


def _words(problem: InvalidRequest) -> str:
    text = str(problem).split(": ", 1)[-1]
    return text[:1].upper() + text[1:] + "."


def _confirm(
    request: Request,
    who: Who,
    action: str,
    selection: list_read.Selection,
    tag: str,
    *,
    note: str = "",
    count: int | None = None,
) -> Response:
    console = console_of(request)
    unmasked = who.actor.may("contacts.view_unmasked")
    if count is None:
        count = list_read.selection_size(
            console.engine, console.workspace, selection, unmasked=unmasked, frames=console.frames
        )
    people = _people(count)
    question = {
        "tag": f"Add the tag “{tag}” to {people}?",
        "suppress": f"Suppress {people}? No campaign will email them again.",
        "export": f"Export {people} as a CSV file?" + ("" if unmasked else " Addresses and names stay masked."),
        "journey": f"Put {people} into the journey “{dict(list_read.live_journeys(console.workspace)).get(tag, tag)}”?"
        " They start at its first step; its re-entry rule, consent and suppression still apply.",
    }[action]
    return console.render(
        request,
        who,
        "contacts_confirm.html",
        title=ACTIONS[action][1] if action != "tag" else "Add a tag",
        field="journey" if action == "journey" else "tag",
        question=question,
        note=note,
        count=count,
        action=action,
        tag=tag,
        button={
            "tag": "Add the tag",
            "suppress": "Suppress them",
            "export": "Download the CSV",
            "journey": "Put them in",
        }[action],
        danger=action == "suppress",
        described=list_read.describe(console.workspace, selection.wanted, unmasked),
        chosen=selection.ids,
        state=selection.wanted.fields(),
    )


@page("contacts.tag")
def bulk_tag(request: Request, who: Who) -> Response:
    return _bulk(request, who, "tag")


@page("contacts.suppress")
def bulk_suppress(request: Request, who: Who) -> Response:
    return _bulk(request, who, "suppress")


@page("contacts.view")
def bulk_export(request: Request, who: Who) -> Response:
    return _bulk(request, who, "export")


@page("campaigns.schedule")
def bulk_journey(request: Request, who: Who) -> Response:
    return _bulk(request, who, "journey")


# Before contact_views' routes: "/contacts/bulk/suppress" would otherwise be contact "bulk"'s suppression.
ROUTES = [
    Route("/contacts", contacts, methods=["GET", "POST"]),
    Route("/contacts/bulk/tag", bulk_tag, methods=["POST"]),
    Route("/contacts/bulk/suppress", bulk_suppress, methods=["POST"]),
    Route("/contacts/bulk/export", bulk_export, methods=["POST"]),
    Route("/contacts/bulk/journey", bulk_journey, methods=["POST"]),
]
