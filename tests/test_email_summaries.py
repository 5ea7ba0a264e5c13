"""Each email's summary of its events (`email_summaries`, kept by triggers on `events`: migration 0020) against
the events themselves, on SQLite and PostgreSQL.

Hypothesis generates events for a few ledger rows (and some for no row, or a row that does not exist), of
every kind, at any moment, opens marked a machine's or not, and writes them in shuffled batches, each batch by
one of the ways events reach the table: the webhook's `ingest` (repeats ignored by provider event id), the
bulk path (`bulk_insert`: COPY on PostgreSQL), `insert_columns` (one INSERT ... SELECT per chunk, repeats
ignored) and a plain executemany; then it deletes and changes some of them. Whatever the order and the
split, every summary row must equal what the events stored say of that email (counted here, in Python), and
the report figures read from the summaries (`store.reports.email_groups`) must equal the one definition
computed from the raw events email by email (`statistics.engagement.delivery_flags`).

The upgrade to 0020 fills the summaries from the events already stored; two transactions adding events to
one email at once both count (PostgreSQL, with threads).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, select, text, update

from needlecast.statistics.engagement import delivery_flags, ledger_and_events
from needlecast.store import reports as sql
from needlecast.store.bulk import bulk_insert, insert_columns
from needlecast.store.engine import _alembic_config, make_engine, open_store, upgrade
from needlecast.store.schema import deliveries, email_summaries, events
from needlecast.tracking.events import MACHINE_OPEN, parse_sendgrid
from needlecast.tracking.webhook import ingest
from tests.conftest import empty_store

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EMAILS = 5  # ledger rows 1..5 (the fifth still queued); events may also name row 9, which does not exist
WEBHOOK = {  # kind -> the SendGrid item that the webhook stores as that kind
    "delivered": {"event": "delivered"},
    "deferred": {"event": "deferred"},
    "bounced": {"event": "bounce", "type": "bounce"},
    "blocked": {"event": "bounce", "type": "blocked"},
    "dropped": {"event": "dropped"},
    "opened": {"event": "open"},
    "clicked": {"event": "click", "url": "https://clinic.example/book"},
    "unsubscribed": {"event": "unsubscribe"},
    "group_unsubscribed": {"event": "group_unsubscribe"},
    "complained": {"event": "spamreport"},
    "accepted": {"event": "processed"},
}
KINDS = sorted(WEBHOOK)
WAYS = ("webhook", "bulk", "columns", "rows")


@dataclass(frozen=True)
class Happening:
    email: int | None  # the ledger row it names (None: an event without our delivery id)
    kind: str
    seconds: float  # after BASE (the webhook keeps whole seconds)
    machine: bool  # an open SendGrid marks `sg_machine_open`
    twice: bool  # sent again later (a webhook retry; a second insert of the same provider event id)


happenings = st.lists(
    st.builds(
        Happening,
        email=st.sampled_from([1, 2, 3, 4, 5, 9, None]),
        kind=st.sampled_from(KINDS),
        seconds=st.sampled_from([-5.0, 0.0, 3.0, 9.5, 10.0, 11.0, 600.25, 86_400.0]),
        machine=st.booleans(),
        twice=st.booleans(),
    ),
    max_size=30,
)


def ledger(engine: Engine, outcomes: list[str]) -> None:
    """Rows 1..EMAILS (two campaigns; the last queued, not sent), sent at BASE, with these outcomes; the tables
    emptied first (deleting the events empties their summaries)."""
    with engine.begin() as conn:
        conn.execute(delete(events))
        conn.execute(delete(deliveries))
        for i in range(1, EMAILS + 1):
            conn.execute(
                insert(deliveries).values(
                    id=i,
                    campaign_id=f"c{i % 2}",
                    step_id="only",
                    contact_id=i,
                    segment="everyone",
                    variant="acne",
                    arm="",
                    status="sent" if i < EMAILS else "queued",
                    due_at=BASE,
                    claim_token="",
                    sent_at=BASE if i < EMAILS else None,
                    message_id=f"m{i}",
                    error="",
                    attempts=1,
                    created_at=BASE,
                    updated_at=BASE,
                    outcome=outcomes[i - 1],
                    timing="",
                    request_id="",
                )
            )


def row_of(n: int, happening: Happening) -> dict[str, Any]:
    return {
        "provider_event_id": f"e{n}",
        "kind": happening.kind,
        "delivery_id": happening.email,
        "campaign_id": "c",
        "step_id": "only",
        "message_id": "",
        "email_hash": "",
        "occurred_at": BASE + timedelta(seconds=happening.seconds),
        "received_at": BASE,
        "detail": MACHINE_OPEN if happening.machine and happening.kind == "opened" else "",
        "raw": {},
    }


def item_of(n: int, happening: Happening) -> dict[str, Any]:
    item: dict[str, Any] = {
        **WEBHOOK[happening.kind],
        "email": "p@example.com",
        "timestamp": int((BASE + timedelta(seconds=happening.seconds)).timestamp()),
        "sg_event_id": f"e{n}",
        "campaign": "c",
        "step": "only",
    }
    if happening.email is not None:
        item["delivery_id"] = str(happening.email)
    if happening.machine and happening.kind == "opened":
        item["sg_machine_open"] = True
    return item


def write(engine: Engine, batch: list[tuple[int, Happening]], way: str) -> None:
    """One batch of events, by one of the ways events are written (see the module docstring)."""
    if way == "webhook":
        ingest(engine, parse_sendgrid(json.dumps([item_of(n, h) for n, h in batch]).encode()))
        return
    rows = [row_of(n, h) for n, h in batch]
    with engine.begin() as conn:
        if way == "bulk":  # COPY on PostgreSQL: repeats of stored events are left out first, as the webhook does
            stored = set(conn.execute(select(events.c.provider_event_id)).scalars())
            fresh = {r["provider_event_id"]: r for r in rows if r["provider_event_id"] not in stored}
            bulk_insert(conn, events, list(fresh.values()))
        elif way == "columns":
            columns = {name: [r[name] for r in rows] for name in rows[0] if name != "raw"}
            insert_columns(conn, events, {**columns, "raw": {}}, ("provider_event_id",))
        else:
            stored = set(conn.execute(select(events.c.provider_event_id)).scalars())
            fresh = {r["provider_event_id"]: r for r in rows if r["provider_event_id"] not in stored}
            if fresh:
                conn.execute(insert(events), list(fresh.values()))


def store(engine: Engine, generated: list[Happening], order: random.Random) -> None:
    """The events in shuffled batches, each written one way; the repeated ones again in a later batch."""
    numbered = list(enumerate(generated))
    again = [(n, h) for n, h in numbered if h.twice]
    order.shuffle(numbered)
    batches: list[list[tuple[int, Happening]]] = []
    while numbered:
        size = order.randint(1, 6)
        batches.append(numbered[:size])
        numbered = numbered[size:]
    if again:
        batches.append(again)
    for batch in batches:
        write(engine, batch, order.choice(WAYS))


def summed_up(engine: Engine) -> dict[int, tuple[int, datetime | None, datetime | None, int, int]]:
    """Each email's summary counted here from the events stored: the bits of its kinds, its first delivered
    event, its last open not marked a machine's, its opens and its clicks."""
    with engine.connect() as conn:
        stored = conn.execute(select(events.c.delivery_id, events.c.kind, events.c.occurred_at, events.c.detail))
        found: dict[int, tuple[int, datetime | None, datetime | None, int, int]] = {}
        for delivery, kind, moment, detail in stored:
            if delivery is None or kind not in sql.KIND_BITS:
                continue
            seen, arrived, human, opens, clicks = found.get(delivery, (0, None, None, 0, 0))
            if kind == "delivered":
                arrived = moment if arrived is None else min(arrived, moment)
            if kind == "opened" and detail != MACHINE_OPEN:
                human = moment if human is None else max(human, moment)
            found[delivery] = (
                seen | sql.KIND_BITS[kind],
                arrived,
                human,
                opens + (kind == "opened"),
                clicks + (kind == "clicked"),
            )
    return found


def summaries(engine: Engine) -> dict[int, tuple[int, datetime | None, datetime | None, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(email_summaries))
        return {r.delivery_id: (r.seen, r.delivered_at, r.human_open_at, r.opens, r.clicks) for r in rows}


def figures_agree(engine: Engine) -> None:
    """The report's counts from the summaries (`email_groups`, per campaign) against the one definition
    applied to the raw events, email by email (`delivery_flags`)."""
    with engine.connect() as conn:
        counted = sql.email_groups(conn, [(0, 0)])
    found = counted.groupby("campaign_id")[list(sql.COUNTS)].sum()
    ledger_rows, stored = ledger_and_events(engine, None, None)
    flags = delivery_flags(ledger_rows, stored)
    flags = flags[flags["sent"]].assign(emails=1)
    wanted = flags.groupby("campaign_id")[list(sql.COUNTS)].sum().astype("int64")
    pd.testing.assert_frame_equal(found.sort_index(), wanted.sort_index(), check_dtype=False, check_names=False)


def agree(engine: Engine) -> None:
    assert summaries(engine) == summed_up(engine)
    figures_agree(engine)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    generated=happenings,
    outcomes=st.lists(st.sampled_from(["", "delivered", "bounced", "dropped", "deferred"]), min_size=5, max_size=5),
    seed=st.integers(0, 10_000),
    removed=st.sets(st.integers(0, 29), max_size=4),
    changed=st.sets(st.integers(0, 29), max_size=3),
)
def test_every_summary_is_what_its_events_say_whatever_their_order_and_way_in(
    engine: Engine,
    generated: list[Happening],
    outcomes: list[str],
    seed: int,
    removed: set[int],
    changed: set[int],
) -> None:
    ledger(engine, outcomes)
    store(engine, generated, random.Random(seed))
    agree(engine)
    with engine.begin() as conn:  # needlecast never deletes or changes an event; the summary follows if one does
        conn.execute(delete(events).where(events.c.provider_event_id.in_([f"e{n}" for n in removed])))
        conn.execute(
            update(events)
            .where(events.c.provider_event_id.in_([f"e{n}" for n in changed]))
            .values(kind="clicked", delivery_id=2)
        )
    agree(engine)


def test_a_bounce_after_a_delivery_and_an_open_before_it_count_as_in_order(engine: Engine) -> None:
    """The named cases, fixed: an email delivered, then bounced (hard and soft), counts one hard bounce and no
    delivery; an open that arrives before its delivered event, 30 s after it, is a person's."""
    ledger(engine, [""] * EMAILS)
    late = [
        Happening(1, "delivered", 0, False, False),
        Happening(1, "blocked", 60, False, False),
        Happening(1, "bounced", 30, False, True),
        Happening(2, "opened", 30, False, False),
        Happening(2, "opened", 5, True, False),
        Happening(2, "delivered", 0, False, False),
    ]
    for n, happening in enumerate(late):
        write(engine, [(n, happening)], "webhook")
    write(engine, [(2, late[2])], "webhook")  # a retry of the hard bounce
    agree(engine)
    with engine.connect() as conn:
        counted = sql.email_groups(conn, [(0, 0)])[list(sql.COUNTS)].sum()
    assert (counted["bounced_hard"], counted["bounced_soft"], counted["delivered"]) == (1, 0, 1)
    assert (counted["opened"], counted["opened_human"], counted["opens"]) == (1, 1, 2)


@pytest.fixture()
def before_summaries(blank_store_url: str) -> Iterator[Engine]:
    """A store at revision 0019, the one before the summaries."""
    engine = make_engine(blank_store_url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0019")
    yield engine
    engine.dispose()


def test_the_upgrade_sums_up_the_events_already_stored_and_the_triggers_take_over(before_summaries: Engine) -> None:
    ledger(before_summaries, ["", "bounced", "", "", ""])
    generated = [
        Happening(e, kind, seconds, machine, False)
        for e in (1, 2, 3, 9, None)
        for kind, seconds, machine in [
            ("opened", 3, False),
            ("delivered", 600.25, False),
            ("opened", 11, True),
            ("clicked", 700, False),
            ("opened", 86_400, False),
            ("delivered", 0, False),
            ("blocked", 9.5, False),
            ("deferred", -5, False),
        ]
    ]
    write(before_summaries, list(enumerate(generated)), "rows")
    upgrade(before_summaries)
    filled = summaries(before_summaries)
    assert filled == summed_up(before_summaries) and set(filled) == {1, 2, 3, 9}
    figures_agree(before_summaries)
    write(
        before_summaries,
        [(100, Happening(4, "opened", 20, False, False)), (101, Happening(1, "bounced", 1, False, False))],
        "webhook",
    )
    agree(before_summaries)
    config = _alembic_config()
    with before_summaries.begin() as conn:  # down and up again: the same rows
        config.attributes["connection"] = conn
        command.downgrade(config, "0019")
    # No trigger now: the upgrade counts it.
    write(before_summaries, [(102, Happening(3, "clicked", 20, False, False))], "rows")
    upgrade(before_summaries)
    agree(before_summaries)


@pytest.fixture()
def postgres_engine(tmp_path: Path) -> Iterator[Engine]:
    with empty_store("postgres", tmp_path) as url:
        engine = open_store(url)
        yield engine
        engine.dispose()


@pytest.mark.postgres
def test_webhook_posts_for_the_same_emails_at_once_lose_no_event(postgres_engine: Engine) -> None:
    """Eight threads post their batches at once, each touching the same three emails: every open, click and
    first delivery counts (an upsert that wrote its own counts over the other's would lose some)."""
    ledger(postgres_engine, [""] * EMAILS)
    threads, rounds = 8, 5
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def post(thread: int) -> None:
        try:
            start.wait()
            for round_ in range(rounds):
                batch = [
                    (
                        1000 * thread + 10 * round_ + i,
                        Happening(email, kind, float(thread * 60 + round_ + i), thread % 2 == 0, False),
                    )
                    for i, (email, kind) in enumerate(
                        [(1, "opened"), (2, "clicked"), (3, "opened"), (2, "opened"), (1 + thread % 3, "delivered")]
                    )
                ]
                write(postgres_engine, batch, "webhook")
        except BaseException as failure:  # reported by the main thread
            failures.append(failure)

    workers = [threading.Thread(target=post, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not failures
    found = summaries(postgres_engine)
    assert found == summed_up(postgres_engine)
    assert [found[e][3] for e in (1, 2, 3)] == [threads * rounds, threads * rounds, threads * rounds]
    assert found[2][4] == threads * rounds
    figures_agree(postgres_engine)


@pytest.mark.postgres
def test_a_second_transaction_waits_for_the_first_and_adds_to_its_row(postgres_engine: Engine) -> None:
    """The first transaction adds an email's first event (its summary row, not yet committed); the second adds
    another to the same email and waits for it; once the first commits, the second adds to the row it wrote."""
    ledger(postgres_engine, [""] * EMAILS)
    first = postgres_engine.connect()
    first.begin()
    first.execute(insert(events), [row_of(1, Happening(1, "opened", 30, False, False))])
    waiting_pid: list[int] = []
    ready, done = threading.Event(), threading.Event()

    def second() -> None:
        with postgres_engine.begin() as conn:
            waiting_pid.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
            ready.set()
            conn.execute(insert(events), [row_of(2, Happening(1, "clicked", 40, False, False))])
        done.set()

    worker = threading.Thread(target=second)
    worker.start()
    assert ready.wait(timeout=60)
    blocked, deadline = False, time.monotonic() + 60
    with postgres_engine.connect() as watcher:  # until the second transaction waits on the first's row
        while not blocked and time.monotonic() < deadline:
            blocked = (
                watcher.execute(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": waiting_pid[0]}
                ).scalar()
                == "Lock"
            )
            watcher.rollback()  # a fresh snapshot of the server's activity each time
    assert blocked and not done.is_set()
    first.commit()
    first.close()
    worker.join()
    assert summaries(postgres_engine)[1] == (16 | 32, None, BASE + timedelta(seconds=30), 1, 1)
    agree(postgres_engine)


def test_fractions_of_a_second_at_the_limits_count_as_the_definition_says(engine: Engine) -> None:
    """SQLite reads a time to the millisecond: a sending or an event a fraction of a millisecond before a whole
    second must still count on its own second. An open 10.0004 s after its arrival is a person's, one 10 s
    after is not (arrivals just before a whole second, and before and at a minute's 50th second); an email
    sent at 23:59:59.9996 is sent on its day, not the next."""
    ledger(engine, [""] * EMAILS)
    cases = [
        Happening(1, "delivered", 0.9996, False, False),
        Happening(1, "opened", 11.0, False, False),
        Happening(2, "delivered", 0.9996, False, False),
        Happening(2, "opened", 10.9996, False, False),
        Happening(3, "delivered", 49.9996, False, False),
        Happening(3, "opened", 60.0, False, False),
        Happening(4, "delivered", 50.0, False, False),
        Happening(4, "opened", 60.0, False, False),
    ]
    write(engine, list(enumerate(cases)), "rows")
    late = BASE.replace(hour=23, minute=59, second=59, microsecond=999_600)
    with engine.begin() as conn:
        conn.execute(update(deliveries).where(deliveries.c.id == 4).values(sent_at=late))
    agree(engine)
    with engine.connect() as conn:
        counted = sql.email_groups(conn, [(0, 0)])
    assert int(counted["opened_human"].sum()) == 2  # emails 1 and 3
    assert set(counted["day"]) == {float((BASE.date() - datetime(1970, 1, 1).date()).days)}
