"""Parameters for plain driver statements on the hot paths (bulk writes, claiming and marking the ledger).

SQLAlchemy's per-parameter processing costs more than the database's own work when a million rows pass, so
the hot paths hand plain SQL and DBAPI-ready values to the driver. This module owns the two places where
SQLite and PostgreSQL differ for them:

- Timestamps: aware datetimes go in as UTC; SQLite gets SQLAlchemy's naive ISO text
  (`YYYY-MM-DD HH:MM:SS.ffffff`, which sorts and compares as text), PostgreSQL an aware datetime.
- A list of ids is bound as ONE parameter, whatever its length: `IN (SELECT value FROM json_each(?))` on
  SQLite, `= ANY(%s)` (an array) on PostgreSQL. No statement grows with the list and no driver limit on
  the number of parameters is ever reached.

Contract: `marker(conn)` is the driver's positional placeholder; `ids_in(conn, column)` is a condition on
`column` that takes `ids_value(conn, ids)` as its one parameter; `time_value(conn, moment)` converts an aware
datetime (or None).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection


@lru_cache(maxsize=65536)  # imports and enqueues repeat the same few timestamps a million times
def sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: needlecast stores only timezone-aware datetimes")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def postgres_time(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: needlecast stores only timezone-aware datetimes")
    return None if value is None else value.astimezone(UTC)


def is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def marker(conn: Connection) -> str:
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def time_value(conn: Connection, value: datetime | None) -> Any:
    return sqlite_time(value) if is_sqlite(conn) else postgres_time(value)


def ids_in(conn: Connection, column: str) -> str:
    """`column` is one of the ids bound as the next parameter (see `ids_value`)."""
    if is_sqlite(conn):
        return f"{column} IN (SELECT value FROM json_each(?))"
    return f"{column} = ANY(%s)"


def ids_value(conn: Connection, ids: Iterable[int]) -> Any:
    values = [int(i) for i in ids]
    return json.dumps(values) if is_sqlite(conn) else values
