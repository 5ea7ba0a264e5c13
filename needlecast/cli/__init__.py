"""The `needlecast` command line. Each command is a thin shell: what it changes goes through one action
(`needlecast.actions`, acting as the local operator `cli:<os user>` from `cli.common.operator`, so it is
permission-checked and audited), what it prints is built by a read model (`needlecast.readmodels`). Only
`cli.service` starts processes (the scheduler, workers, the web app, the demo, a send in this process) and
imports them.

Errors: everything a user can cause is a `NeedlecastError` (exit 1) or a `ConfigurationError` (exit 2),
printed as one line that says what to do; Ctrl-C exits 130. Anything else is a bug: one line naming it
(addresses scrubbed), and the traceback only with -v.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

import needlecast
from needlecast.cli import admin, audience, campaigns, content, journeys, reports, service, workspace  # noqa: F401 - commands
from needlecast.cli.common import app, console, err_console, state
from needlecast.errors import ConfigurationError, NeedlecastError
from needlecast.logs import scrub


def _version(value: bool) -> None:
    if value:
        console.print(f"needlecast {needlecast.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    workspace_dir: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="Workspace folder (default: the nearest with needlecast.toml)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress (INFO) to stderr.")] = False,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", help="Write log lines (INFO and up) to this file instead.")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    state.workspace_dir = workspace_dir
    state.verbose = verbose
    state.log_file = log_file


def main() -> None:
    """Entry point: run the app and turn needlecast's errors into one clear line and an exit status."""
    try:
        app()
    except ConfigurationError as err:
        err_console.print(f"[red]configuration error:[/] {escape(str(err))}", highlight=False, markup=True)
        sys.exit(2)
    except NeedlecastError as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, markup=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except Exception as err:  # a bug: say so in one line, the traceback only when asked
        if state.verbose:
            raise
        err_console.print(
            f"[red]internal error:[/] {type(err).__name__}: {escape(scrub(str(err)))}. This is a bug in needlecast; "
            "run the command again with -v to see where it happened.",
            highlight=False,
            markup=True,
        )
        sys.exit(3)
