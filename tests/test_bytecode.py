"""The suite's bytecode (tests/bytecode.py): the suite and every process it starts write the bytecode of what
they import, whatever the machine's PYTHONDONTWRITEBYTECODE."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.bytecode import NO_BYTECODE


def test_the_suite_and_the_processes_it_starts_write_bytecode() -> None:
    assert NO_BYTECODE not in os.environ
    assert sys.dont_write_bytecode is False
    started = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.dont_write_bytecode)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert started.stdout.strip() == "False"
