"""Running the `needlecast` command in this process, as a user runs it: `main()` with its error handling.

`run(root, *args, env=...)` sets the arguments and environment, runs `needlecast.cli.main`, and returns the
exit code and what went to stdout and stderr. Faster than a subprocess, and it goes through the same
`main()` that turns errors into one line.

Typer builds the click command tree from the app's functions on every call (23 ms of CPU for needlecast's,
hundreds of times a run): `run` builds it once per process and keeps it, as a command line process builds it
once in its life. Click's commands keep no state between calls: each call makes its own context.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from needlecast.cli import common, main
from needlecast.spamcheck import SPAMD_SOCKET_ENV
from tests.conftest import SUITE_ENVIRONMENT

# The click command of an app, built on the first call of this process (Typer's own click's command).
_built_once: Callable[[typer.Typer], Any] = functools.cache(typer.main.get_command)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run(monkeypatch: pytest.MonkeyPatch, root: Path | None, *args: str, **env: str) -> Result:
    # The suite's own settings stay: the cheap password cost, the session's spamd (conftest).
    kept = set(env) | set(SUITE_ENVIRONMENT) | {SPAMD_SOCKET_ENV}
    for key in [k for k in os.environ if k.startswith(("NEEDLECAST_", "SENDGRID_")) and k not in kept]:
        monkeypatch.delenv(key, raising=False)
    if "COLUMNS" not in env:
        # As a pipe gets it (`cli.common._console`): the consoles are made at import, and a pytest-xdist worker
        # imports them with a terminal's COLUMNS in its environment, which would wrap the tables at 80.
        monkeypatch.delenv("COLUMNS", raising=False)
        for console in (common.console, common.err_console):
            monkeypatch.setattr(console, "_width", max(console._width or 0, 200))  # a test's wider one stays
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = ["needlecast", *(["-w", str(root)] if root is not None else []), *args]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(typer.main, "get_command", _built_once)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())
