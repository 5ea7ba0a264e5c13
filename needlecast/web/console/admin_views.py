"""Admin pages: accounts (add, role, disable, enable) and the audit log. Module-level views (`auth.page`)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import users as users_actions
from needlecast.errors import NeedlecastError
from needlecast.readmodels.accounts import account_rows, audit_rows
from needlecast.web.console.auth import Who, console_of, page


def back(request: Request, message: str, kind: str = "ok") -> Response:
    return RedirectResponse(
        f"{console_of(request).prefix(request)}/users?{urlencode({'flash': message, 'kind': kind})}", status_code=303
    )


@page("users.manage")
def user_list(request: Request, who: Who) -> Response:
    console = console_of(request)
    return console.render(
        request,
        who,
        "users.html",
        title="Console accounts",
        users=account_rows(console.engine),
        roles=users_actions.ROLES,
        flash=request.query_params.get("flash", "")[:300],
        flash_kind=request.query_params.get("kind", ""),
    )


@page("users.manage")
def add(request: Request, who: Who) -> Response:
    assert who.form is not None
    try:
        users_actions.add_user(
            console_of(request).engine,
            who.actor,
            str(who.form.get("email") or ""),
            str(who.form.get("role") or ""),
            str(who.form.get("password") or ""),
        )
    except NeedlecastError as err:
        return back(request, str(err), "bad")
    return back(request, "Account added.")


def change(request: Request, who: Who, what: str) -> Response:
    assert who.form is not None
    user_id = int(request.path_params["user"])
    engine = console_of(request).engine
    if what == "disable" and user_id == who.actor.id:
        return back(request, "You cannot disable your own account.", "bad")
    try:
        if what == "role":
            users_actions.set_user_role(engine, who.actor, user_id, str(who.form.get("role") or ""))
        elif what == "disable":
            users_actions.disable_user(engine, who.actor, user_id)
        else:
            users_actions.enable_user(engine, who.actor, user_id)
    except NeedlecastError as err:
        return back(request, str(err), "bad")
    return back(
        request,
        {"role": "Role changed.", "disable": "Account disabled; its sessions ended.", "enable": "Account enabled."}[
            what
        ],
    )


@page("users.manage")
def set_role(request: Request, who: Who) -> Response:
    return change(request, who, "role")


@page("users.manage")
def disable(request: Request, who: Who) -> Response:
    return change(request, who, "disable")


@page("users.manage")
def enable(request: Request, who: Who) -> Response:
    return change(request, who, "enable")


@page("audit.view")
def audit_log(request: Request, who: Who) -> Response:
    rows = audit_rows(console_of(request).engine, 200)
    return console_of(request).render(request, who, "audit.html", title="Audit log", entries=rows)


ROUTES = [
    Route("/users", user_list, methods=["GET"]),
    Route("/users", add, methods=["POST"]),
    Route("/users/{user:int}/role", set_role, methods=["POST"]),
    Route("/users/{user:int}/disable", disable, methods=["POST"]),
    Route("/users/{user:int}/enable", enable, methods=["POST"]),
    Route("/audit", audit_log),
]
