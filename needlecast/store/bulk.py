"""Fast multi-row writes for the hot paths (imports, ledger enqueue).

SQLAlchemy's per-parameter processing costs more than SQLite's own insert when a million rows go in, so
these helpers build one plain statement and hand DBAPI-ready tuples to `cursor.executemany`, or COPY text
to PostgreSQL. Values are converted here, once per distinct value where they repeat, by column type and
dialect: aware datetimes become UTC (naive ISO text in SQLite's SQLAlchemy format), JSON becomes text,
booleans stay booleans (sqlite3 stores them as 0/1; COPY gets t/f).

Contract: `bulk_insert(conn, table, rows, on_conflict_do_nothing=keys)` inserts every row (dicts with the
same keys) and ignores rows that conflict on `keys` when given. `prepare_rows` + `insert_prepared` split a
plain insert in two: making the rows ready touches no connection (another thread may be writing), sending
them does. `insert_columns(conn, table, columns, keys)` inserts data held column-wise, where a column may
be one value for every row, and returns how many rows were new. All run inside the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, Table

from needlecast.store.contact_search import indexed_after
from needlecast.store.driver import marker, postgres_int_array, postgres_time, sqlite_time
from needlecast.store.types import UtcDateTime


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _converters(dialect: str, table: Table, columns: Sequence[str]) -> list[Callable[[Any], Any] | None]:
    converters: list[Callable[[Any], Any] | None] = []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, UtcDateTime):
            converters.append(sqlite_time if dialect == "sqlite" else postgres_time)
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
    pick = itemgetter(*columns)
    tuples = list(map(pick, rows)) if len(columns) > 1 else [(pick(row),) for row in rows]
    bulk_insert_rows(conn, table, columns, tuples, on_conflict_do_nothing=on_conflict_do_nothing)


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
    if not on_conflict_do_nothing:
        insert_prepared(conn, prepare_rows(conn.dialect.name, table, columns, rows))
        return
    rows = _converted_rows(conn.dialect.name, table, columns, rows)
    conn.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([marker(conn)] * len(columns))}) "
        f"ON CONFLICT ({', '.join(on_conflict_do_nothing)}) DO NOTHING",
        rows,
    )


@dataclass(frozen=True)
class PreparedRows:
    """Rows for one table, ready for the driver (see `prepare_rows`): COPY text for PostgreSQL, converted
    tuples for SQLite's executemany."""

    table: str
    columns: tuple[str, ...]
    copy_text: str = ""
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def prepare_rows(dialect: str, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> PreparedRows:
    """`rows` (tuples in the order of `columns`) made ready for `insert_prepared` on `dialect`'s database.

    Touches no connection, so a batch can be prepared while another thread writes the one before. For
    PostgreSQL the COPY text is made a column at a time (psycopg's `write_row` formats value by value in
    Python, and was a third of a million-contact import).
    """
    if dialect != "postgresql":
        return PreparedRows(table.name, tuple(columns), rows=_converted_rows(dialect, table, columns, rows))
    fields = []
    for values, convert in zip(zip(*rows, strict=True), _converters(dialect, table, columns), strict=True):
        fields.append(_copy_column(list(values) if convert is None else _converted(values, convert)))
    text = "\n".join(map("\t".join, zip(*fields, strict=True))) + "\n" if rows else ""
    return PreparedRows(table.name, tuple(columns), copy_text=text)


def insert_prepared(conn: Connection, prepared: PreparedRows) -> None:
    """Insert rows made by `prepare_rows`: COPY ... FROM STDIN on PostgreSQL (several times faster than
    executemany), one executemany on SQLite."""
    if prepared.copy_text:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {prepared.table} ({', '.join(prepared.columns)}) FROM STDIN") as copy:
            copy.write(prepared.copy_text)
    elif prepared.rows:
        given = prepared.columns.index("id") if "id" in prepared.columns else None
        ids = [row[given] for row in prepared.rows] if given is not None else None
        with indexed_after(conn, prepared.table, ids):  # SQLite's trigram index of new contacts: once a batch
            conn.exec_driver_sql(
                f"INSERT INTO {prepared.table} ({', '.join(prepared.columns)}) "
                f"VALUES ({', '.join([marker(conn)] * len(prepared.columns))})",
                prepared.rows,
            )


def _converted_rows(
    dialect: str, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """The rows with the values of the columns that need it converted for the driver. Column by column:
    transposing and converting only those columns costs a fraction of a generator per row (a million-row
    import has four such columns of fifteen)."""
    converters = _converters(dialect, table, columns)
    if all(convert is None for convert in converters):
        return list(rows)
    values = [list(column) for column in zip(*rows, strict=True)]
    for index, convert in enumerate(converters):
        if convert is not None:
            values[index] = _converted(values[index], convert)
    return list(zip(*values, strict=True))


def _converted(values: Sequence[Any], convert: Callable[[Any], Any]) -> list[Any]:
    """`convert` applied to each value, once per distinct value when they are hashable (a few timestamps)."""
    try:
        distinct = {value: convert(value) for value in set(values)}
    except TypeError:  # JSON documents
        return [convert(value) for value in values]
    return [distinct[value] for value in values]


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: Any) -> str:
    """One value in COPY's text format: NULL as \\N, booleans as t/f, special characters escaped."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value).translate(_COPY_ESCAPES)


def _copy_column(values: list[Any]) -> list[str]:
    """A column's values as COPY text fields, by the quickest way its values allow."""
    kinds = set(map(type, values))
    if kinds == {str}:
        joined = "".join(values)
        if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
            return [v.translate(_COPY_ESCAPES) for v in values]
        return values
    if kinds == {int}:
        return list(map(str, values))
    try:
        distinct = {value: _copy_field(value) for value in set(values)}  # booleans, a few timestamps...
    except TypeError:  # unhashable values
        return list(map(_copy_field, values))
    return [distinct[value] for value in values]


def _postgres_array(values: list[Any]) -> Any:
    """A column of integers as the text of an array literal (joined in C: psycopg adapts a list element by
    element in Python); other values as the list."""
    if values and all(type(v) is int for v in values):
        return postgres_int_array(values)
    return values


Column = Sequence[Any] | str | int | datetime | None  # a list (one value per row), or one value for every row


def insert_columns(
    conn: Connection,
    table: Table,
    columns: dict[str, Column],
    on_conflict_do_nothing: Sequence[str],
    *,
    chunk: int = 100_000,
    wrap: Callable[[str], str] | None = None,
) -> int:
    """Insert rows given column-wise and return how many were new (conflicts on the keys are ignored; with
    no keys, a plain INSERT, and a duplicate key raises).

    A column given as a list has one value per row (all lists the same length); any other value is the same
    for every row and is bound once. The rows travel as ONE parameter per chunk: a JSON array of the varying
    values on SQLite (`json_each`), one array per varying column on PostgreSQL (`unnest`), so the database,
    not Python, makes a million rows out of them.

    `wrap` turns each INSERT statement into the statement run: on PostgreSQL, typically a WITH around it
    that writes the new rows elsewhere too (`ledger.enqueue_columns`); the wrapped statement must return one
    row whose first column is how many rows the INSERT added.
    """
    varying = [name for name, value in columns.items() if isinstance(value, list | tuple)]
    if not varying:
        raise ValueError("insert_columns needs at least one column given as a list")
    total = len(columns[varying[0]])  # type: ignore[arg-type]
    if any(len(columns[name]) != total for name in varying):  # type: ignore[arg-type]
        raise ValueError("every list column must have one value per row")
    converters = dict(zip(columns, _converters(conn.dialect.name, table, list(columns)), strict=True))
    constants = {name: value for name, value in columns.items() if name not in varying}
    constant_params = []
    for name, value in constants.items():
        convert = converters[name]
        constant_params.append(value if convert is None else convert(value))
    m = marker(conn)
    conflict = f" ON CONFLICT ({', '.join(on_conflict_do_nothing)}) DO NOTHING" if on_conflict_do_nothing else ""
    inserted = 0
    if conn.dialect.name == "sqlite":
        picks = [f"j.value ->> {index}" for index in range(len(varying))]
        sql = (
            f"INSERT INTO {table.name} ({', '.join([*constants, *varying])}) "
            f"SELECT {', '.join([*([m] * len(constants)), *picks])} FROM json_each({m}) AS j "
            f"WHERE true{conflict}"
        )  # WHERE: SQLite's upsert-after-SELECT rule
    else:
        names = [f"c{index}" for index in range(len(varying))]
        casts = [f"CAST({m} AS {table.c[name].type.compile(dialect=conn.dialect)})" for name in constants]
        arrays = [f"{m}::{table.c[name].type.compile(dialect=conn.dialect)}[]" for name in varying]
        sql = (
            f"INSERT INTO {table.name} ({', '.join([*constants, *varying])}) "
            f"SELECT {', '.join([*casts, *names])} FROM unnest({', '.join(arrays)}) AS u({', '.join(names)})"
            f"{conflict}"
        )
    if wrap is not None:
        sql = wrap(sql)
    for start in range(0, total, chunk):
        parts = []
        for name in varying:
            values = columns[name][start : start + chunk]  # type: ignore[index]
            convert = converters[name]
            parts.append(list(values) if convert is None else _converted(values, convert))
        if conn.dialect.name == "sqlite":
            params: tuple[Any, ...] = (*constant_params, json.dumps(list(zip(*parts, strict=True))))
        else:
            params = (*constant_params, *map(_postgres_array, parts))
        result = conn.exec_driver_sql(sql, params)
        inserted += int(result.scalar_one()) if wrap is not None else int(result.rowcount)
    return inserted
