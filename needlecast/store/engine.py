"""Engines from URLs, and schema migrations.

Contract:
- Engines hide SQL parameters in their errors, so no log line or message quotes an address or a name.
- `open_store(url)` returns an Engine for SQLite (a file; WAL, foreign keys, a busy timeout) or PostgreSQL
  (psycopg 3). A fresh, empty database is migrated to the newest schema on first open; a database at an
  older schema is refused with the command that upgrades it (schema changes are a deliberate step).
- `upgrade(engine)` applies every pending Alembic migration (`needlecast db upgrade`).
- Opening a store does not import Alembic: the newest revision is `HEAD_REVISION` (a test holds it equal to the
  migrations' own head) and the database's is read from `alembic_version`. Alembic, Mako and Pygments cost every
  process that opens a store about 0.15 s of CPU at start, and only `upgrade` needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from needlecast.errors import ConfigurationError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"

# The newest migration in migrations/versions: a new migration moves it (tests/test_cli_flows.py checks that
# Alembic's own head agrees).
HEAD_REVISION = "0023"


def _alembic_config() -> Config:
    from alembic.config import Config  # only when migrating (see the module contract)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest schema revision this needlecast knows."""
    return HEAD_REVISION


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for a database Alembic never migrated."""
    return _stored_revision(engine) if inspect(engine).has_table("alembic_version") else None


def _stored_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def upgrade(engine: Engine) -> str:
    """Apply pending migrations; return the revision now in place."""
    from alembic import command  # only when migrating (see the module contract)

    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return head_revision()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Bulk imports and enqueues insert a million random keys into unique indexes: with the 2 MB default
    # page cache that is mostly I/O. 128 MB is an upper bound, only used as the database grows.
    cursor.execute("PRAGMA cache_size=-131072")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An Engine for `url` (no schema check). `postgresql://` URLs use psycopg 3."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        if url.startswith("sqlite"):
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # hide_parameters: a failing statement's message never quotes its values (addresses, names).
            engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=40, hide_parameters=True)
    except (ArgumentError, NoSuchModuleError) as err:
        raise ConfigurationError(
            f"cannot use database URL {_redact(url)}: {err}. Expected sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST:PORT/DB (install the 'postgres' extra for PostgreSQL)."
        ) from err


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    return url


def open_store(url: str, *, auto_create: bool = True) -> Engine:
    """An Engine at the newest schema (see the module contract)."""
    engine = make_engine(url)
    try:
        tables = inspect(engine).get_table_names()
        revision = _stored_revision(engine) if "alembic_version" in tables else None
        has_tables = bool(tables)
    except OperationalError as err:
        raise ConfigurationError(f"cannot connect to the database {_redact(url)}: {err.orig}") from err
    if revision == head_revision():
        return engine
    if revision is None and not has_tables and auto_create:
        upgrade(engine)
        return engine
    raise ConfigurationError(
        f"the database {_redact(url)} is at schema revision {revision or 'none'}, this needlecast needs "
        f"{head_revision()}. Back it up, then run: needlecast db upgrade"
    )
