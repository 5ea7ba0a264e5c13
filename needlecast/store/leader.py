"""The leader lock: one scheduler leads per store (DESIGN.md invariant 4).

PostgreSQL: a session-level advisory lock on a connection of its own, so it goes the moment the leader's
connection dies; the session's TCP keepalives are set from `takeover_seconds`, so that the server notices a
leader whose machine vanished without closing its connection. The lock is the store's own: its key is
needlecast's namespace and a checksum of the schema the store lives in, so stores in two schemas of one
database (two clinics, or two test runs) each have a leader. SQLite (one machine): an `flock` on a file
beside the database, which the kernel releases when the process dies.

Contract: `acquire()` takes the lock without waiting (True when taken); `held()` says whether it is still
ours (on PostgreSQL, whether its session answers); `release()` lets it go (a dead session lost it anyway).
"""

from __future__ import annotations

import fcntl
import os
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

_LOCK_NAMESPACE = 0x6E656564  # "need": the first half of the advisory lock's key on PostgreSQL


def _lock_key(conn: Connection) -> tuple[int, int]:
    """(namespace, this store's schema as a signed 32-bit checksum): the two-part advisory lock key."""
    schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
    checksum = zlib.crc32(schema.encode())
    return _LOCK_NAMESPACE, checksum - (1 << 32) if checksum >= 1 << 31 else checksum


class SenderLock:
    """The leader lock: one scheduler leads per store. A PostgreSQL advisory lock (held by a session, so it
    goes the moment the leader's connection dies), or an flock on a file beside the SQLite database.

    `takeover_seconds` tunes how fast the server notices a leader whose machine vanished without closing
    its connection (TCP keepalives on the lock's session); a killed process's connection closes at once."""

    def __init__(self, engine: Engine, takeover_seconds: float = 15.0) -> None:
        self.engine = engine
        self.takeover_seconds = takeover_seconds
        self._conn: Connection | None = None
        self._key: tuple[int, int] = (_LOCK_NAMESPACE, 0)
        self._file: Any = None

    def acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            conn = self.engine.connect()
            idle = max(1, int(self.takeover_seconds / 3))
            interval = max(1, int(self.takeover_seconds / 6))
            for setting, value in (("idle", idle), ("interval", interval), ("count", 3)):
                conn.execute(text(f"SET tcp_keepalives_{setting} = {int(value)}"))
            key = _lock_key(conn)
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:a, :b)"), {"a": key[0], "b": key[1]}).scalar())
            conn.commit()
            if got:
                self._conn, self._key = conn, key
            else:
                conn.close()
            return got
        database = self.engine.url.database or ":memory:"
        path = Path(f"{database}.scheduler.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a+")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            return False
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return True

    def held(self) -> bool:
        """Whether the lock is still ours: on PostgreSQL, whether its session still answers."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                self._conn.commit()
            except SQLAlchemyError:
                return False
            return True
        return self._file is not None

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), {"a": self._key[0], "b": self._key[1]})
                self._conn.commit()
                self._conn.close()
            except SQLAlchemyError:
                pass  # the session is gone, and the lock with it
            self._conn = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
