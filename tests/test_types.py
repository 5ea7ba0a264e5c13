"""mypy over the package, as pyproject.toml configures it, is part of the suite: no type error anywhere.

In the suite rather than after it in `.ci/run`: there it ran alone on one core for ten seconds after the
tests; here it runs beside them (its cache in `.mypy_cache`, so a second local run takes a second or two)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_mypy_finds_no_type_error() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-color-output", "--no-error-summary"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
