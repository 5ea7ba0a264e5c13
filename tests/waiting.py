"""Waiting on a condition in tests: poll it until it holds or a generous deadline passes.

Tests wait on what they can observe (a row count, a line in a log, a port that answers), never for a fixed
time: under a loaded CI machine the condition simply takes longer to become true.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_TICK = threading.Event()  # never set: its wait() is an interruptible pause between two looks


def wait_until(condition: Callable[[], object], timeout: float, what: str, *, every: float = 0.05) -> None:
    """Return as soon as `condition()` is true; `AssertionError` naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        _TICK.wait(every)
