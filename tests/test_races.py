"""Requests that race on one unique key, over real HTTP to uvicorn on loopback, on SQLite and PostgreSQL: a
dozen threads released together by a barrier create one address, add one suppression, store one event,
reserve one idempotency key or add one account. One row results, every request gets its normal answer,
and on PostgreSQL the server's own log gets no unique violation and no address (`tests.server_log`).
Also: events for an erased address are dropped and counted, never stored."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import Engine, event, func, select

from needlecast.accounts.roles import cli_actor
from needlecast.actions import contacts as contacts_actions
from needlecast.actions.users import add_user
from needlecast.addresses import email_hash
from needlecast.audience.signup import take_received
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import InvalidRequest
from needlecast.store.helpers import hash_key, insert_new
from needlecast.store.schema import (
    ab_decisions,
    audit_log,
    consent_events,
    contact_events,
    contact_lists,
    contacts,
    idempotency_keys,
    signup_requests,
    suppressions,
    users,
)
from tests.console_site import ConsoleSite, site
from tests.server_log import ServerLog, watch_server_log

T = TypeVar("T")
RACERS = 12


MEETINGS: list[threading.Barrier] = []  # the `meeting_before` barriers in use: a failing racer breaks them


def race(count: int, attempt: Callable[[int], T]) -> list[T]:
    """`attempt(0)` ... `attempt(count - 1)`, each on its own thread, all released at once by a barrier.
    A racer's error is raised as it is (the others, left waiting at a barrier, are let go at once)."""
    start = threading.Barrier(count)

    def run(index: int) -> T:
        try:
            start.wait(timeout=60)
            return attempt(index)
        except BaseException:
            for barrier in [start, *MEETINGS]:
                barrier.abort()
            raise

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(run, index) for index in range(count)]
        errors = [error for future in futures if (error := future.exception()) is not None]
    first = next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), None)
    if first is not None or errors:
        raise first or errors[0]
    return [future.result() for future in futures]


@contextlib.contextmanager
def meeting_before(engine: Engine, statement: str, parties: int) -> Iterator[None]:
    """Hold each of `parties` threads before its first statement that starts with `statement` until all are
    there: by then each has made its reads, the widest window a check-then-write race can have."""
    meet = threading.Barrier(parties)
    met = threading.local()

    def hold(*args: object) -> None:
        text = str(args[2]).lstrip().upper()
        if text.startswith(statement.upper()) and not getattr(met, "done", False):
            met.done = True
            meet.wait(timeout=60)

    event.listen(engine, "before_cursor_execute", hold)
    MEETINGS.append(meet)
    try:
        yield
    finally:
        MEETINGS.remove(meet)
        event.remove(engine, "before_cursor_execute", hold)


def clients(api: ConsoleSite, count: int) -> list[httpx.Client]:
    """One API client (one connection) per racer."""
    key = api.key()
    return [api.api(key) for _ in range(count)]


@contextlib.contextmanager
def server_log(engine: Engine) -> Iterator[ServerLog | None]:
    """On PostgreSQL, what the server logs during the block (see `tests.server_log`); on SQLite there is no
    server, and nothing to watch (None)."""
    if engine.dialect.name != "postgresql":
        yield None
        return
    with watch_server_log(engine) as log:
        yield log


def assert_quiet(log: ServerLog | None, *secrets: str) -> None:
    """The server logged none of `secrets` (addresses) and no unique violation from our connections."""
    if log is None:
        return
    assert log.pids, "no connection of the app was watched"
    leaked = [s for s in secrets if s.lower() in log.text.lower()]
    assert leaked == [], f"the server's log {log.path} quotes {leaked}"
    violations = [line for line in log.lines_of_ours() if "duplicate key" in line or "unique constraint" in line]
    assert violations == [], violations


def count(engine: Engine, table: object, *where: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


@pytest.fixture()
def api(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(
        workspace_dir, store_url, import_sample=False, settings="\n[signup]\nper_address_per_hour = 100\n"
    ) as running:
        yield running


def test_concurrent_creates_of_one_address_make_one_contact_and_every_request_its_answer(api: ConsoleSite) -> None:
    address = f"race.{uuid.uuid4().hex[:10]}@example.org"
    racers = clients(api, RACERS)
    consent = {"granted": True, "source": "crm:race", "wording_version": "marketing-v1"}

    def create(index: int) -> httpx.Response:
        body = {"email": address, "tags": [f"t{index}"], "lists": ["race"], "marketing_consent": consent}
        return racers[index].post("/contacts", json=body)

    with server_log(api.engine) as log:
        answers = race(RACERS, create)
    assert Counter(a.status_code for a in answers) == {200: RACERS}, [a.text for a in answers if a.status_code != 200]
    assert len({a.json()["id"] for a in answers}) == 1
    contact_id = answers[0].json()["id"]
    assert count(api.engine, contacts, contacts.c.email == address) == 1
    with api.engine.connect() as conn:
        tags = conn.execute(select(contacts.c.tags).where(contacts.c.id == contact_id)).scalar_one()
    assert sorted(tags.split(";")) == sorted(f"t{i}" for i in range(RACERS))  # no update was lost
    assert count(api.engine, contact_lists, contact_lists.c.contact_id == contact_id) == 1
    assert count(api.engine, consent_events, consent_events.c.contact_id == contact_id) == 1  # granted once
    with api.engine.connect() as conn:
        details = conn.execute(select(audit_log.c.detail).where(audit_log.c.action == "contact.upserted")).scalars()
        assert Counter('"created": true' in d for d in details) == {True: 1, False: RACERS - 1}
    assert_quiet(log, address)


def test_concurrent_signups_of_one_new_address_make_one_pending_contact(api: ConsoleSite) -> None:
    address = f"signup.{uuid.uuid4().hex[:10]}@example.org"
    form = {"email": address, "first_name": "Nia", "marketing_consent": "yes", "form": "website"}
    racers = [api.client() for _ in range(9)]
    settings = api.workspace.settings.signup

    def take_one(_index: int) -> int:  # the signup job's step, run by nine senders at once
        with api.engine.begin() as conn:
            return take_received(conn, settings, datetime.now(UTC), 1)

    with server_log(api.engine) as log:
        answers = race(9, lambda index: racers[index].post("/subscribe", json=form))
        taken = race(9, take_one)
    assert Counter(a.status_code for a in answers) == {200: 9}, [a.text for a in answers if a.status_code != 200]
    assert sum(taken) == 9  # each submission taken once
    assert count(api.engine, contacts, contacts.c.email == address) == 1
    assert count(api.engine, signup_requests) == 9
    assert count(api.engine, consent_events, consent_events.c.action == "pending") == 1
    assert_quiet(log, address)


def test_concurrent_writes_on_one_suppression_event_or_idempotency_key_store_one_row_and_answer_each(
    api: ConsoleSite,
) -> None:
    address = f"other.{uuid.uuid4().hex[:10]}@example.org"
    racers = clients(api, RACERS)
    event = {"id": f"bk-{uuid.uuid4().hex[:8]}", "email": address, "type": "booked", "occurred_at": "2026-12-01T10:00Z"}
    suppression = {"email": address, "reason": "manual"}
    with server_log(api.engine) as log:
        suppressed = race(RACERS, lambda i: racers[i].post("/suppressions", json=suppression))
        stored = race(RACERS, lambda i: racers[i].post("/events", json={"events": [event]}))
        keyed = race(
            RACERS,
            lambda i: racers[i].post("/contacts", json={"email": address}, headers={"Idempotency-Key": "race-1"}),
        )
    assert [a.status_code for a in suppressed] == [200] * RACERS
    assert Counter(a.json()["suppressed"] for a in suppressed) == {True: 1, False: RACERS - 1}
    with api.engine.connect() as conn:
        hashed = email_hash(hash_key(conn), address)
    assert count(api.engine, suppressions, suppressions.c.email_hash == hashed) == 1

    assert [a.status_code for a in stored] == [200] * RACERS
    assert Counter((a.json()["stored"], a.json()["duplicates"]) for a in stored) == {(1, 0): 1, (0, 1): RACERS - 1}
    assert count(api.engine, contact_events, contact_events.c.source_id == event["id"]) == 1

    # One is done; a twin is told it is still being done (409) or, once it is answered, gets the answer.
    statuses = Counter(a.status_code for a in keyed)
    assert set(statuses) <= {200, 409} and statuses[200] >= 1, [a.text for a in keyed]
    assert Counter(a.headers.get("idempotent-replayed") for a in keyed if a.status_code == 200)[None] == 1
    assert count(api.engine, idempotency_keys, idempotency_keys.c.key == "race-1") == 1
    assert count(api.engine, audit_log, audit_log.c.action == "contact.upserted") == 1
    assert_quiet(log, address)


def test_concurrent_additions_of_one_account_add_one_and_refuse_the_others_by_name(store_url: str) -> None:
    from needlecast.store.engine import open_store

    engine = open_store(store_url)
    address = f"staff.{uuid.uuid4().hex[:10]}@clinic.example"

    def add(_index: int) -> int | str:
        try:
            return add_user(engine, cli_actor(), address, "marketer", "a long enough test password")
        except InvalidRequest as err:
            return str(err)

    try:
        with server_log(engine) as log:
            outcomes = race(6, add)
        added = [o for o in outcomes if isinstance(o, int)]
        assert len(added) == 1, outcomes
        assert all("already an account" in str(o) for o in outcomes if not isinstance(o, int))
        assert count(engine, users, users.c.email == address) == 1
        assert_quiet(log, address)
    finally:
        engine.dispose()


def test_concurrent_confirmations_of_one_signup_record_its_consents_once(store_url: str, workspace_dir: Path) -> None:
    from needlecast.audience.signup import SignupForm, apply_confirmation, request_signup
    from needlecast.config import open_workspace
    from needlecast.store.engine import open_store

    engine = open_store(store_url)
    settings = open_workspace(workspace_dir).settings.signup
    form = SignupForm("lead@example.org", "Nia", ("acne",), True, True, "website", "hash-of-network-address")
    try:
        with engine.begin() as conn:
            signup = request_signup(conn, form, settings, datetime.now(UTC))
        assert signup is not None and signup.send_confirmation

        def confirm(_index: int) -> bool:
            with engine.begin() as conn:
                return apply_confirmation(conn, signup.contact_id, signup.request_id, datetime.now(UTC))

        with meeting_before(engine, "UPDATE signup_requests", 8):
            assert Counter(race(8, confirm)) == {True: 1, False: 7}
        granted = consent_events.c.action == "granted"
        assert count(engine, consent_events, consent_events.c.contact_id == signup.contact_id, granted) == 2
    finally:
        engine.dispose()


def test_concurrent_redemptions_of_one_double_opt_in_token_record_the_consent_once(
    store_url: str, vocabulary: Vocabulary
) -> None:
    from needlecast.audience.consent import confirm, start_double_opt_in
    from needlecast.audience.contacts import ContactUpdate, upsert_contact
    from needlecast.store.engine import open_store

    engine = open_store(store_url)
    secret = b"a test secret of enough length"
    try:
        with engine.begin() as conn:
            contact_id, _ = upsert_contact(conn, ContactUpdate("xia@example.org"), vocabulary, datetime.now(UTC))
            token = start_double_opt_in(conn, contact_id, secret, source="form")

        def redeem(_index: int) -> int:
            with engine.begin() as conn:
                return confirm(conn, token, secret)

        with meeting_before(engine, "UPDATE contacts", 8):
            assert race(8, redeem) == [contact_id] * 8
        granted = consent_events.c.action == "granted"
        assert count(engine, consent_events, consent_events.c.contact_id == contact_id, granted) == 1
    finally:
        engine.dispose()


def test_concurrent_inserts_of_one_key_in_the_store_make_one_row_and_no_unique_violation(store_url: str) -> None:
    """The store's one-statement check-and-insert (`insert_new`), which every path above and the A/B
    winner's decision (a send started from the console racing the scheduler) rely on."""
    from needlecast.store.engine import open_store

    engine = open_store(store_url)
    decision = {"step_id": "s", "winner": "A", "rule": "r", "metric": "opens", "figures": "{}"}
    campaign = f"race-{uuid.uuid4().hex[:8]}"

    def decide(_index: int) -> object:
        with engine.begin() as conn:
            row = {**decision, "campaign_id": campaign, "decided_at": datetime.now(UTC)}
            return insert_new(conn, ab_decisions, row, ab_decisions.c.campaign_id)

    try:
        with server_log(engine) as log:
            outcomes = race(8, decide)
        assert Counter(o is None for o in outcomes) == {False: 1, True: 7}, outcomes
        assert count(engine, ab_decisions, ab_decisions.c.campaign_id == campaign) == 1
        assert_quiet(log, campaign)
    finally:
        engine.dispose()


def test_events_for_an_erased_address_are_dropped_and_counted_never_stored(api: ConsoleSite) -> None:
    client = api.api(api.key())
    erased, kept = "gone@example.org", "here@example.org"
    for address in (erased, kept):
        assert client.post("/contacts", json={"email": address}).status_code == 200
    contacts_actions.erase_contact(api.engine, cli_actor(), erased)
    when = datetime(2026, 12, 1, 10, tzinfo=UTC).isoformat()
    batch = [
        {"id": "e-1", "email": erased, "type": "booked", "occurred_at": when},
        {"id": "e-2", "email": kept, "type": "booked", "occurred_at": when},
        {"id": "e-3", "email": "GONE@example.org", "type": "attended", "occurred_at": when},
    ]
    answer = client.post("/events", json={"events": batch})
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()[k] for k in ("stored", "duplicates", "dropped")} == {
        "stored": 1,
        "duplicates": 0,
        "dropped": 2,
    }
    with api.engine.connect() as conn:
        assert list(conn.execute(select(contact_events.c.source_id)).scalars()) == ["e-2"]
        hashed = email_hash(hash_key(conn), erased)
    assert count(api.engine, contact_events, contact_events.c.email_hash == hashed) == 0
    assert client.post("/events", json={"events": batch}).json()["dropped"] == 2  # a retry is dropped again
