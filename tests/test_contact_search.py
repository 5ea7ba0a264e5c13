"""The contact list's SQL (`store.contact_search`) on SQLite and PostgreSQL: a part of a name or address in
any case, a segment's members passed as one value, sources, the order of pages whichever way a page is found,
adding a tag once, and suppressing by hash."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, select
from sqlalchemy import text as sql

from needlecast.audience.importer import import_file
from needlecast.config import open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.store import contact_search
from needlecast.store.contact_search import ContactQuery
from needlecast.store.engine import current_revision, head_revision, open_store
from needlecast.store.schema import contacts, suppressions
from tests.conftest import empty_store


@pytest.fixture()
def store(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    workspace = open_workspace(workspace_dir)
    engine = open_store(store_url)
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    yield engine
    engine.dispose()


def _everyone(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(contacts)).mappings()]


def _newest_first(people: list[dict[str, object]]) -> list[int]:
    return [int(p["id"]) for p in sorted(people, key=lambda p: (p["signed_up_at"], p["id"]), reverse=True)]  # type: ignore[arg-type,call-overload,return-value]


def test_a_part_of_a_name_or_an_address_matches_in_any_ascii_case(store: Engine) -> None:
    people = _everyone(store)
    for text in ("MÜLLER", "müll", "Kaia Mü", "@EXAMPLE.NET", "100%", "a_b"):
        wanted = {
            int(p["id"])  # type: ignore[call-overload]
            for p in people
            if text.lower() in f"{p['first_name']} {p['last_name']}".lower() or text.lower() in str(p["email"])
        }
        with store.connect() as conn:
            assert set(contact_search.ids(conn, ContactQuery(text=text))) == wanted, text


def test_members_sources_and_both_ways_of_finding_a_page_agree(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    people = _everyone(store)
    members = [int(p["id"]) for p in people][::3]  # type: ignore[call-overload]
    expected = [i for i in _newest_first(people) if i in set(members)]
    for few in (10_000, 5):  # all sorted here, or walked in the index's order
        monkeypatch.setattr(contact_search, "FEW", few)
        with store.connect() as conn:
            total, page = contact_search.find(conn, ContactQuery(member_ids=members), 10, 20)
            assert (total, page) == (len(members), expected[10:30]), few
            imported = contact_search.count(conn, ContactQuery(source="import:sample.csv"))
            assert contact_search.count(conn, ContactQuery(source="nowhere")) == 0
    assert 0 < imported <= len(people)
    with store.connect() as conn:
        assert "import:sample.csv" in contact_search.sources(conn)
        shown = contact_search.details(conn, expected[:3])
    assert [r["id"] for r in shown] == expected[:3]
    assert all(r["source"] == "import:sample.csv" and r["last_activity"] is not None for r in shown)


def test_a_tag_is_added_once_and_suppression_keeps_the_first_reason(store: Engine) -> None:
    now = datetime.now(UTC)
    query = ContactQuery(concern="acne")
    with store.begin() as conn:
        acne = set(contact_search.ids(conn, query))
        assert contact_search.add_tag(conn, query, "spring", now) == len(acne)
        assert contact_search.add_tag(conn, query, "spring", now + timedelta(seconds=1)) == 0
        tagged = {
            int(i) for i, tags in conn.execute(select(contacts.c.id, contacts.c.tags)) if "spring" in tags.split(";")
        }
        hashes = contact_search.hashes(conn, ContactQuery(chosen_ids=sorted(acne)[:3]))
        assert contact_search.suppress_hashes(conn, hashes, "manual", "console (test)", now) == 3
        assert contact_search.suppress_hashes(conn, hashes, "complaint", "test", now) == 0
        reasons = set(conn.execute(select(suppressions.c.reason)).scalars())
        assert contact_search.count(conn, ContactQuery(suppressed=True)) == 3
    assert tagged == acne and reasons == {"manual"}


@pytest.mark.postgres
def test_without_pg_trgm_the_store_migrates_and_the_search_finds_the_same_contacts_by_a_scan(
    workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server where the migrating role may not create the `pg_trgm` extension (a managed server, a role
    without the right: here a role that may create tables but not extensions) still migrates, says why in the
    log, and finds by a part of a name exactly what an indexed store finds."""
    with empty_store("postgres", tmp_path, migrated=False) as owner_url:
        database = make_url(owner_url).database
        role = f"plain_{database}"
        admin = create_engine(owner_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sql(f'CREATE ROLE "{role}" LOGIN'))
            conn.execute(sql(f'REVOKE CREATE ON DATABASE "{database}" FROM PUBLIC'))
            conn.execute(sql(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"'))
            conn.execute(sql(f'GRANT ALL ON SCHEMA public TO "{role}"'))
        try:
            url = make_url(owner_url).set(username=role).render_as_string(hide_password=False)
            monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
            with caplog.at_level(logging.WARNING, logger="needlecast.migrations"):
                engine = open_store(url)
            assert "pg_trgm is not available" in caplog.text
            with engine.connect() as conn:
                found = conn.execute(sql("SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%trgm%'")).scalar()
                assert found == 0 and current_revision(engine) == head_revision()
            workspace = open_workspace(workspace_dir)
            import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
            people = _everyone(engine)
            for part in ("müll", "Kaia Mü", "@EXAMPLE.NET"):
                wanted = {
                    int(p["id"])  # type: ignore[call-overload]
                    for p in people
                    if part.lower() in f"{p['first_name']} {p['last_name']}".lower() or part.lower() in str(p["email"])
                }
                assert wanted, part  # the sample has someone to find
                with engine.connect() as conn:
                    assert set(contact_search.ids(conn, ContactQuery(text=part))) == wanted, part
            engine.dispose()
        finally:
            with admin.connect() as conn:  # the role's objects and rights go, then the role (roles are the server's)
                conn.execute(sql(f'DROP OWNED BY "{role}" CASCADE'))
                conn.execute(sql(f'DROP ROLE "{role}"'))
            admin.dispose()
