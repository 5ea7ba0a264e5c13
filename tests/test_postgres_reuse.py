"""The suite's reuse of PostgreSQL test databases (tests/postgres_reuse.py, through conftest's `empty_store`): a
database is handed to the next test only as the template left it, and never while anyone can still reach it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from tests.conftest import _REUSED, PG_SKIP, _admin, empty_store, postgres_url

pytestmark = pytest.mark.postgres

IMPORT = (
    "INSERT INTO imports (source_name, list_name, status, rows_read, inserted, updated, duplicates, rejected, error,"
    " started_at) VALUES ('sheet.csv', '', 'completed', 1, 1, 0, 0, 0, '', now()) RETURNING id"
)


@pytest.fixture(autouse=True)
def _server() -> None:
    if not postgres_url():
        pytest.skip(PG_SKIP)


def _counts(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            listed = conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = [str(row[0]) for row in listed]
            counted = {table: conn.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar() for table in tables}
            return {table: int(count or 0) for table, count in counted.items()}
    finally:
        engine.dispose()


def _exists(name: str) -> bool:
    admin = _admin(str(postgres_url()))
    try:
        with admin.connect() as conn:
            return bool(conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar())
    finally:
        admin.dispose()


def test_a_used_database_comes_back_emptied_and_renamed_with_the_templates_rows_and_sequences(tmp_path: Path) -> None:
    with empty_store("postgres", tmp_path) as first:
        template_counts = _counts(first)
        assert template_counts["meta"] > 0  # the template's own rows, which must come back
        engine = create_engine(first, poolclass=NullPool)
        with engine.begin() as conn:
            first_id = conn.exec_driver_sql(IMPORT).scalar()
            conn.exec_driver_sql(IMPORT)
            conn.exec_driver_sql("DELETE FROM meta")
        stray = engine.connect()  # left open, as by an engine a test forgot
        stray.exec_driver_sql("SELECT 1")
        used = str(make_url(first).database)
    assert not _exists(used)  # renamed: nothing left running can reach it under the name it knew
    kept = _REUSED.free[-1]
    assert kept != used and _exists(kept)
    with pytest.raises(OperationalError):
        stray.exec_driver_sql("SELECT 1")  # its connection was ended
    engine.dispose()
    with empty_store("postgres", tmp_path) as second:
        assert make_url(second).database == kept  # handed to the next test
        assert _counts(second) == template_counts
        engine = create_engine(second, poolclass=NullPool)
        with engine.begin() as conn:
            assert conn.exec_driver_sql(IMPORT).scalar() == first_id  # the sequence set back
        engine.dispose()


def test_a_database_whose_schema_a_test_changed_is_dropped_not_reused(tmp_path: Path) -> None:
    with empty_store("postgres", tmp_path) as url:
        free = list(_REUSED.free)
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE imports ADD COLUMN colour text")
        engine.dispose()
    assert _REUSED.free == free  # nothing handed back
    assert not _exists(str(make_url(url).database))


def test_a_database_the_planner_has_statistics_of_is_dropped_not_reused(tmp_path: Path) -> None:
    """A test of a query plan must meet the planner as it meets a new database: never analyzed."""
    with empty_store("postgres", tmp_path) as url:
        free = list(_REUSED.free)
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql(IMPORT)
            conn.exec_driver_sql("ANALYZE imports")
        engine.dispose()
    assert _REUSED.free == free
    assert not _exists(str(make_url(url).database))


def test_a_table_written_to_is_given_back_without_a_page(tmp_path: Path) -> None:
    with empty_store("postgres", tmp_path) as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql(IMPORT)  # one row: under autovacuum's threshold, so nothing analyzes it meanwhile
            conn.exec_driver_sql("DELETE FROM imports")  # no row left, but a page the planner would count
            assert conn.exec_driver_sql("SELECT pg_relation_size('imports')").scalar()
        engine.dispose()
    kept = _REUSED.free[-1]
    with empty_store("postgres", tmp_path) as again:
        assert make_url(again).database == kept
        engine = create_engine(again, poolclass=NullPool)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT pg_relation_size('imports')").scalar() == 0
            assert conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'imports'").scalar() < 0
        engine.dispose()


def test_a_database_whose_events_filled_the_summaries_by_trigger_is_reused(tmp_path: Path) -> None:
    """The store's triggers (an event fills `email_summaries`; emptying `events` empties the summaries) stay
    still while a database is emptied: both tables emptied in one statement, the database reused."""
    event = (
        "INSERT INTO events (provider_event_id, kind, delivery_id, campaign_id, step_id, message_id, email_hash,"
        " occurred_at, received_at, detail, raw) VALUES ('e1', 'opened', 7, 'c', 's', 'm', 'h', now(), now(), '',"
        " '{}')"
    )
    with empty_store("postgres", tmp_path) as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql(event)
            assert conn.exec_driver_sql("SELECT count(*) FROM email_summaries").scalar() == 1  # by the trigger
        engine.dispose()
    kept = _REUSED.free[-1]
    with empty_store("postgres", tmp_path) as again:
        assert make_url(again).database == kept
        counts = _counts(again)
        assert counts["events"] == counts["email_summaries"] == 0
