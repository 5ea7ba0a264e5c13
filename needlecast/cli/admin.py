"""Accounts and keys from the command line: `user`, `apikey`, `audit`; and `form snippet`, `events import`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from needlecast.actions import keys
from needlecast.actions import users as accounts
from needlecast.cli.common import (
    FormatOption,
    OutputFormat,
    app,
    console,
    current_store,
    current_workspace,
    group,
    operator,
    print_json,
    setup_logging,
    table,
)
from needlecast.errors import InvalidRequest

user_app = group("user", "Console accounts: add, list, disable, enable, set a role or a password.")
apikey_app = group("apikey", "API keys: create (shown once), list, revoke.")
form_app = group("form", "The signup form: the HTML to paste into the clinic's site.")
events_app = group("events", "Events from the clinic's systems (bookings): import a CSV export.")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    else:
        value = typer.prompt("Password (at least 12 characters)", hide_input=True, confirmation_prompt=True)
    if not value:
        raise InvalidRequest("no password given")
    return value


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The person's address (their log-in).")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(accounts.ROLES)}.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    name: Annotated[str, typer.Option(help="The name the console shows (default: the address's first part).")] = "",
) -> None:
    """Add a console account (the first admin is made this way)."""
    setup_logging()
    password = _password(password_stdin)
    user_id = accounts.add_user(current_store(), operator(), email, role, password, name)
    console.print(f"account #{user_id} added for {email} ({role}); log in at /console/login", highlight=False)


@user_app.command("list")
def user_list(format: FormatOption = OutputFormat.table) -> None:
    """Every console account."""
    from needlecast.readmodels.accounts import account_rows

    rows = account_rows(current_store())
    if format == OutputFormat.json:
        print_json(rows)
        return
    shown = table("console accounts", ["id", "email", "role", "state", "last log-in (UTC)"])
    for row in rows:
        last = row["last_login_at"]
        shown.add_row(
            str(row["id"]),
            row["email"],
            row["role"],
            "disabled" if row["disabled"] else "active",
            f"{last:%Y-%m-%d %H:%M}" if last else "-",
        )
    console.print(shown)


@user_app.command("disable")
def user_disable(email: Annotated[str, typer.Argument(help="The account's address.")]) -> None:
    """Disable an account: it can no longer log in, and its sessions end."""
    from needlecast.readmodels.accounts import user_id_for

    setup_logging()
    engine = current_store()
    accounts.disable_user(engine, operator(), user_id_for(engine, email))
    console.print(f"{email}: disabled", highlight=False)


@user_app.command("enable")
def user_enable(email: Annotated[str, typer.Argument(help="The account's address.")]) -> None:
    """Enable a disabled account again."""
    from needlecast.readmodels.accounts import user_id_for

    setup_logging()
    engine = current_store()
    accounts.enable_user(engine, operator(), user_id_for(engine, email))
    console.print(f"{email}: enabled", highlight=False)


@user_app.command("set-role")
def user_set_role(
    email: Annotated[str, typer.Argument(help="The account's address.")],
    role: Annotated[str, typer.Argument(help=f"One of: {', '.join(accounts.ROLES)}.")],
) -> None:
    """Change an account's role."""
    from needlecast.readmodels.accounts import user_id_for

    setup_logging()
    engine = current_store()
    accounts.set_user_role(engine, operator(), user_id_for(engine, email), role)
    console.print(f"{email}: {role}", highlight=False)


@user_app.command("set-password")
def user_set_password(
    email: Annotated[str, typer.Argument(help="The account's address.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read it from stdin.")] = False,
) -> None:
    """Set an account's password (its sessions end)."""
    from needlecast.readmodels.accounts import user_id_for

    setup_logging()
    engine = current_store()
    user_id = user_id_for(engine, email)
    password = _password(password_stdin)
    accounts.set_user_password(engine, operator(), user_id, password)
    console.print(f"{email}: password changed", highlight=False)


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key (the audit log shows it).")],
    scopes: Annotated[str, typer.Option(help=f"Comma-separated, from: {', '.join(keys.SCOPES)}.")],
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    setup_logging()
    key = keys.create_key(current_store(), operator(), name, scopes)
    typer.echo("Store this key now: it is not shown again.", err=True)
    typer.echo(key)


@apikey_app.command("list")
def apikey_list(format: FormatOption = OutputFormat.table) -> None:
    """Every API key: name, first characters, scopes, last use."""
    from needlecast.readmodels.accounts import key_rows

    rows = key_rows(current_store())
    if format == OutputFormat.json:
        print_json(rows)
        return
    shown = table("API keys", ["id", "name", "starts with", "scopes", "last used (UTC)", "state"])
    for row in rows:
        used = row["last_used_at"]
        shown.add_row(
            str(row["id"]),
            row["name"],
            row["prefix"] + "…",
            row["scopes"],
            f"{used:%Y-%m-%d %H:%M}" if used else "-",
            "revoked" if row["revoked_at"] else "active",
        )
    console.print(shown)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (see `needlecast apikey list`).")]) -> None:
    """Revoke an API key: it stops working at once."""
    setup_logging()
    keys.revoke_key(current_store(), operator(), key_id)
    console.print(f"API key #{key_id} revoked", highlight=False)


@app.command()
def audit(
    limit: Annotated[int, typer.Option(help="How many entries, newest first.")] = 50,
    action: Annotated[str | None, typer.Option(help="Only actions starting with this, e.g. campaign.")] = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """The audit log: every change, who made it (console user, API key, command line), what and when."""
    from needlecast.readmodels.accounts import audit_rows

    rows = audit_rows(current_store(), limit, action)
    if format == OutputFormat.json:
        print_json(rows)
        return
    shown = table("audit log (newest first)", ["when (UTC)", "who", "what", "on", "detail"])
    for row in rows:
        shown.add_row(
            f"{row['at']:%Y-%m-%d %H:%M:%S}",
            row["who"],
            row["action"],
            row["target"],
            ", ".join(f"{k}={v}" for k, v in row["detail"].items()),
        )
    console.print(shown)


@form_app.command("snippet")
def form_snippet(
    form: Annotated[str, typer.Option(help="The form's name, recorded with each consent as form:NAME.")] = "website",
) -> None:
    """Print the HTML of the signup form to paste into the clinic's site (it posts to /subscribe)."""
    from needlecast.readmodels.signup_form import form_snippet as snippet

    typer.echo(snippet(current_workspace(), form))


@events_app.command("import")
def events_import(
    file: Annotated[Path, typer.Argument(help="A CSV (or XLSX) with id, email, type, occurred_at, value, currency.")],
    source: Annotated[str, typer.Option(help="Where the events come from (kept with each).")] = "",
    format: FormatOption = OutputFormat.table,
) -> None:
    """Import events from a booking system's export: stored once per id; bad rows go to FILE.rejects.csv."""
    from needlecast.actions.audience import import_event_file

    setup_logging()
    workspace = current_workspace()
    summary = import_event_file(current_store(workspace), workspace, operator(), file, source)
    counts = {
        "read": summary.read,
        "stored": summary.stored,
        "duplicates": summary.duplicates,
        "dropped": summary.dropped,
        "rejected": summary.rejected,
    }
    if format == OutputFormat.json:
        print_json({**counts, "rejects_file": str(summary.rejects_path) if summary.rejects_path else None})
        return
    shown = table(f"events from {file.name}", list(counts), right=tuple(counts))
    shown.add_row(*(str(v) for v in counts.values()))
    console.print(shown)
    if summary.rejects_path:
        console.print(f"rejected rows, with line numbers and reasons: {summary.rejects_path}", highlight=False)
