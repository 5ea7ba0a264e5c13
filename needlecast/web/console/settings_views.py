"""Settings pages (admins): the clinic's details and logo, the sender, the consent wording, the sending limits
and the test recipients (`/settings`), and the API keys (`/settings/keys`). Module-level views (`auth.page`).

Each form posts one group to `actions.settings.change_settings`, which writes needlecast.toml; a refused
group comes back on the page with each problem beside its field (400) and the values as typed. A new API
key is shown once, on the page that made it (never in a URL or a later page).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import keys as keys_actions
from needlecast.actions import settings as settings_actions
from needlecast.errors import NeedlecastError, SettingsRejected
from needlecast.readmodels.accounts import key_rows
from needlecast.readmodels.settings import logo_file, settings_values
from needlecast.web.console.auth import Who, console_of, page

SAVED = {
    "clinic": "The clinic's details are saved. The next email and preview use them.",
    "sender": "The sender is saved. The next email comes from it.",
    "consent": "The consent wording is saved. The signup form shows it now.",
    "sending": "The sending limits are saved. The next plan and send keep to them.",
    "tests": "The test recipients are saved.",
    "logo": "The logo is saved. The next email shows it.",
}
# Scopes in words, for the key form's check boxes.
SCOPE_WORDS = {
    "contacts:read": "Read contacts",
    "contacts:write": "Add and change contacts",
    "events:write": "Record events (such as bookings)",
    "campaigns:read": "Read campaigns",
    "campaigns:write": "Schedule campaigns",
    "reports:read": "Read reports",
}


def _settings_page(
    request: Request, who: Who, *, errors: dict[str, str] | None = None, typed: dict[str, Any] | None = None
) -> Response:
    console = console_of(request)
    values = {**settings_values(console.workspace), **(typed or {})}
    return console.render(
        request,
        who,
        "settings.html",
        status=400 if errors else 200,
        title="Settings",
        v=values,
        errors=errors or {},
        flash=request.query_params.get("flash", "")[:300] if not errors else "",
        flash_kind=request.query_params.get("kind", ""),
        saved=_saved_note(request) if not errors else ("", ""),
    )


def _saved_note(request: Request) -> tuple[str, str]:
    """(group, words) for the note a saved group shows in its own section (where the page opens after it)."""
    group = request.query_params.get("saved", "")
    if group not in SAVED:
        return "", ""
    return group, SAVED[group] if request.query_params.get("changed") != "no" else "Saved: nothing had changed."


@page("settings.edit")
def settings_page(request: Request, who: Who) -> Response:
    return _settings_page(request, who)


@page("settings.edit")
def save_group(request: Request, who: Who) -> Response:
    assert who.form is not None
    console = console_of(request)
    group = str(request.path_params["group"])
    form = {key: str(value) for key, value in who.form.items() if key != "csrf" and isinstance(value, str)}
    try:
        changed = settings_actions.change_settings(console.engine, console.workspace, who.actor, group, form)
    except SettingsRejected as err:
        return _settings_page(request, who, errors=err.problems, typed=form)
    query = urlencode({"saved": group, "changed": "yes" if changed else "no"})
    return RedirectResponse(f"{console.prefix(request)}/settings?{query}#{group}", status_code=303)


@page("settings.edit", upload=True)
def save_logo(request: Request, who: Who) -> Response:
    assert who.form is not None
    console = console_of(request)
    upload = who.form.get("logo")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _settings_page(request, who, errors={"logo": "choose an image file"})
    data = upload.file.read(settings_actions.MAX_LOGO_BYTES + 1)
    try:
        settings_actions.save_logo(console.engine, console.workspace, who.actor, data)
    except SettingsRejected as err:
        return _settings_page(request, who, errors=err.problems)
    query = urlencode({"saved": "logo"})
    return RedirectResponse(f"{console.prefix(request)}/settings?{query}#clinic", status_code=303)


@page("settings.edit")
def show_logo(request: Request, who: Who) -> Response:
    """The uploaded logo, for the settings page to show (the emails take it from the tracking host)."""
    path = logo_file(console_of(request).workspace)
    if path is None:
        return Response(status_code=404)
    kind = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif"}[path.suffix.lstrip(".")]
    return FileResponse(path, media_type=kind, headers={"cache-control": "private, max-age=60"})


def _keys_page(request: Request, who: Who, *, new_key: str = "", error: str = "", status: int = 200) -> Response:
    console = console_of(request)
    return console.render(
        request,
        who,
        "keys.html",
        status=status,
        title="API keys",
        keys=key_rows(console.engine),
        scopes=SCOPE_WORDS,
        new_key=new_key,
        error=error,
        flash=request.query_params.get("flash", "")[:300],
        flash_kind=request.query_params.get("kind", ""),
    )


@page("apikeys.manage")
def key_list(request: Request, who: Who) -> Response:
    return _keys_page(request, who)


@page("apikeys.manage")
def create_key(request: Request, who: Who) -> Response:
    assert who.form is not None
    chosen = [str(scope) for scope in who.form.getlist("scopes") if str(scope) in keys_actions.SCOPES]
    name = str(who.form.get("name") or "")
    if not chosen:
        return _keys_page(request, who, error="Choose what the key may do.", status=400)
    try:
        key = keys_actions.create_key(console_of(request).engine, who.actor, name, chosen)
    except NeedlecastError:
        return _keys_page(request, who, error="Give the key a name of 1 to 100 characters.", status=400)
    return _keys_page(request, who, new_key=key)


@page("apikeys.manage")
def revoke_key(request: Request, who: Who) -> Response:
    console = console_of(request)
    try:
        keys_actions.revoke_key(console.engine, who.actor, int(request.path_params["key"]))
    except NeedlecastError:
        return _keys_page(request, who, error="That key was already revoked.", status=404)
    query = urlencode({"flash": "The key is revoked: it stops working at once."})
    return RedirectResponse(f"{console.prefix(request)}/settings/keys?{query}", status_code=303)


ROUTES = [
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings/logo", save_logo, methods=["POST"]),
    Route("/settings/logo", show_logo, methods=["GET"]),
    Route("/settings/keys", key_list, methods=["GET"]),
    Route("/settings/keys", create_key, methods=["POST"]),
    Route("/settings/keys/{key:int}/revoke", revoke_key, methods=["POST"]),
    Route("/settings/{group:str}", save_group, methods=["POST"]),
]
