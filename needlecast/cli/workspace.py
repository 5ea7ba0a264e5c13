"""Workspace commands: init, lint, doctor, preview, outbox list/show, db upgrade."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from needlecast.cli.common import (
    FormatOption,
    OutputFormat,
    app,
    console,
    current_workspace,
    db_app,
    operator,
    outbox_app,
    print_json,
    setup_logging,
    table,
)
from needlecast.errors import InvalidRequest


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new workspace (created if missing).")],
    force: Annotated[bool, typer.Option(help="Overwrite needlecast.toml if the folder is a workspace.")] = False,
) -> None:
    """Create a workspace with the sample article, templates and audience, and example campaigns as drafts."""
    from needlecast.actions.settings import create_workspace

    for path in create_workspace(directory, force=force):
        console.print(f"created {path}", highlight=False)
    console.print(
        f"\nNext: cd {directory} && needlecast lint   (fill in the \\[clinic] placeholders it flags)\n"
        "The campaigns in campaigns/ are examples marked 'draft: true': nothing is scheduled or sent until you "
        "make them yours and remove that line.",
        highlight=False,
    )


class LintFormat(StrEnum):
    text = "text"
    table = "table"
    json = "json"


@app.command()
def lint(
    format: Annotated[
        LintFormat, typer.Option("--format", help="text (one finding a line), table, or json.", case_sensitive=False)
    ] = LintFormat.text,
) -> None:
    """Check content, templates, campaign files and config for risky claims and compliance problems.

    Each finding names file, line, rule, severity and a suggested fix. Exit status 1 when any finding is
    an error.
    """
    from needlecast.readmodels.workspace import lint_findings

    setup_logging()
    found = lint_findings(current_workspace())
    findings = found.findings
    if format == LintFormat.json:
        print_json([f.as_dict() for f in findings])
    elif format == LintFormat.table:
        shown = table("lint findings", ["file", "line", "severity", "rule", "message", "fix"], right=("line",))
        for f in findings:
            shown.add_row(f.file, str(f.line), f.severity, f.rule, f.message, f.fix)
        console.print(shown)
    else:
        for f in findings:
            colour = "red" if f.severity == "error" else "yellow"
            console.print(
                f"{escape(f.file)}:{f.line}: [{colour}]{f.severity}[/] {f.rule}: {escape(f.message)}",
                highlight=False,
                markup=True,
            )
            console.print(f"    fix: {f.fix}", highlight=False, markup=False)
        console.print(f"{len(findings)} finding(s), {found.errors} error(s)", highlight=False)
    raise typer.Exit(1 if found.failed else 0)


@app.command()
def doctor(format: FormatOption = OutputFormat.table) -> None:
    """Check what real sending needs: the sender, the secrets, the webhook key, the domain's SPF, DKIM and
    DMARC records, and the unsubscribe host; each with the fix. Exit status 1 when something is missing."""
    from needlecast.readmodels.workspace import MISSING, OK, sender_setup

    setup_logging()
    found = sender_setup(current_workspace())
    if format == OutputFormat.json:
        print_json(found.checks)
        raise typer.Exit(1 if found.missing else 0)
    shown = table("sender set-up", ["item", "status", "detail", "fix"])
    colours = {OK: "green", MISSING: "red"}
    for check in found.checks:
        status = f"[{colours.get(check['status'], 'yellow')}]{check['status']}[/]"
        shown.add_row(escape(check["item"]), status, escape(check["detail"]), escape(check["fix"]))
    console.print(shown)
    raise typer.Exit(1 if found.missing else 0)


@app.command()
def preview(
    template: Annotated[
        str | None,
        typer.Argument(help="Email template, e.g. emails/welcome (see templates/); not needed with --campaign."),
    ] = None,
    concern: Annotated[str, typer.Option(help="Variant to render: a concern or 'general'.")] = "general",
    article: Annotated[
        str | None,
        typer.Option(help="With a template: the article it draws on (default [content] article; `content list`)."),
    ] = None,
    campaign: Annotated[
        str | None, typer.Option(help="Render a campaign's step, with its own subject lines and preheader.")
    ] = None,
    step: Annotated[str | None, typer.Option(help="With --campaign: which step (default: the first).")] = None,
    arm: Annotated[str | None, typer.Option(help="With --campaign: which A/B arm, e.g. A or B (default: A).")] = None,
    first_name: Annotated[str | None, typer.Option(help="Sample first name (default: the fallback).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: WORKSPACE/previews).")] = None,
) -> None:
    """Render one email for a sample recipient to .html, .txt and .eml, and print the paths.

    Give a template to see it with its own subject, or --campaign (with --step and --arm) to see exactly
    what a campaign's step will send.
    """
    from needlecast.readmodels.previews import preview_campaign_step, preview_template

    setup_logging()
    workspace = current_workspace()
    target = out or workspace.root / "previews"
    if campaign is None:
        if template is None:
            raise InvalidRequest("name a template (e.g. emails/welcome) or a campaign with --campaign ID")
        if step or arm:
            raise InvalidRequest("--step and --arm choose within a campaign: add --campaign ID")
        files = preview_template(workspace, template, concern, first_name, target, article=article or "")
    else:
        if article:
            raise InvalidRequest("a campaign's step names its own article: leave out --article with --campaign")
        files = preview_campaign_step(workspace, campaign, step, arm, concern, first_name, target)
    console.print(f"subject: {files.subject}", highlight=False, markup=False)
    for path in (files.html, files.text, files.eml):
        console.print(str(path), highlight=False, markup=False)


@outbox_app.command("list")
def outbox_list(
    limit: Annotated[int, typer.Option(help="Show the last N requests.")] = 20,
    format: FormatOption = OutputFormat.table,
) -> None:
    """The recorded requests: number, campaign, step, recipients, subject."""
    from needlecast.readmodels.previews import outbox_requests

    workspace = current_workspace()
    rows = outbox_requests(workspace, limit)
    if format == OutputFormat.json:
        print_json(rows)
        return
    shown = table(
        f"outbox: last {len(rows)} request(s) in {workspace.outbox_dir}",
        ["n", "message id", "campaign", "step", "recipients", "subject"],
        right=("n", "recipients"),
    )
    for row in rows:
        shown.add_row(*(str(v) for v in row.values()))
    console.print(shown)


@outbox_app.command("show")
def outbox_show(
    number: Annotated[int, typer.Argument(help="Request number (see `needlecast outbox list`).")],
    recipient: Annotated[str | None, typer.Option(help="Whose copy (default: the first recipient).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: WORKSPACE/outbox/show).")] = None,
) -> None:
    """Render one recorded message as its recipient would see it, to .html and .eml."""
    from needlecast.readmodels.previews import outbox_copy

    workspace = current_workspace()
    copy = outbox_copy(workspace, number, recipient, out or workspace.outbox_dir / "show")
    console.print(f"subject: {copy.subject}", highlight=False, markup=False)
    console.print(str(copy.html), highlight=False)
    console.print(str(copy.eml), highlight=False)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations to the database (back it up first)."""
    from needlecast.actions.settings import upgrade_database

    setup_logging()
    before, after = upgrade_database(current_workspace().database_url, operator())
    console.print(f"schema: {before or 'empty'} -> {after}" if before != after else f"schema already at {after}")
