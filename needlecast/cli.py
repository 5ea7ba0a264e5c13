"""The `needlecast` command line. Each command is a thin shell over a library function."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine

from needlecast import __version__
from needlecast.config import Workspace, open_workspace
from needlecast.errors import ConfigurationError, NeedlecastError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    help="Turn a clinic's educational content into segmented email campaigns, sent on schedule.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
content_app = typer.Typer(help="Inspect the source article and its concern tags.", no_args_is_help=True)
app.add_typer(content_app, name="content")
audience_app = typer.Typer(help="Contacts: import, consent, suppression, erasure, segments.", no_args_is_help=True)
app.add_typer(audience_app, name="audience")
db_app = typer.Typer(help="The database: schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
outbox_app = typer.Typer(help="What the outbox backend recorded instead of sending.", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
campaign_app = typer.Typer(help="Campaign state: status, pause, resume, cancel, reconcile.", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")
schedule_app = typer.Typer(help="The scheduler's job store.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")

WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="Workspace folder (default: the nearest with needlecast.toml)."),
]


class _State:
    workspace_dir: Path | None = None


_state = _State()


def _version(value: bool) -> None:
    if value:
        console.print(f"needlecast {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    workspace: WorkspaceOption = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state.workspace_dir = workspace


def current_workspace() -> Workspace:
    return open_workspace(_state.workspace_dir)


def current_store(workspace: Workspace | None = None) -> Engine:
    from needlecast.store.engine import open_store

    return open_store((workspace or current_workspace()).database_url)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace (created if missing).")],
    force: Annotated[bool, typer.Option(help="Overwrite needlecast.toml if the folder is a workspace.")] = False,
) -> None:
    """Create a workspace with the sample article, templates, audience and campaigns."""
    from needlecast.scaffold import init_workspace

    for path in init_workspace(directory, force=force):
        console.print(f"created {path}")
    console.print(f"\nNext: cd {directory} && needlecast lint   (fill in the \\[clinic] placeholders it flags)")


@content_app.command("show")
def content_show() -> None:
    """Print the article's sections and their concern tags."""
    from needlecast.content.loader import load_article

    article = load_article(current_workspace())
    table = Table(title=f"{article.title} ({article.path.name})")
    for column in ("line", "kind", "slug", "title", "concerns"):
        table.add_column(column)
    for section in article.sections:
        table.add_row(str(section.line), section.kind, section.slug, section.title, ", ".join(section.concerns))
    console.print(table)


@app.command()
def preview(
    template: Annotated[str, typer.Argument(help="Email template, e.g. emails/welcome (see templates/).")],
    concern: Annotated[str, typer.Option(help="Variant to render: a concern or 'general'.")] = "general",
    first_name: Annotated[str | None, typer.Option(help="Sample first name (default: the fallback).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: WORKSPACE/previews).")] = None,
) -> None:
    """Render one email for a sample recipient to .html, .txt and .eml, and print the paths."""
    from needlecast.templating.preview import write_preview

    workspace = current_workspace()
    files = write_preview(workspace, template, concern, first_name, out or workspace.root / "previews")
    console.print(f"subject: {files.subject}")
    for path in (files.html, files.text, files.eml):
        console.print(str(path))


@app.command()
def lint(
    format: Annotated[str, typer.Option("--format", help="text (one finding a line) or json.")] = "text",
) -> None:
    """Check content, templates and config for risky claims and compliance problems.

    Each finding names file, line, rule, severity and a suggested fix. Exit status 1 when any finding is
    an error.
    """
    from needlecast.lint import has_errors, lint_workspace

    if format not in ("text", "json"):
        raise typer.BadParameter("--format must be text or json")
    findings = lint_workspace(current_workspace())
    if format == "json":
        sys.stdout.write(json.dumps([f.as_dict() for f in findings], indent=2) + "\n")
    else:
        for f in findings:
            colour = "red" if f.severity == "error" else "yellow"
            console.print(
                f"{f.file}:{f.line}: [{colour}]{f.severity}[/] {f.rule}: {escape(f.message)}",
                highlight=False,
                markup=True,
                soft_wrap=True,
            )
            console.print(f"    fix: {f.fix}", highlight=False, markup=False, soft_wrap=True)
        errors = sum(f.severity == "error" for f in findings)
        console.print(f"{len(findings)} finding(s), {errors} error(s)", highlight=False)
    raise typer.Exit(1 if has_errors(findings) else 0)


@app.command()
def demo(
    with_events: Annotated[
        bool,
        typer.Option(
            "--with-events",
            help=("Then post simulated SendGrid events through the real, signed webhook and print the send report."),
        ),
    ] = False,
) -> None:
    """Run every stage on embedded defaults (SQLite, outbox backend, sample audience; no API key)."""
    from needlecast.demo import run_demo

    raise typer.Exit(run_demo(current_workspace(), console, with_events=with_events))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations to the database (back it up first)."""
    from needlecast.store.engine import current_revision, make_engine, upgrade

    engine = make_engine(current_workspace().database_url)
    before = current_revision(engine)
    after = upgrade(engine)
    console.print(f"schema: {before or 'empty'} -> {after}" if before != after else f"schema already at {after}")


@audience_app.command("import")
def audience_import(
    file: Annotated[Path, typer.Argument(help="CSV (comma, semicolon or tab) or XLSX file.")],
    list_name: Annotated[str, typer.Option("--list", help="Add every imported contact to this list.")] = "",
    mapping: Annotated[
        Path | None, typer.Option(help="YAML file mapping column headers to fields, e.g. 'Correo: email'.")
    ] = None,
) -> None:
    """Import contacts. Bad rows go to FILE.rejects.csv with line and reason; the counts always reconcile."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from needlecast.audience.columns import load_mapping
    from needlecast.audience.importer import import_file
    from needlecast.content.loader import load_vocabulary_for

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

        summary = import_file(
            engine,
            file,
            load_vocabulary_for(workspace),
            list_name=list_name,
            mapping=load_mapping(mapping),
            progress=progress,
        )
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    table = Table(title=f"import of {summary.source}")
    for column in ("read", "inserted", "updated", "duplicates", "rejected"):
        table.add_column(column, justify="right")
    table.add_row(*(str(getattr(summary, c)) for c in ("read", "inserted", "updated", "duplicates", "rejected")))
    console.print(table)
    if summary.conflicting_duplicates:
        console.print(
            f"{summary.conflicting_duplicates} repeated address(es) had conflicting values: the last "
            "row won, field by field"
        )
    if summary.rejects_path:
        console.print(f"rejected rows, with line numbers and reasons: {summary.rejects_path}")


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
    from needlecast.audience.consent import record_consent
    from needlecast.audience.contacts import get_contact

    if grant == withdraw:
        raise typer.BadParameter("give exactly one of --grant or --withdraw")
    with current_store().begin() as conn:
        contact = get_contact(conn, email)
        record_consent(
            conn, contact["id"], "concern" if concerns else "marketing", grant, source=source, wording_version=wording
        )
    what = "concern (health data) consent" if concerns else "marketing consent"
    console.print(f"{what} {'granted' if grant else 'withdrawn'} for contact #{contact['id']}")


@audience_app.command("opt-in")
def audience_opt_in(email: Annotated[str, typer.Argument(help="The contact's address.")]) -> None:
    """Start double opt-in: mark the contact pending and print the signed confirmation link (7 days)."""
    from needlecast.audience.consent import start_double_opt_in
    from needlecast.audience.contacts import get_contact
    from needlecast.config import signing_secret
    from needlecast.templating.recipient import link_base

    workspace = current_workspace()
    with current_store(workspace).begin() as conn:
        contact = get_contact(conn, email)
        token = start_double_opt_in(conn, contact["id"], signing_secret(required=False), source="manual (CLI)")
    console.print(f"{link_base(workspace.settings)}/confirm/{token}")


@audience_app.command("suppress")
def audience_suppress(
    email: Annotated[str, typer.Argument(help="The address to suppress (need not be a contact).")],
    reason: Annotated[str, typer.Option(help="unsubscribed, hard_bounce, complaint or manual.")] = "manual",
) -> None:
    """Add an address to the global suppression list: it is never mailed again."""
    from needlecast.audience.suppression import suppress

    if reason not in ("unsubscribed", "hard_bounce", "complaint", "manual"):
        raise typer.BadParameter("--reason must be unsubscribed, hard_bounce, complaint or manual")
    with current_store().begin() as conn:
        added = suppress(conn, email, reason, source="manual (CLI)")
    console.print("suppressed" if added else "already suppressed (the first reason is kept)")


@audience_app.command("erase")
def audience_erase(
    email: Annotated[str, typer.Argument(help="The address of the person to erase.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a person's data for good; keep only a keyed hash so the address is never imported again."""
    from needlecast.audience.suppression import erase

    if not yes and not typer.confirm("Erase this person's data permanently?"):
        raise typer.Exit(1)
    with current_store().begin() as conn:
        existed = erase(conn, email)
    console.print(
        "erased; the address stays suppressed"
        if existed
        else "no contact had that address; it is now suppressed as erased"
    )


def _segments_now(workspace: Workspace):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from needlecast.audience.segments import load_frame, load_segments
    from needlecast.content.loader import load_vocabulary_for

    segments = load_segments(workspace.audiences_dir / "segments.yaml", load_vocabulary_for(workspace).names)
    with current_store(workspace).connect() as conn:
        frame = load_frame(conn)
    return segments, frame, datetime.now(UTC)


@audience_app.command("segments")
def audience_segments() -> None:
    """Each segment's size, its variants, and how many were excluded and why."""
    from needlecast.audience.segments import evaluate

    segments, frame, now = _segments_now(current_workspace())
    table = Table(title=f"segments ({len(frame)} contacts in the store)")
    for column in ("segment", "members", "variants", "excluded (reason: count)"):
        table.add_column(column)
    for segment in segments.values():
        result = evaluate(segment, frame, now)
        variants = result.members["variant"].value_counts().sort_index()
        table.add_row(
            segment.name,
            str(result.size),
            ", ".join(f"{k} {v}" for k, v in variants.items()),
            ", ".join(f"{k}: {v}" for k, v in sorted(result.excluded.items())) or "-",
        )
    console.print(table)


@audience_app.command("show")
def audience_show(
    segment: Annotated[str, typer.Argument(help="Segment name from audiences/segments.yaml.")],
    limit: Annotated[int, typer.Option(help="How many members to list.")] = 20,
) -> None:
    """List a segment's members with masked addresses."""
    from needlecast.audience.addresses import mask_email
    from needlecast.audience.segments import evaluate, get_segment

    segments, frame, now = _segments_now(current_workspace())
    result = evaluate(get_segment(segments, segment), frame, now)
    table = Table(title=f"{segment}: {result.size} member(s), showing {min(limit, result.size)}")
    for column in ("id", "email", "first name", "variant", "time zone"):
        table.add_column(column)
    for row in result.members.head(limit).itertuples():
        table.add_row(str(row.id), mask_email(row.email), row.first_name, row.variant, row.time_zone or "-")
    console.print(table)


@outbox_app.command("list")
def outbox_list(limit: Annotated[int, typer.Option(help="Show the last N requests.")] = 20) -> None:
    """The recorded requests: number, campaign, step, recipients, subject."""
    from collections import deque

    from needlecast.delivery.outbox import read_outbox

    workspace = current_workspace()
    entries = deque(read_outbox(workspace.outbox_dir), maxlen=limit)
    table = Table(title=f"outbox: last {len(entries)} request(s) in {workspace.outbox_dir}")
    for column in ("n", "message id", "campaign", "step", "recipients", "subject"):
        table.add_column(column)
    for entry in entries:
        request = entry["request"]
        args = request.get("custom_args", {})
        table.add_row(
            str(entry["n"]),
            entry["message_id"],
            args.get("campaign", ""),
            args.get("step", ""),
            str(len(request["personalizations"])),
            request["subject"],
        )
    console.print(table)


@outbox_app.command("show")
def outbox_show(
    number: Annotated[int, typer.Argument(help="Request number (see `needlecast outbox list`).")],
    recipient: Annotated[str | None, typer.Option(help="Whose copy (default: the first recipient).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: WORKSPACE/outbox/show).")] = None,
) -> None:
    """Render one recorded message as its recipient would see it, to .html and .eml."""
    from needlecast.delivery.outbox import find_request, recipient_copy
    from needlecast.templating.eml import build_eml
    from needlecast.templating.tokens import apply_substitutions

    workspace = current_workspace()
    entry = find_request(workspace.outbox_dir, number)
    copy = recipient_copy(entry, recipient)
    request = entry["request"]
    target = out or workspace.outbox_dir / "show"
    target.mkdir(parents=True, exist_ok=True)
    html_path = target / f"request-{number}-recipient-{copy.position}.html"
    eml_path = html_path.with_suffix(".eml")
    html_path.write_text(apply_substitutions(copy.message.html, copy.substitutions), encoding="utf-8")
    sender = request["from"]
    eml_path.write_bytes(
        build_eml(
            copy.message,
            copy.substitutions,
            sender=(sender.get("name", ""), sender["email"]),
            recipient=copy.address,
            reply_to=request.get("reply_to", {}).get("email", ""),
            headers=copy.headers,
        )
    )
    console.print(f"subject: {apply_substitutions(copy.message.subject, copy.substitutions)}")
    console.print(str(html_path))
    console.print(str(eml_path))


def _configure_logging(verbose: bool = False) -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("needlecast").setLevel(logging.INFO)


@app.command()
def plan(
    campaign: Annotated[str | None, typer.Argument(help="Campaign id (default: every campaign).")] = None,
    days: Annotated[int, typer.Option(help="How many days ahead to plan.")] = 14,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write every planned email to this CSV.")] = None,
) -> None:
    """Show who gets what and when, and who is excluded and why, without sending anything."""
    from datetime import UTC, datetime

    from needlecast.campaign.preview import build_plans, summary_rows, write_plan_csv

    workspace = current_workspace()
    plans = build_plans(workspace, current_store(workspace), campaign, days, datetime.now(UTC))
    for item in plans:
        rows = summary_rows(item)
        table = Table(
            title=f"{item.campaign.id} ({item.campaign.kind}, segment {item.campaign.segment}): "
            f"{int(rows['recipients'].sum()) if len(rows) else 0} email(s) in the next {days} days"
        )
        for column in ("day (UTC)", "step", "variant", "arm", "recipients"):
            table.add_column(column)
        for row in rows.itertuples(index=False):
            table.add_row(row.day, row.step, row.variant, row.arm or "-", str(row.recipients))
        console.print(table)
        if item.new_enrolments:
            console.print(f"  would enrol {len(item.new_enrolments)} new contact(s)")
        for label, counter in (("excluded", item.excluded), ("deferred", item.deferred)):
            for reason, count in sorted(counter.items()):
                console.print(f"  {label}: {reason}: {count}", highlight=False)
    if csv:
        console.print(f"{write_plan_csv(plans, csv)} planned email(s) written to {csv}")


@app.command()
def send(
    campaign: Annotated[str, typer.Argument(help="Broadcast campaign id.")],
    now: Annotated[bool, typer.Option("--now", help="Send immediately, ignoring the campaign's schedule.")] = False,
) -> None:
    """Send a broadcast without the scheduler (with --now: immediately; otherwise what is due)."""
    from needlecast.campaign.runner import Runner
    from needlecast.delivery import get_backend
    from needlecast.schedule import SenderLock, recover

    _configure_logging()
    workspace = current_workspace()
    engine = current_store(workspace)
    lock = SenderLock(engine)
    holding = lock.acquire()  # when no scheduler runs, this process is the only sender: recover first
    try:
        if holding:
            recover(engine)
        report = Runner(workspace, engine, get_backend(workspace)).run_broadcast(campaign, send_now=now)
    finally:
        if holding:
            lock.release()
    _print_report(report)


def _print_report(report) -> None:  # type: ignore[no-untyped-def]
    console.print(
        f"{report.campaign_id}: {report.enqueued} new ledger row(s), {report.sent} sent, "
        f"{report.failed} failed, {report.released} deferred, {report.unknown} unknown, "
        f"{sum(report.skipped.values())} skipped",
        highlight=False,
    )
    if report.inactive:
        console.print(f"  campaign is {report.inactive}: nothing sent")
    for (step, segment, variant, arm), count in sorted(report.sent_by.items()):
        console.print(
            f"  sent: step {step}, segment {segment}, variant {variant}{', arm ' + arm if arm else ''}: {count}",
            highlight=False,
        )
    for label, counter in (("excluded", report.excluded), ("deferred", report.deferred), ("skipped", report.skipped)):
        for reason, count in sorted(counter.items()):
            console.print(f"  {label}: {reason}: {count}", highlight=False)
    if report.paused:
        console.print(f"[red]campaign paused after repeated failures:[/] {escape(report.paused)}")


@campaign_app.command("status")
def campaign_status(campaign: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """Ledger counts per state, and whether the campaign is active, paused or cancelled."""
    from needlecast import ledger
    from needlecast.campaign.state import get_state

    with current_store().connect() as conn:
        state = get_state(conn, campaign)
        counts = ledger.counts(conn, campaign)
    console.print(f"{campaign}: {state['status']}" + (f" ({state['note']})" if state["note"] else ""), highlight=False)
    table = Table()
    for status in counts:
        table.add_column(status, justify="right")
    table.add_row(*(str(v) for v in counts.values()))
    console.print(table)


def _set_campaign(campaign: str, status: str, note: str) -> None:
    from needlecast import ledger
    from needlecast.campaign.state import set_status

    with current_store().begin() as conn:
        set_status(conn, campaign, status, note)
        cancelled = ledger.cancel_queued(conn, campaign) if status == "cancelled" else 0
    console.print(f"{campaign}: {status}" + (f"; {cancelled} queued email(s) cancelled" if cancelled else ""))


@campaign_app.command("pause")
def campaign_pause(campaign: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """Stop sending (queued emails wait) until `resume`."""
    _set_campaign(campaign, "paused", "paused by hand")


@campaign_app.command("resume")
def campaign_resume(campaign: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """Resume a paused campaign; its queued emails go at the next run."""
    _set_campaign(campaign, "active", "")


@campaign_app.command("cancel")
def campaign_cancel(campaign: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """Cancel a campaign: queued emails are marked cancelled and never sent."""
    _set_campaign(campaign, "cancelled", "cancelled by hand")


@campaign_app.command("reconcile")
def campaign_reconcile(
    campaign: Annotated[str, typer.Argument(help="Campaign id.")],
    resend_unknown: Annotated[
        bool,
        typer.Option(
            "--resend-unknown",
            help=(
                "Queue the emails still unknown after reconciling to be sent again. They may reach someone twice: "
                "only after checking the provider's activity."
            ),
        ),
    ] = False,
) -> None:
    """Settle 'unknown' emails from stored provider events; optionally resend the rest."""
    from needlecast import ledger

    with current_store().begin() as conn:
        settled = ledger.reconcile(conn, campaign)
        requeued = ledger.requeue_unknown(conn, campaign) if resend_unknown else 0
        left = ledger.counts(conn, campaign)[ledger.UNKNOWN]
    console.print(
        f"{settled} unknown email(s) settled as sent from provider events; "
        f"{requeued} queued to be sent again; {left} still unknown"
    )


@schedule_app.command("sync")
def schedule_sync() -> None:
    """Bring the job store in line with the campaign files (changed reschedule, deleted unschedule)."""
    from needlecast.schedule import sync_offline

    result = sync_offline(current_workspace())
    if result is None:
        console.print("a scheduler is running: it re-reads the campaign files within a minute")
    else:
        console.print(f"{result[0]} job(s) added or changed, {result[1]} removed")


@app.command()
def scheduler() -> None:
    """Run the scheduler for this workspace until SIGTERM or Ctrl-C (same as `python scheduler.py`)."""
    from needlecast.schedule import run_scheduler

    _configure_logging(verbose=True)
    run_scheduler(current_workspace())


def _uvicorn_config(workspace: Workspace, host: str, port: int):  # type: ignore[no-untyped-def]
    import uvicorn

    from needlecast.tracking.app import create_app

    app_ = create_app(workspace, current_store(workspace))
    # Behind a reverse proxy: trust X-Forwarded-* from it (FORWARDED_ALLOW_IPS), links use public_base_url.
    return uvicorn.Config(
        app_,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        access_log=False,
        log_level="info",
        limit_concurrency=200,
        timeout_keep_alive=5,
    )


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the tracking app: SendGrid webhook, unsubscribe, preferences, double opt-in (uvicorn)."""
    import uvicorn

    _configure_logging(verbose=True)
    uvicorn.Server(_uvicorn_config(current_workspace(), host, port)).run()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Run the tracking app and the scheduler in one process (one scheduler per database)."""
    import uvicorn

    from needlecast.schedule import run_scheduler_in_background

    _configure_logging(verbose=True)
    workspace = current_workspace()
    stop_scheduler = run_scheduler_in_background(workspace)
    try:
        uvicorn.Server(_uvicorn_config(workspace, host, port)).run()
    finally:
        stop_scheduler()


@app.command()
def report(
    campaign: Annotated[str | None, typer.Argument(help="Campaign id (default: every campaign).")] = None,
    since: Annotated[str | None, typer.Option(help="Only emails and events since this date (YYYY-MM-DD).")] = None,
    format: Annotated[str, typer.Option("--format", help="table, csv, xlsx, html or json.")] = "table",
    out: Annotated[Path | None, typer.Option(help="Output file (required for xlsx and html).")] = None,
    freq: Annotated[str, typer.Option(help="Time series by 'day' or 'hour'.")] = "day",
    min_group: Annotated[int, typer.Option(help="Groups smaller than this show counts without rates.")] = 10,
    include_recipients: Annotated[bool, typer.Option(help="Add one row per recipient (masked).")] = False,
    unmasked: Annotated[bool, typer.Option(help="With --include-recipients: show full addresses.")] = False,
) -> None:
    """Send report: funnel per campaign, step, segment, variant and arm; health; A/B; time series; links."""
    from datetime import UTC, datetime

    from needlecast.reports import load_report
    from needlecast.reports.export import to_json, write_csv, write_html, write_xlsx

    if format not in ("table", "csv", "xlsx", "html", "json"):
        raise typer.BadParameter("--format must be table, csv, xlsx, html or json")
    if format in ("xlsx", "html") and out is None:
        raise typer.BadParameter(f"--format {format} needs --out FILE")
    start = datetime.fromisoformat(since).replace(tzinfo=UTC) if since else None
    data = load_report(
        current_store(),
        campaign,
        start,
        freq="h" if freq == "hour" else "D",
        min_group=min_group,
        include_recipients=include_recipients,
        unmasked=unmasked,
    )
    title = f"Send report: {campaign or 'all campaigns'}"
    if format == "table":
        _print_report_tables(data)
    elif format == "json":
        text = to_json(data)
        if out:
            out.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text + "\n")
    else:
        target = out or Path(f"report.{format}")
        {"csv": write_csv, "xlsx": write_xlsx}.get(format, lambda d, p: write_html(d, p, title))(data, target)
        console.print(f"report written to {target}")


def _print_report_tables(data) -> None:  # type: ignore[no-untyped-def]
    import math

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.1%}"
        return str(value) if value != "" else "-"

    views = {
        "funnel": (
            data.funnel,
            [
                "campaign_id",
                "step_id",
                "segment",
                "variant",
                "arm",
                "recipients",
                "sent",
                "delivered",
                "opened_rate",
                "clicked_rate",
                "bounce_rate",
                "unsubscribed",
                "complained",
            ],
        ),
        "deliverability health": (data.health, ["campaign_id", "sent", "complaint_rate", "bounce_rate", "flag"]),
        "A/B test (against arm A)": (
            data.ab,
            [
                "campaign_id",
                "step_id",
                "arm",
                "delivered",
                "open_rate",
                "open_diff",
                "open_p_value",
                "click_rate",
                "click_p_value",
            ],
        ),
    }
    for title, (table, columns) in views.items():
        shown = Table(title=title)
        for column in columns:
            shown.add_column(column.replace("_", " "))
        for row in table[columns].itertuples(index=False) if not table.empty else []:
            shown.add_row(
                *(
                    cell(v)
                    if not str(c).endswith("p_value") or not isinstance(v, float) or math.isnan(v)
                    else f"{v:.3f}"
                    for c, v in zip(columns, row, strict=True)
                )
            )
        console.print(shown)


def main() -> None:
    """Entry point: run the app and turn needlecast's errors into one clear line and an exit status."""
    try:
        app()
    except ConfigurationError as err:
        err_console.print(f"[red]configuration error:[/] {err}", highlight=False)
        sys.exit(2)
    except NeedlecastError as err:
        err_console.print(f"[red]error:[/] {err}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
