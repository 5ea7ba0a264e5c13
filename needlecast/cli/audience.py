"""`needlecast audience`: import, consent, double opt-in, suppression, erasure, segments, look-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from needlecast.cli.common import (
    FormatOption,
    OutputFormat,
    audience_app,
    console,
    current_store,
    current_workspace,
    err_console,
    operator,
    print_json,
    setup_logging,
    table,
)
from needlecast.errors import InvalidRequest

COUNTS = ("read", "inserted", "updated", "duplicates", "rejected")


@audience_app.command("import")
def audience_import(
    file: Annotated[Path, typer.Argument(help="CSV (comma, semicolon or tab) or XLSX file.")],
    list_name: Annotated[str, typer.Option("--list", help="Add every imported contact to this list.")] = "",
    mapping: Annotated[
        Path | None, typer.Option(help="YAML file mapping column headers to fields, e.g. 'Correo: email'.")
    ] = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Import contacts. Bad rows go to FILE.rejects.csv with line and reason; the counts always reconcile."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from needlecast.actions.audience import import_audience

    setup_logging()
    workspace = current_workspace()
    engine = current_store(workspace)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("reading", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total or None)

        summary = import_audience(
            engine, workspace, operator(), file, list_name=list_name, mapping_file=mapping, progress=progress
        )
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    if format == OutputFormat.json:
        print_json(
            {
                "source": summary.source,
                **{c: getattr(summary, c) for c in COUNTS},
                "conflicting_duplicates": summary.conflicting_duplicates,
                "rejects_file": str(summary.rejects_path) if summary.rejects_path else None,
                "warnings": summary.warnings,
            }
        )
        return
    shown = table(f"import of {summary.source}", list(COUNTS), right=COUNTS)
    shown.add_row(*(str(getattr(summary, c)) for c in COUNTS))
    console.print(shown)
    if summary.conflicting_duplicates:
        console.print(
            f"{summary.conflicting_duplicates} repeated address(es) had conflicting values: the last "
            "row won, field by field"
        )
    if summary.rejects_path:
        console.print(f"rejected rows, with line numbers and reasons: {summary.rejects_path}", highlight=False)


@audience_app.command("consent")
def audience_consent(
    email: Annotated[str, typer.Argument(help="The contact's address.")],
    grant: Annotated[bool, typer.Option("--grant", help="Record consent.")] = False,
    withdraw: Annotated[bool, typer.Option("--withdraw", help="Record withdrawal.")] = False,
    concerns: Annotated[
        bool, typer.Option("--concerns", help="The consent is to use the skin concern (health data).")
    ] = False,
    source: Annotated[str, typer.Option(help="Evidence: where the consent came from.")] = "manual (CLI)",
    wording: Annotated[str, typer.Option(help="Version of the consent wording shown.")] = "",
) -> None:
    """Record marketing consent (or, with --concerns, consent to use the skin concern) as history."""
    from needlecast.actions.contacts import record_contact_consent

    setup_logging()
    if grant == withdraw:
        raise InvalidRequest("give exactly one of --grant or --withdraw")
    contact_id = record_contact_consent(
        current_store(),
        operator(),
        email,
        "concern" if concerns else "marketing",
        grant,
        source=source,
        wording=wording,
    )
    what = "concern (health data) consent" if concerns else "marketing consent"
    console.print(f"{what} {'granted' if grant else 'withdrawn'} for contact #{contact_id}")


@audience_app.command("opt-in")
def audience_opt_in(email: Annotated[str, typer.Argument(help="The contact's address.")]) -> None:
    """Start double opt-in: mark the contact pending and print the signed confirmation link (7 days)."""
    from needlecast.actions.contacts import start_opt_in
    from needlecast.config import signing_secret
    from needlecast.readmodels.contacts import confirmation_link

    setup_logging()
    workspace = current_workspace()
    token = start_opt_in(
        current_store(workspace), operator(), email, signing_secret(required=False), source="manual (CLI)"
    )
    console.print(confirmation_link(workspace, token), highlight=False)


@audience_app.command("suppress")
def audience_suppress(
    email: Annotated[str, typer.Argument(help="The address to suppress (need not be a contact).")],
    reason: Annotated[str, typer.Option(help="unsubscribed, hard_bounce, complaint or manual.")] = "manual",
) -> None:
    """Add an address to the global suppression list: it is never mailed again."""
    from needlecast.actions.contacts import MANUAL_REASONS, suppress_contact

    setup_logging()
    if reason not in MANUAL_REASONS:
        raise InvalidRequest(f"--reason '{reason}' is not one of: {', '.join(MANUAL_REASONS)}")
    added = suppress_contact(current_store(), operator(), email, reason, source="manual (CLI)")
    console.print("suppressed" if added else "already suppressed (the first reason is kept)")


@audience_app.command("erase")
def audience_erase(
    email: Annotated[str, typer.Argument(help="The address of the person to erase.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a person's data for good; keep only a keyed hash so the address is never imported again."""
    from needlecast.actions.contacts import erase_contact

    setup_logging()
    if not yes and not typer.confirm("Erase this person's data permanently?"):
        raise typer.Exit(1)
    existed = erase_contact(current_store(), operator(), email)
    console.print(
        "erased; the address stays suppressed"
        if existed
        else "no contact had that address; it is now suppressed as erased"
    )


@audience_app.command("segments")
def audience_segments(format: FormatOption = OutputFormat.table) -> None:
    """Each segment's size, its variants, and how many were excluded and why."""
    from dataclasses import asdict

    from needlecast.readmodels.segments import segment_summaries

    setup_logging()
    workspace = current_workspace()
    summary = segment_summaries(current_store(workspace), workspace)
    rows = [asdict(row) for row in summary.segments]
    if format == OutputFormat.json:
        print_json({"contacts": summary.contacts, "segments": rows})
        return
    shown = table(
        f"segments ({summary.contacts} contacts in the store)",
        ["segment", "members", "variants", "excluded (reason: count)"],
        right=("members",),
    )
    for row in rows:
        shown.add_row(
            row["segment"],
            str(row["members"]),
            ", ".join(f"{k} {v}" for k, v in row["variants"].items()),
            ", ".join(f"{k}: {v}" for k, v in row["excluded"].items()) or "-",
        )
    console.print(shown)


@audience_app.command("show")
def audience_show(
    who: Annotated[str, typer.Argument(help="A segment name from audiences/segments.yaml, or one address.")],
    limit: Annotated[int, typer.Option(help="How many members of a segment to list.")] = 20,
    unmasked: Annotated[bool, typer.Option("--unmasked", help="Show full addresses.")] = False,
    format: FormatOption = OutputFormat.table,
) -> None:
    """List a segment's members, or show one contact's profile and timeline (addresses masked)."""
    setup_logging()
    if "@" in who:
        _show_contact(who, unmasked, format)
        return
    from needlecast.readmodels.contacts import segment_members

    workspace = current_workspace()
    result = segment_members(current_store(workspace), workspace, who, limit, unmasked=unmasked)
    members = result.members
    if format == OutputFormat.json:
        print_json({"segment": who, "size": result.size, "members": members})
        return
    shown = table(
        f"{who}: {result.size} member(s), showing {len(members)}", ["id", "email", "first name", "variant", "time zone"]
    )
    for member in members:
        shown.add_row(
            str(member["id"]), member["email"], member["first_name"], member["variant"], member["time_zone"] or "-"
        )
    console.print(shown)


def _show_contact(email: str, unmasked: bool, format: OutputFormat) -> None:
    from needlecast.readmodels.contact_pages import profile_by_address

    profile = profile_by_address(current_store(), email, unmasked=unmasked)
    if format == OutputFormat.json:
        print_json(profile.as_dict())
        return
    facts = table(f"contact #{profile.id}", ["field", "value"])
    for name, value in (
        ("email", profile.email),
        ("name", f"{profile.first_name} {profile.last_name}".strip() or "-"),
        ("status", profile.status),
        ("marketing consent", "yes" if profile.marketing_consent else "no"),
        ("concern consent", "yes" if profile.concern_consent else "no"),
        ("concerns", ", ".join(profile.concerns) or "-"),
        ("time zone", profile.time_zone or "-"),
        ("lists", ", ".join(profile.lists) or "-"),
        ("tags", ", ".join(profile.tags) or "-"),
        ("signed up", f"{profile.signed_up_at:%Y-%m-%d %H:%M} UTC"),
        ("suppressed", profile.suppressed or "no"),
    ):
        facts.add_row(name, str(value))
    console.print(facts)
    consent = table("consent history", ["when (UTC)", "purpose", "action", "source", "wording"])
    for row in profile.consent:
        consent.add_row(
            f"{row['recorded_at']:%Y-%m-%d %H:%M}",
            row["purpose"],
            row["action"],
            row["source"],
            row["wording_version"] or "-",
        )
    console.print(consent)
    emails = table("emails", ["due (UTC)", "campaign", "step", "variant", "arm", "status", "outcome"])
    for row in profile.emails:
        emails.add_row(
            f"{row['due_at']:%Y-%m-%d %H:%M}",
            row["campaign_id"],
            row["step_id"],
            row["variant"],
            row["arm"] or "-",
            row["status"],
            row["outcome"] or "-",
        )
    console.print(emails)
    events = table("events", ["when (UTC)", "kind", "campaign", "step"])
    for row in profile.events:
        events.add_row(
            f"{row['occurred_at']:%Y-%m-%d %H:%M}", row["kind"], row["campaign_id"] or "-", row["step_id"] or "-"
        )
    console.print(events)
