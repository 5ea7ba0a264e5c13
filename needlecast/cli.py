"""The `needlecast` command line. Each command is a thin shell over a library function."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

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
            console.print(f"{f.file}:{f.line}: [{colour}]{f.severity}[/] {f.rule}: {escape(f.message)}",
                          highlight=False, markup=True, soft_wrap=True)
            console.print(f"    fix: {f.fix}", highlight=False, markup=False, soft_wrap=True)
        errors = sum(f.severity == "error" for f in findings)
        console.print(f"{len(findings)} finding(s), {errors} error(s)", highlight=False)
    raise typer.Exit(1 if has_errors(findings) else 0)


@app.command()
def demo() -> None:
    """Run every stage on embedded defaults (SQLite, outbox backend, sample audience; no API key)."""
    from needlecast.demo import run_demo

    raise typer.Exit(run_demo(current_workspace(), console))


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
