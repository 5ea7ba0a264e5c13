"""The suite's bytecode: every module any of its processes imports is compiled once, by the first to import it.

Loaded before the conftest files (pyproject's `addopts`: `-p tests.bytecode`). Where the machine sets
`PYTHONDONTWRITEBYTECODE`, no Python process writes a `.pyc`: each of the many processes the suite starts (its
workers, CLI commands, fleet members, sender and server processes, Schemathesis) would compile pandas,
SQLAlchemy and the rest from source again. Compiling every installed file ahead of time instead (`uv pip install
--compile-bytecode`) costs more than that: about 10,700 files, most of which no test imports (half a minute of
install on this kind of machine). So the suite lifts the setting for itself and for the processes it starts,
and each module is compiled by the first process that imports it (Python writes a `.pyc` atomically, so
processes importing the same module at once cannot corrupt it). Only `__pycache__` folders of the virtualenv
and of this repository (ignored by git) are written.
"""

from __future__ import annotations

import os
import sys

import pytest

NO_BYTECODE = "PYTHONDONTWRITEBYTECODE"


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests() -> None:
    """Before the conftest files import needlecast and its libraries: this process writes the bytecode of what
    it imports, and so does every process started from here on (they inherit the environment)."""
    os.environ.pop(NO_BYTECODE, None)
    sys.dont_write_bytecode = False
