"""Admin pages: accounts (invite, add, role, disable, enable, a password reset) and the audit log; the page
a one-time account link opens (`/welcome/<token>`: set a password). Module-level views (`auth.page`).

An invitation's or a reset's link is shown once, on the page that made it, for the admin to pass on; the
link itself is the credential of the page it opens, which also refuses a form from another site.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import invites
from needlecast.actions import users as users_actions
from needlecast.errors import NeedlecastError
from needlecast.readmodels.accounts import account_rows, audit_rows, link_holder
from needlecast.web.common import small_form
from needlecast.web.console.auth import Who, console_of, page


def back(request: Request, message: str, kind: str = "ok") -> Response:
    return RedirectResponse(
        f"{console_of(request).prefix(request)}/users?{urlencode({'flash': message, 'kind': kind})}", status_code=303
    )


def _users_page(request: Request, who: Who, *, link: str = "", link_for: str = "", error: str = "") -> Response:
    console = console_of(request)
    return console.render(
        request,
        who,
        "users.html",
        status=400 if error else 200,
        title="Console accounts",
        users=account_rows(console.engine),
        roles=users_actions.ROLES,
        link=link,
        link_for=link_for,
        flash=error or request.query_params.get("flash", "")[:300],
        flash_kind="bad" if error else request.query_params.get("kind", ""),
    )


def _link(request: Request, token: str) -> str:
    return f"{str(request.base_url).rstrip('/')}{console_of(request).prefix(request)}/welcome/{token}"


@page("users.manage")
def user_list(request: Request, who: Who) -> Response:
    return _users_page(request, who)


@page("users.manage")
def invite(request: Request, who: Who) -> Response:
    assert who.form is not None
    console = console_of(request)
    email, role = str(who.form.get("email") or ""), str(who.form.get("role") or "")
    try:
        token = invites.invite_user(console.engine, who.actor, console.secret, email, role)
    except NeedlecastError as err:
        return _users_page(request, who, error=str(err))
    return _users_page(request, who, link=_link(request, token), link_for="invite")


@page("users.manage")
def reset_link(request: Request, who: Who) -> Response:
    console = console_of(request)
    try:
        token = invites.reset_password_link(console.engine, who.actor, console.secret, int(request.path_params["user"]))
    except NeedlecastError as err:
        return _users_page(request, who, error=str(err))
    return _users_page(request, who, link=_link(request, token), link_for="reset")


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


def _welcome_page(request: Request, token: str, *, error: str = "", status: int = 200) -> Response:
    console = console_of(request)
    try:
        account = link_holder(console.engine, console.secret, token)
    except NeedlecastError as err:
        return console.render(request, None, "message.html", status=410, title="Link no longer valid", message=str(err))
    title = "Welcome to needlecast" if account["purpose"] == "invite" else "Choose a new password"
    return console.render(
        request, None, "welcome.html", status=status, title=title, account=account, token=token, error=error
    )


async def welcome_get(request: Request) -> Response:
    return await run_in_threadpool(_welcome_page, request, str(request.path_params["token"]))


async def welcome_post(request: Request) -> Response:
    console = console_of(request)
    token = str(request.path_params["token"])
    form = await small_form(request, limit=8 * 1024, fields=5)
    if not console.same_site(request):
        return await run_in_threadpool(_welcome_page, request, token, error="This form has expired.", status=403)
    password, again = str(form.get("password") or "")[:1000], str(form.get("again") or "")[:1000]
    if password != again:
        return await run_in_threadpool(_welcome_page, request, token, error="The two passwords differ.", status=400)
    try:
        await run_in_threadpool(invites.set_password_by_link, console.engine, console.secret, token, password)
    except NeedlecastError as err:
        return await run_in_threadpool(_welcome_page, request, token, error=str(err), status=400)
    done = "Your password is set. Log in with your email address and it."
    return console.render(request, None, "welcome.html", title="Password set", done=done, account={}, token="")


ROUTES = [
    Route("/users", user_list, methods=["GET"]),
    Route("/users", add, methods=["POST"]),
    Route("/users/invite", invite, methods=["POST"]),
    Route("/users/{user:int}/reset-link", reset_link, methods=["POST"]),
    Route("/welcome/{token:str}", welcome_get, methods=["GET"]),
    Route("/welcome/{token:str}", welcome_post, methods=["POST"]),
    Route("/users/{user:int}/role", set_role, methods=["POST"]),
    Route("/users/{user:int}/disable", disable, methods=["POST"]),
    Route("/users/{user:int}/enable", enable, methods=["POST"]),
    Route("/audit", audit_log),
]
