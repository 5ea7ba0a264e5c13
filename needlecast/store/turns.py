"""Taking turns at writing one SQLite database across sender processes, without oversleeping.

SQLite has one writer at a time. A writer that finds the database locked sleeps and retries (the busy
timeout), in steps of 1, 2, 5, 10, 15, 20, 25... ms, so two sender processes that claim and mark several
times a second each lose much of their time asleep after the lock is already free. The dispatch hot path
therefore takes an exclusive `flock` on a file beside the database around its write transactions: the
kernel wakes the next process the moment the lock is released. Writers that do not take a turn (the
webhook receiver, the CLI) are still safe: they meet SQLite's own lock and its busy timeout as before.

Contract: `write_turn(engine)` is a context manager; on a SQLite file database it holds the turn (for
this process's threads and the other processes alike) while the block runs; elsewhere it does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from typing import IO

from sqlalchemy import Engine


class _Turns:
    """One database's turn file (opened once per process) and a lock for this process's threads."""

    def __init__(self, path: str) -> None:
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 - kept open for the process's lifetime
        self._threads = threading.Lock()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._threads:  # flock is per open file: threads of one process must queue here first
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)


_TURNS: dict[str, _Turns] = {}
_TURNS_LOCK = threading.Lock()


def write_turn(engine: Engine) -> contextlib.AbstractContextManager[None]:
    """Hold this database's write turn for the duration of a `with` block (SQLite files only)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        return contextlib.nullcontext()
    path = os.path.abspath(database) + ".turn"
    with _TURNS_LOCK:
        turns = _TURNS.get(path)
        if turns is None:
            turns = _TURNS[path] = _Turns(path)
    return turns.hold()
