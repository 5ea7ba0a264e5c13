"""The contact list's SQL (`store.contact_search`) on SQLite and PostgreSQL: a part of a name or address in
any case, a segment's members passed as one value, sources, the order of pages whichever way a page is found,
adding a tag once, and suppressing by hash."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, event, make_url, select, update
from sqlalchemy import text as sql

from needlecast.audience.importer import import_file
from needlecast.audience.suppression import erase
from needlecast.config import open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.store import contact_search
from needlecast.store.contact_search import ContactQuery
from needlecast.store.engine import _alembic_config, current_revision, head_revision, make_engine, open_store, upgrade
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


def test_many_matches_are_paged_by_walking_the_order_not_by_sorting_every_contact(
    store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When many match, a page is found by walking `ix_contacts_signed_up` newest first and stopping after the
    page. PostgreSQL's planner guesses that almost nothing matches a concern (a condition on an expression has
    no statistics) and would read and sort every contact instead; the page's plan, taken as it runs, must be
    the index walk with no sort on either database."""
    monkeypatch.setattr(contact_search, "FEW", 1)  # "many": the page is found in the index's order
    plans: list[str] = []

    def explain(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        if "ORDER BY" in statement and "LIMIT" in statement and not statement.startswith("EXPLAIN"):
            prefix = "EXPLAIN QUERY PLAN " if store.dialect.name == "sqlite" else "EXPLAIN "
            cursor.execute(prefix + statement, parameters)  # type: ignore[attr-defined]
            plans.append("\n".join(str(row[-1]) for row in cursor.fetchall()))  # type: ignore[attr-defined]

    query = ContactQuery(concern="acne", consent="marketing")
    people = _everyone(store)
    wanted = [
        i
        for i in _newest_first(people)
        if any(int(p["id"]) == i and "acne" in str(p["concerns"]).split(";") for p in people)  # type: ignore[call-overload]
    ]
    event.listen(store, "before_cursor_execute", explain)
    try:
        with store.connect() as conn:
            total, page = contact_search.find(conn, query, 0, 3)
            assert contact_search.count(conn, query) == total
            matching = set(contact_search.ids(conn, query))
    finally:
        event.remove(store, "before_cursor_execute", explain)
    assert total > 3 and page == [i for i in wanted if i in matching][:3]
    assert len(plans) == 1, plans
    assert "ix_contacts_signed_up" in plans[0] and "SORT" not in plans[0].upper(), plans[0]


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


# Names and addresses where a trigram index and SQLite's LIKE could part ways: letters beyond ASCII in either
# case, a dotted capital I (whose lower case is two characters), a sharp s, the Kelvin sign (which folds to
# "k"), quotes, LIKE's own wildcards, an emoji, a name with a space of its own and an apostrophe.
ODD_PEOPLE = (
    ("jürgen.öz@example.de", "Jürgen", "ÖZDEMIR"),
    ("istanbul@example.tr", "İlkay", "Işık"),
    ("strasse@example.de", "Grüß", "STRAßE"),
    ("kelvin@example.org", "\u212aelvin", "Temperature"),
    ("quote@example.org", 'Say "hi"', "O'Brien"),
    ("wild_card%@example.org", "100%", "a_b"),
    ("smile@example.org", "Ana😀Lu", "Ünal"),
    ("two.words@example.org", "Mary Ann", "van der Berg"),
)
SEARCHES = (
    "Jürgen",
    "jürg",
    "JÜRGEN",
    "özdemir",
    "ÖZDEM",
    "İlk",
    "ilk",
    "IŞIK",
    "ışı",
    "grüß",
    "STRASSE",
    "straße",
    "kelvin",
    "\u212aelv",
    '"hi"',
    'say "',
    "o'bri",
    "100%",
    "0%",
    "a_b",
    "d_c",
    "card%@",
    "a😀L",
    "😀",
    "ry Ann van",
    "Mary Ann",
    "ann van der",
    "Ann v",
    "n v",
    "ab",
    "Mü",
    "@EXAMPLE.",
    "example.de",
    "müller",
    "kaia müll",
    "zzz-nobody",
)


def _add_odd_people(engine: Engine) -> dict[str, int]:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for email, first, last in ODD_PEOPLE:
            conn.execute(
                contacts.insert().values(
                    email=email,
                    email_hash=f"hash-{email}",
                    first_name=first,
                    last_name=last,
                    attributes={},
                    signed_up_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
    return {str(p["email"]): int(p["id"]) for p in _everyone(engine)}  # type: ignore[call-overload]


def _found_both_ways(
    engine: Engine, text: str, monkeypatch: pytest.MonkeyPatch, *, asked: list[str] | None = None
) -> tuple[set[int], set[int]]:
    """The ids a search finds through the trigram table (SQLite) and by the LIKE alone; `asked` receives the
    statements of the first search."""

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if asked is not None:
            asked.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        with engine.connect() as conn:
            indexed = set(contact_search.ids(conn, ContactQuery(text=text)))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    with monkeypatch.context() as scan:
        scan.setattr(contact_search, "trigram_query", lambda _variants: None)
        with engine.connect() as conn:
            scanned = set(contact_search.ids(conn, ContactQuery(text=text)))
    return indexed, scanned


def test_the_trigram_index_finds_exactly_what_the_like_finds(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _add_odd_people(store)
    for text in SEARCHES:
        asked: list[str] = []
        indexed, scanned = _found_both_ways(store, text, monkeypatch, asked=asked)
        assert indexed == scanned, text
        if store.dialect.name == "sqlite":  # the index is asked exactly when the text has a word of 3 letters
            used = any("contacts_search MATCH" in statement for statement in asked)
            assert used == any(len(w) >= 3 for w in text.split(" ")), text
    # the searches find someone: the comparison is not between empty sets
    assert _found_both_ways(store, "jürg", monkeypatch)[0] == {ids["jürgen.öz@example.de"]}
    assert _found_both_ways(store, "ann van der", monkeypatch)[0] == {ids["two.words@example.org"]}


def test_an_update_and_an_erasure_are_reflected_by_the_index(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _add_odd_people(store)
    with store.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.id == ids["smile@example.org"]).values(first_name="Zelda"))
    assert _found_both_ways(store, "Ana😀Lu", monkeypatch) == (set(), set())
    assert _found_both_ways(store, "zeld", monkeypatch) == ({ids["smile@example.org"]},) * 2
    with store.begin() as conn:  # an update of another column leaves the index as it is
        conn.execute(update(contacts).where(contacts.c.id == ids["smile@example.org"]).values(tags="vip"))
    assert _found_both_ways(store, "zeld", monkeypatch) == ({ids["smile@example.org"]},) * 2

    with store.begin() as conn:
        assert erase(conn, "jürgen.öz@example.de")
    for text in ("Jürgen", "ÖZDEMIR", "jürgen.öz"):
        assert _found_both_ways(store, text, monkeypatch) == (set(), set()), text
    if store.dialect.name == "sqlite":  # nothing of the erased person stays in the trigram table
        with store.begin() as conn:
            conn.execute(sql("CREATE VIRTUAL TABLE temp.terms USING fts5vocab(main, contacts_search, instance)"))
            erased = conn.execute(
                sql("SELECT count(*) FROM temp.terms WHERE doc = :id"), {"id": ids["jürgen.öz@example.de"]}
            )
            assert erased.scalar() == 0
            kept = conn.execute(
                sql("SELECT count(*) FROM temp.terms WHERE doc = :id"), {"id": ids["smile@example.org"]}
            )
            assert kept.scalar() > 0
            structure = conn.execute(sql("SELECT count(*) FROM contacts_search_data")).scalar()
            # the index against the contacts themselves (rank 1: FTS5 compares it with the content table)
            conn.execute(sql("INSERT INTO contacts_search(contacts_search, rank) VALUES ('integrity-check', 1)"))
            assert structure


@pytest.mark.database_independent  # SQLite alone: its trigram table (migration 0023); PostgreSQL's are indexes
def test_the_trigram_table_holds_no_copy_of_the_contacts(store: Engine) -> None:
    assert store.dialect.name == "sqlite"
    with store.connect() as conn:
        tables = set(conn.execute(sql("SELECT name FROM sqlite_master WHERE name LIKE 'contacts_search%'")).scalars())
        assert "contacts_search_content" not in tables  # external content: the index only
        assert {"contacts_search", "contacts_search_data", "contacts_search_idx"} <= tables
        # the import's batches were indexed after each statement, and the trigger is back for later inserts
        assert conn.execute(sql("SELECT deferred FROM contacts_search_state")).scalar() == 0
        conn.execute(sql("INSERT INTO contacts_search(contacts_search, rank) VALUES ('integrity-check', 1)"))
        indexed = conn.execute(sql("SELECT count(*) FROM contacts_search WHERE contacts_search MATCH 'example'"))
        everyone = conn.execute(sql("SELECT count(*) FROM contacts WHERE email LIKE '%example%'"))
        assert indexed.scalar() == everyone.scalar() > 0
    _add_odd_people(store)  # one by one: by the trigger
    with store.connect() as conn:
        conn.execute(sql("INSERT INTO contacts_search(contacts_search, rank) VALUES ('integrity-check', 1)"))


def test_the_upgrade_indexes_the_contacts_already_stored_and_the_downgrade_removes_the_index(
    blank_store_url: str, workspace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0023: a store at 0022 with contacts gets its trigram table filled from them (SQLite; nothing
    on PostgreSQL), searches the same after it, and a downgrade leaves no table or trigger behind."""
    engine = make_engine(blank_store_url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0022")
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", blank_store_url)
    workspace = open_workspace(workspace_dir)
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    before = {text: _found_both_ways(engine, text, monkeypatch)[1] for text in ("müll", "Kaia Mü", "@EXAMPLE.NET")}
    assert all(before.values())
    upgrade(engine)
    engine.dispose()  # connections that looked for the table before it existed
    for text, found in before.items():
        assert _found_both_ways(engine, text, monkeypatch) == (found, found), text
    searched = "SELECT count(*) FROM sqlite_master WHERE name LIKE 'contacts_search%'"
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(sql(searched)).scalar()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0022")
    engine.dispose()
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.execute(sql(searched)).scalar() == 0
    for text, found in before.items():
        assert _found_both_ways(engine, text, monkeypatch) == (found, found), text
    engine.dispose()
