"""Contact pages: a contact's profile, journey positions and timeline (address and name masked unless the
role may see addresses), and suppression and erasure, each confirmed first and done through
`actions.contacts`. Module-level views (`auth.page`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import contacts as contacts_actions
from needlecast.errors import NotFound
from needlecast.readmodels import contact_list as list_read
from needlecast.readmodels import contact_pages as contacts_read
from needlecast.web.console.auth import Who, console_of, page


def contact_id_of(request: Request) -> int:
    """The path's contact number: digits only (`int` would also take "1_0", " 7" or other scripts' digits),
    else `NotFound`; the profile lookup refuses a number beyond the id column's range."""
    text = request.path_params["contact"]
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise NotFound("no such contact", what="contact", name=text)
    return int(text)


@page("contacts.view")
def contact(request: Request, who: Who) -> Response:
    console = console_of(request)
    unmasked = who.actor.may("contacts.view_unmasked")
    shown = contacts_read.contact_view(console.engine, contact_id_of(request), unmasked=unmasked)
    extras = list_read.contact_extras(console.engine, console.workspace, shown.profile.id, unmasked=unmasked)
    return console.render(
        request,
        who,
        "contact.html",
        title=f"Contact #{shown.profile.id}",
        p=shown.profile,
        extras=extras,
        consent=list_read.consent_in_words(shown.profile.consent),
        timeline=shown.timeline,
        flash=request.query_params.get("flash", "")[:300],
        flash_kind="ok",
    )


QUESTIONS = {
    "suppress": "Suppress contact #{id}? They are never mailed again by any campaign.",
    "erase": "Erase contact #{id}? Their data (contact, lists, consent history) is deleted for good and the address "
    "stays suppressed. This cannot be undone.",
}


@page("contacts.view")
def confirm(request: Request, who: Who) -> Response:
    console = console_of(request)
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
    unmasked = who.actor.may("contacts.view_unmasked")
    contact_id = contacts_read.profile(console.engine, contact_id_of(request), unmasked=unmasked).id
    prefix = console.prefix(request)
    return console.render(
        request,
        who,
        "confirm.html",
        title=f"{action.capitalize()} contact #{contact_id}",
        question=QUESTIONS[action].format(id=contact_id),
        button=action.capitalize(),
        kind="danger",
        action_url=f"{prefix}/contacts/{contact_id}/{action}",
        back=f"{prefix}/contacts/{contact_id}",
    )


def _address_of(request: Request) -> tuple[int, str]:
    contact_id = contact_id_of(request)
    return contact_id, contacts_read.profile(console_of(request).engine, contact_id, unmasked=True).email


@page("contacts.suppress")
def suppress(request: Request, who: Who) -> Response:
    console = console_of(request)
    contact_id, email = _address_of(request)
    contacts_actions.suppress_contact(console.engine, who.actor, email, "manual", source=f"console ({who.actor.name})")
    return RedirectResponse(f"{console.prefix(request)}/contacts/{contact_id}?flash=Suppressed.", status_code=303)


@page("contacts.erase")
def erase(request: Request, who: Who) -> Response:
    console = console_of(request)
    _contact_id, email = _address_of(request)
    contacts_actions.erase_contact(console.engine, who.actor, email)
    return RedirectResponse(f"{console.prefix(request)}/contacts?erased=1", status_code=303)


ROUTES = [
    Route("/contacts/{contact}", contact),
    Route("/contacts/{contact}/confirm/{action}", confirm),
    Route("/contacts/{contact}/suppress", suppress, methods=["POST"]),
    Route("/contacts/{contact}/erase", erase, methods=["POST"]),
]
