"""What the PostgreSQL server wrote to its own log while a test ran.

`watch_server_log(engine)` is a context manager for a PostgreSQL engine. It finds the server's log file
(`pg_current_logfile()` when the logging collector runs, otherwise Debian's
`/var/log/postgresql/postgresql-<cluster>.log` or another log there), proves it is the right one by
raising a marker into it, and remembers its size. The `ServerLog` it yields records the backend pid of
every connection `engine` opens from then on (the pool is emptied first, so every later statement runs
on such a connection); after the block, `text` is what the server wrote meanwhile (up to a closing
marker it waits for, so nothing is missed) and `lines_of_ours()` the lines our backends wrote. Several
test runs share the server, so a test asserts on its own backends' lines or on values only it uses.

The test is skipped, saying why, only when no log file can be read.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from tests.waiting import wait_until

LOG_FOLDER = Path("/var/log/postgresql")
LINE_PID = re.compile(r"\[(\d+)\]")


@dataclass
class ServerLog:
    path: Path
    start: int
    pids: set[int] = field(default_factory=set)
    text: str = ""

    def lines_of_ours(self) -> list[str]:
        """The lines written by the backends of our connections (each line carries `[pid]` in its prefix)."""
        ours = []
        for line in self.text.splitlines():
            found = LINE_PID.search(line)
            if found and int(found.group(1)) in self.pids:
                ours.append(line)
        return ours


def _candidates(engine: Engine) -> list[Path]:
    with engine.connect() as conn:
        current = conn.execute(text("SELECT pg_current_logfile()")).scalar()
        data = conn.execute(text("SHOW data_directory")).scalar()
        cluster = conn.execute(text("SHOW cluster_name")).scalar()
    found: list[Path] = []
    if current:
        path = Path(current)
        found.append(path if path.is_absolute() else Path(str(data)) / path)
    if cluster:
        found.append(LOG_FOLDER / f"postgresql-{str(cluster).replace('/', '-')}.log")
    with contextlib.suppress(OSError):
        found += sorted(LOG_FOLDER.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    return list(dict.fromkeys(found))


def _size(path: Path) -> int | None:
    try:
        with path.open("rb"):
            return path.stat().st_size
    except OSError:
        return None


def _read_from(path: Path, start: int) -> str:
    with path.open("rb") as file:
        file.seek(start)
        return file.read().decode("utf-8", "replace")


def _mark(engine: Engine, marker: str) -> None:
    """Write `marker` into the server's log (LOG is logged at the default `log_min_messages`)."""
    with engine.begin() as conn:
        conn.execute(text(f"DO $$ BEGIN RAISE LOG '{marker}'; END $$"))


def _appears(path: Path, start: int, marker: str) -> bool:
    try:
        return marker in _read_from(path, start)
    except OSError:
        return False


@contextlib.contextmanager
def watch_server_log(engine: Engine) -> Iterator[ServerLog]:
    readable = {path: size for path in _candidates(engine) if (size := _size(path)) is not None}
    if not readable:
        pytest.skip(
            "the PostgreSQL server's log file cannot be read here "
            "(none at pg_current_logfile() or in /var/log/postgresql)"
        )
    opening = f"needlecast-test-log-open-{uuid.uuid4().hex}"
    _mark(engine, opening)
    try:
        wait_until(
            lambda: any(_appears(p, s, opening) for p, s in readable.items()), 10, "the marker in the server's log"
        )
    except AssertionError:
        pytest.skip(f"the PostgreSQL server does not log to a file readable here ({', '.join(map(str, readable))})")
    path = next(p for p, s in readable.items() if _appears(p, s, opening))
    log = ServerLog(path, readable[path])

    def remember(dbapi_connection: Any, _record: Any) -> None:
        log.pids.add(int(dbapi_connection.info.backend_pid))

    engine.dispose()  # every connection from now on is a new one, and its pid is remembered
    event.listen(engine, "connect", remember)
    try:
        yield log
    finally:
        event.remove(engine, "connect", remember)
    closing = f"needlecast-test-log-close-{uuid.uuid4().hex}"
    _mark(engine, closing)
    wait_until(lambda: _appears(path, log.start, closing), 30, "the closing marker in the server's log")
    log.text = _read_from(path, log.start).split(closing, 1)[0]
