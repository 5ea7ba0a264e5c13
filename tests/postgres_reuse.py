"""The suite's PostgreSQL databases used again instead of dropped (conftest's `empty_store`).

Why: each test database was created from the session's template and dropped after its test; on ext4 the server
then spent most of its time creating and unlinking the few hundred files of each database (its catalogs and
every table and index), and every drop forced a checkpoint. A database whose test has ended is now emptied and
handed to the next test instead, when it can be proved to be as the template left it:

- its connections are ended, and it is renamed (which PostgreSQL refuses while anyone is connected), so that
  nothing the old test left running (a thread, a process) can reach it under the name it knew;
- its schema (tables, columns, defaults, indexes, constraints, functions, triggers, schemas, extensions,
  settings) has the template's fingerprint; any difference and it is dropped as before;
- the planner has no statistics of it that the template's database did not have (no ANALYZE ran on it);
- every table the test wrote to is emptied by TRUNCATE (new empty files: to the planner the table is again one
  never analyzed and without a page), the template's own rows are written back (the schema version, the
  store's meta row), and every sequence is set back to where the template had it.

A database that fails any of these is dropped (conftest's `_Dropper`), never reused.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

_SYSTEM = "('pg_catalog', 'information_schema', 'pg_toast')"
_USER_NAMESPACE = (
    f"n.nspname NOT IN {_SYSTEM} AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%'"
)

# One digest of everything a test could have changed in a database's schema (names, types, defaults, indexes,
# constraints, functions and their source, triggers, schemas, extensions and the database's own settings).
FINGERPRINT = f"""
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')) FROM (
  SELECT 'rel ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || ' ' || coalesce((
      SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text
                        || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ', ' ORDER BY a.attnum)
      FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '') AS item
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_NAMESPACE}
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_NAMESPACE}
  UNION ALL
  SELECT 'constraint ' || k.conrelid::regclass::text || ' ' || k.conname || ' ' || pg_get_constraintdef(k.oid)
    FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE {_USER_NAMESPACE}
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_USER_NAMESPACE}
  UNION ALL
  SELECT 'trigger ' || t.tgrelid::regclass::text || ' ' || t.tgname || ' ' || t.tgenabled::text
    FROM pg_trigger t WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'schema ' || n.nspname FROM pg_namespace n WHERE {_USER_NAMESPACE}
  UNION ALL
  SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension
  UNION ALL
  SELECT 'setting ' || array_to_string(setconfig, ',') FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
) everything
"""


@dataclass(frozen=True)
class TemplateState:
    """What a reused database must be brought back to: the template's schema digest, the rows the template
    itself holds (as JSON, by table), and where each of its sequences stands."""

    fingerprint: str
    rows: dict[str, str]
    sequences: tuple[tuple[str, int, int | None], ...]  # (qualified name, start value, last value or None)


def _raw(conn: Connection, sql: str) -> list[tuple[Any, ...]]:
    """`sql` run as written, by the driver itself (SQLAlchemy would pass it parameters, and psycopg would then
    read the `%` of a LIKE, or of the template's rows, as a placeholder); several statements at once allowed."""
    with conn.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def template_state(url: str) -> TemplateState:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            fingerprint = str(_raw(conn, FINGERPRINT)[0][0])
            rows = {}
            for (table,) in _raw(conn, WRITTEN):  # only a table with a page can hold a row
                found = _raw(conn, f"SELECT json_agg(t)::text FROM {table} t")[0][0]
                if found is not None:
                    rows[str(table)] = str(found)
            sequences = tuple(
                (str(name), int(start), None if last is None else int(last))
                for name, start, last in _raw(
                    conn,
                    "SELECT format('%I.%I', schemaname, sequencename), start_value, last_value FROM pg_sequences"
                    f" WHERE schemaname NOT IN {_SYSTEM} ORDER BY 1",
                )
            )
        return TemplateState(fingerprint, rows, sequences)
    finally:
        engine.dispose()


def _dollar(value: str) -> str:
    tag = "$rows$"
    assert tag not in value
    return f"{tag}{value}{tag}"


# The tables a test wrote to (a table never written has no page), and whether the planner has statistics the
# template's database did not have (an ANALYZE, by autovacuum or a test): such a database is not reused, since a
# test of a query plan must meet the planner as it meets a new database.
WRITTEN = f"""
SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
WHERE schemaname NOT IN {_SYSTEM} AND pg_relation_size(format('%I.%I', schemaname, tablename)) > 0
ORDER BY 1
"""
ANALYZED = f"""
SELECT EXISTS (SELECT 1 FROM pg_statistic s JOIN pg_class c ON c.oid = s.starelid
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_USER_NAMESPACE})
    OR EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE {_USER_NAMESPACE} AND c.relkind = 'r' AND c.reltuples >= 0)
"""


def reset_statements(state: TemplateState, written: list[str]) -> str:
    """One script that empties the tables a test wrote to (TRUNCATE: new empty files, so the planner sees them as
    it sees the template's, never analyzed and without a page), writes the template's rows back and sets every
    sequence back."""
    # The store's own triggers stay still meanwhile (one empties `email_summaries` when `events` is emptied,
    # which a TRUNCATE of both in one statement refuses): the session replicates, as a restore does.
    lines = ["SET LOCAL session_replication_role = replica;"]
    lines += [f"TRUNCATE {', '.join(written)} CASCADE;"] if written else []
    lines += [
        f"INSERT INTO {table} SELECT * FROM json_populate_recordset(NULL::{table}, {_dollar(rows)});"
        for table, rows in state.rows.items()
    ]
    lines += [
        f"SELECT setval('{name}', {start}, false);" if last is None else f"SELECT setval('{name}', {last}, true);"
        for name, start, last in state.sequences
    ]
    return "\n".join(lines)


class ReusedDatabases:
    """This process's emptied test databases, ready for the next test (see the module docstring)."""

    def __init__(self) -> None:
        self.free: list[str] = []
        self._state: TemplateState | None = None

    def know_template(self, url: str) -> None:
        self._state = template_state(url)

    def take(self) -> str | None:
        return self.free.pop() if self.free else None

    def give_back(self, admin: Engine, base: str, name: str) -> str | None:
        """Empty the database `name` and keep it, under a new name, for the next test: None. Or, when it cannot be
        reused (somebody still connected, a schema unlike the template's, any error), the name under which the
        caller must drop it."""
        if self._state is None:
            return name
        renamed = f"t_{uuid.uuid4().hex[:12]}"
        try:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{name}" RENAME TO "{renamed}"'))
        except SQLAlchemyError:
            return name  # still in use: dropped (with FORCE) instead
        engine = create_engine(make_url(base).set(database=renamed), poolclass=NullPool)
        try:
            with engine.begin() as conn:
                if _raw(conn, FINGERPRINT)[0][0] != self._state.fingerprint:
                    return renamed  # a test changed the schema
                if _raw(conn, ANALYZED)[0][0]:
                    return renamed  # the planner knows more of it than of a new database
                written = [str(row[0]) for row in _raw(conn, WRITTEN)]
                _raw(conn, reset_statements(self._state, written))
        except (SQLAlchemyError, psycopg.Error):  # the driver's own, from `_raw`
            return renamed
        finally:
            engine.dispose()
        self.free.append(renamed)
        return None
