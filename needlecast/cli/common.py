"""What every command shares: the Typer app and its groups, the consoles, the workspace and store, output.

Output: tables for people (never truncated: columns fold, and a pipe gets a wide console instead of 80
columns), `--format json` for scripts. Logs go to stderr only at WARNING unless `-v` (or to `--log-file`),
so they never mix into a command's output; services (scheduler, web, worker) log at INFO.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from needlecast.config import Workspace, open_workspace
from needlecast.logs import configure_logging

if TYPE_CHECKING:
    from needlecast.actions.users import Actor

# Typer 0.29 labels every option with its type, so each flag read "--now <bool>": a flag takes no value.
_type_label = typer.core.TyperOption.display_type_rich


def _flag_without_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    return None if self.is_flag else _type_label(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_without_type  # type: ignore[method-assign]


def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # A pipe or a file gets a wide console: 80 columns cut ids and headers short.
    wide = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, soft_wrap=True, width=wide)


console = _console()
err_console = _console(stderr=True)

app = typer.Typer(
    help="Turn a clinic's educational content into segmented email campaigns, sent on schedule.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def group(name: str, help_text: str) -> typer.Typer:
    sub = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


content_app = group("content", "The content library: articles, their sections and concern tags, and campaign drafts.")
audience_app = group("audience", "Contacts: import, consent, suppression, erasure, segments, look-up.")
db_app = group("db", "The database: schema migrations.")
outbox_app = group("outbox", "What the outbox backend recorded instead of sending.")
campaign_app = group("campaign", "Campaigns: list, status, pause, resume, cancel, reconcile.")
schedule_app = group("schedule", "The scheduler's job store.")


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table (for people) or json (for scripts).", case_sensitive=False)
]


class State:
    workspace_dir: Path | None = None
    verbose: bool = False
    log_file: Path | None = None


state = State()


def current_workspace() -> Workspace:
    return open_workspace(state.workspace_dir)


def current_store(workspace: Workspace | None = None) -> Engine:
    from needlecast.readmodels.workspace import workspace_store

    return workspace_store(workspace or current_workspace())


def operator() -> Actor:
    """Who every command acts as: the local operator, audited as `cli:<operating-system user>`
    (`actions.users.local_operator`). Every command that changes anything passes it to its action."""
    from needlecast.actions.users import local_operator

    return local_operator()


def setup_logging(*, service: bool = False) -> None:
    """WARNING to stderr (INFO with -v or for a service), or everything from INFO up into --log-file."""
    level = logging.INFO if (service or state.verbose or state.log_file) else logging.WARNING
    configure_logging(level, state.log_file)


def table(title: str, columns: list[str], *, right: tuple[str, ...] = ()) -> Table:
    """A table whose cells are never cut short: the first column (an id) never wraps, the others fold."""
    shown = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        shown.add_column(column, overflow="fold", no_wrap=index == 0, justify="right" if column in right else "left")
    return shown


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str, ensure_ascii=False) + "\n")
