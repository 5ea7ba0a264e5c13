"""Fast multi-row writes for the hot paths (imports, ledger enqueue).

SQLAlchemy's per-parameter processing costs more than SQLite's own insert when a million rows go in, so
these helpers build one plain statement and hand DBAPI-ready tuples to `cursor.executemany`. Values are
converted here, once, by column type and dialect: aware datetimes become UTC (naive ISO text in SQLite's
SQLAlchemy format), JSON becomes text, booleans stay booleans (sqlite3 stores them as 0/1).

Contract: `bulk_insert(conn, table, rows, on_conflict_do_nothing=keys)` inserts every row (dicts with the
same keys) and ignores rows that conflict on `keys` when given. It runs inside the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Connection, Table

from needlecast.store.types import UtcDateTime


@lru_cache(maxsize=65536)  # imports and enqueues repeat the same few timestamps a million times
def _sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _postgres_time(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _converters(conn: Connection, table: Table, columns: Sequence[str]) -> list[Callable[[Any], Any] | None]:
    sqlite = conn.dialect.name == "sqlite"
    converters: list[Callable[[Any], Any] | None] = []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, UtcDateTime):
            converters.append(_sqlite_time if sqlite else _postgres_time)
        elif isinstance(column_type, JSON):
            converters.append(_json)
        else:
            converters.append(None)
    return converters


def bulk_insert(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    on_conflict_do_nothing: Sequence[str] | None = None,
) -> None:
    """Insert `rows` (dicts with the same keys) with one executemany (see the module contract)."""
    if not rows:
        return
    columns = list(rows[0])
    bulk_insert_rows(conn, table, columns, [tuple(row[c] for c in columns) for row in rows],
                     on_conflict_do_nothing=on_conflict_do_nothing)


def bulk_insert_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    on_conflict_do_nothing: Sequence[str] | None = None,
) -> None:
    """`bulk_insert` for tuples in the order of `columns`."""
    if not rows:
        return
    converters = _converters(conn, table, columns)
    if any(f is not None for f in converters):
        rows = [tuple(v if f is None else f(v) for v, f in zip(row, converters, strict=True)) for row in rows]
    if conn.dialect.name == "postgresql" and not on_conflict_do_nothing:
        _copy_postgres(conn, table, list(columns), rows)
        return
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
           f"VALUES ({', '.join([marker] * len(columns))})")
    if on_conflict_do_nothing:
        sql += f" ON CONFLICT ({', '.join(on_conflict_do_nothing)}) DO NOTHING"
    conn.exec_driver_sql(sql, list(rows))


def _copy_postgres(conn: Connection, table: Table, columns: list[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY ... FROM STDIN: PostgreSQL's bulk path, several times faster than executemany."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
