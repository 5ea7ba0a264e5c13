"""The ledger's queue and the store's bulk writes, on SQLite and PostgreSQL (the `engine` fixture).

Every `queued` row is listed in exactly one queue entry and no other row is: these tests move rows through
every transition that touches `queued` and check that invariant after each one.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, insert, select, update

from needlecast import ledger
from needlecast.store.bulk import bulk_insert
from needlecast.store.delivery import delivery_store
from needlecast.store.driver import ids_from_text
from needlecast.store.engine import _alembic_config, make_engine, open_store
from needlecast.store.schema import contacts, deliveries, delivery_queue


def _claim(conn: Connection, campaign_id: str, now: datetime, limit: int, token: str) -> list[Claimed]:
    """The store's claim, each row as a `Claimed` (its first five fields)."""
    return [Claimed(*row[:5]) for row in delivery_store(conn).claim(conn, campaign_id, now, limit, token)]


class Claimed(NamedTuple):
    id: int
    contact_id: int
    step_id: str
    variant: str
    arm: str


NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _enqueue(
    conn: Connection,
    campaign: str,
    contact_ids: list[int],
    due_at: datetime = NOW,
    *,
    fresh: bool = False,
    status: Any = "queued",
) -> int:
    return ledger.enqueue_columns(
        delivery_store(conn),
        conn,
        {
            "campaign_id": campaign,
            "step_id": "s1",
            "contact_id": contact_ids,
            "segment": "all",
            "variant": "general",
            "arm": "",
            "due_at": due_at,
            "status": status,
            "error": "",
        },
        fresh=fresh,
    )


def _check_queue(conn: Connection) -> Counter[str]:
    """Assert the invariant; return how many rows each campaign has queued."""
    listed: list[int] = []
    for entry in conn.execute(select(delivery_queue)).mappings():
        ids = entry["delivery_ids"]
        ids = ids_from_text(ids) if isinstance(ids, str) else list(ids)
        assert entry["size"] == len(ids) <= ledger.QUEUE_ENTRY_SIZE
        listed += ids
        due = {
            (c, d)
            for c, d in conn.execute(
                select(deliveries.c.campaign_id, deliveries.c.due_at).where(deliveries.c.id.in_(ids))
            )
        }
        assert due == {(entry["campaign_id"], entry["due_at"])}  # one campaign, due at the entry's time
    queued = dict(
        conn.execute(
            select(deliveries.c.id, deliveries.c.campaign_id).where(deliveries.c.status == ledger.QUEUED)
        ).all()
    )
    assert sorted(listed) == sorted(queued)  # each queued row exactly once, and nothing else
    return Counter(queued.values())


def test_enqueue_lists_new_queued_rows_once_and_skipped_rows_never(engine: Engine) -> None:
    with engine.begin() as conn:
        assert _enqueue(conn, "a", list(range(1, 2501)), fresh=True) == 2500
        assert _enqueue(conn, "a", list(range(2000, 3001))) == 500  # 2000-2500 are there already
        assert _enqueue(conn, "b", [1, 2, 3], status=["queued", "skipped", "queued"]) == 3
        assert _enqueue(conn, "b", [4], NOW + timedelta(days=1)) == 1
        assert _check_queue(conn) == {"a": 3000, "b": 3}
        assert delivery_store(conn).queued_count(conn, "a") == 3000
        assert (
            delivery_store(conn).queued_count(conn, "b", NOW) == 2 and delivery_store(conn).queued_count(conn, "b") == 3
        )


def test_a_fresh_enqueue_that_meets_existing_rows_falls_back_to_on_conflict(engine: Engine) -> None:
    with engine.begin() as conn:
        _enqueue(conn, "a", [1, 2, 3])
    with engine.begin() as conn:  # "fresh" is only a hint: another planner may have got there first
        assert _enqueue(conn, "a", [2, 3, 4, 5], fresh=True) == 2
        assert _check_queue(conn) == {"a": 5}


def test_claims_take_due_rows_in_due_order_and_split_an_entry_at_the_limit(engine: Engine) -> None:
    with engine.begin() as conn:
        _enqueue(conn, "a", list(range(1, 1601)), NOW - timedelta(hours=1))
        _enqueue(conn, "a", list(range(1601, 1701)), NOW - timedelta(hours=2))
        _enqueue(conn, "a", list(range(1701, 1801)), NOW + timedelta(hours=1))  # not due yet
    claimed: list[Any] = []
    with engine.begin() as conn:
        first = _claim(conn, "a", NOW, 150, "t1")
        # The earliest due entry (100 rows), then 50 of the next one: the rest of it goes back to the queue.
        assert sorted(c.contact_id for c in first) == list(range(1, 51)) + list(range(1601, 1701))
        claimed += first
        assert _check_queue(conn) == {"a": 1650}
    while True:
        with engine.begin() as conn:
            rows = _claim(conn, "a", NOW, 700, "t2")
            assert len(rows) <= 700
            _check_queue(conn)
        if not rows:
            break
        claimed += rows
    assert sorted(c.contact_id for c in claimed) == list(range(1, 1701))  # each due row once, the rest left
    with engine.connect() as conn:
        assert (
            delivery_store(conn).counts(conn, "a")["sending"] == 1700
            and delivery_store(conn).queued_count(conn, "a") == 100
        )


def test_every_way_back_to_queued_lists_the_rows_again(engine: Engine) -> None:
    with engine.begin() as conn:
        _enqueue(conn, "a", list(range(1, 31)))
        taken = [c.id for c in _claim(conn, "a", NOW, 30, "run")]
    with engine.begin() as conn:
        assert delivery_store(conn).mark_sent(conn, taken[:10], "m1", NOW) == 10
        assert delivery_store(conn).release(conn, taken[10:15], "429") == 5  # deferred by the provider
        assert delivery_store(conn).release_claim(conn, "run", "stopped") == 15  # claimed but never handed over
        assert _check_queue(conn) == {"a": 20}
        attempts = dict(conn.execute(select(deliveries.c.id, deliveries.c.attempts)).all())
        assert {attempts[i] for i in taken[10:15]} == {1} and {attempts[i] for i in taken[15:]} == {0}
    with engine.begin() as conn:
        again = [c.id for c in _claim(conn, "a", NOW, 100, "run2")]
        assert sorted(again) == sorted(taken[10:])
        delivery_store(conn).mark_sent(conn, again[:15], "m2", NOW)
        assert (
            delivery_store(conn).mark_stale_unknown(conn, "a") == 5
        )  # a crashed sender: not queued, never resent by itself
        assert _check_queue(conn) == {}
        assert delivery_store(conn).requeue_unknown(conn, "a") == 5  # a person asked for it
        assert _check_queue(conn) == {"a": 5}
    with engine.begin() as conn:
        assert delivery_store(conn).cancel_queued(conn, "a") == 5
        assert _check_queue(conn) == {} and _claim(conn, "a", NOW, 100, "run3") == []
        assert delivery_store(conn).counts(conn, "a") == {
            **dict.fromkeys(ledger.STATUSES, 0),
            "sent": 25,
            "cancelled": 5,
        }


def test_the_migration_lists_rows_queued_under_the_old_schema(blank_store_url: str, tmp_path: Path) -> None:
    engine = make_engine(blank_store_url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")  # a ledger written by the previous needlecast, mid-send
        conn.execute(
            insert(deliveries),
            [
                {
                    "campaign_id": "a",
                    "step_id": "s1",
                    "contact_id": i,
                    "segment": "all",
                    "variant": "general",
                    "arm": "",
                    "status": "queued" if i % 3 else "sent",
                    "due_at": NOW,
                    "claimed_at": None,
                    "claim_token": "",
                    "sent_at": None,
                    "message_id": "",
                    "error": "",
                    "attempts": 0,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i in range(1, 2401)
            ],
        )
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    engine.dispose()
    engine = open_store(blank_store_url)
    with engine.begin() as conn:
        assert _check_queue(conn) == {"a": 1600}
        claimed = _claim(conn, "a", NOW, 5000, "t")
    assert len(claimed) == 1600 and all(c.contact_id % 3 for c in claimed)
    engine.dispose()


def test_bulk_copy_carries_every_value_as_given(engine: Engine) -> None:
    odd = ["tab\there", "line\nbreak", "cr\rhere", "back\\slash", "\\N", "", "Zoë 東京", 'quote"s']
    rows = [
        {
            "email": f"p{i}@example.com",
            "email_hash": f"h{i}",
            "first_name": text,
            "last_name": "",
            "concerns": "",
            "time_zone": "",
            "locale": "",
            "tags": "",
            "status": "active",
            "marketing_consent": i % 2 == 0,
            "concern_consent": i % 3 == 0,
            "attributes": {"note": text, "n": i, "none": None},
            "signed_up_at": NOW - timedelta(seconds=i),
            "created_at": NOW,
            "updated_at": NOW,
        }
        for i, text in enumerate(odd)
    ]
    with engine.begin() as conn:
        bulk_insert(conn, contacts, rows)  # COPY on PostgreSQL, executemany on SQLite
    with engine.connect() as conn:
        stored = {row.email: row for row in conn.execute(select(contacts))}
    for row in rows:
        got = stored[row["email"]]
        assert got.first_name == row["first_name"] and got.attributes == row["attributes"]
        assert (got.marketing_consent, got.concern_consent) == (row["marketing_consent"], row["concern_consent"])
        assert got.signed_up_at == row["signed_up_at"]


def test_the_queue_is_the_only_way_a_claim_finds_rows(engine: Engine) -> None:
    # A row set to queued behind the ledger's back is not claimed: only the queue's entries are.
    with engine.begin() as conn:
        _enqueue(conn, "a", [1, 2])
        conn.execute(update(deliveries).where(deliveries.c.contact_id == 2).values(status="failed"))
        conn.execute(
            insert(deliveries),
            {
                "campaign_id": "a",
                "step_id": "s1",
                "contact_id": 3,
                "segment": "all",
                "variant": "general",
                "arm": "",
                "status": "queued",
                "due_at": NOW,
                "claimed_at": None,
                "claim_token": "",
                "sent_at": None,
                "message_id": "",
                "error": "",
                "attempts": 0,
                "created_at": NOW,
                "updated_at": NOW,
            },
        )
    with engine.begin() as conn:
        assert [c.contact_id for c in _claim(conn, "a", NOW, 10, "t")] == [1]  # and never the failed row


@pytest.mark.parametrize("limit", [1, 999, 1000, 1001, 4000])
def test_a_claim_takes_its_limit_when_that_many_are_due(engine: Engine, limit: int) -> None:
    with engine.begin() as conn:
        _enqueue(conn, "a", list(range(1, 2601)))
        for contact in range(3001, 3101):  # a sequence's rows: one entry each, every one due at its own time
            _enqueue(conn, "b", [contact], NOW - timedelta(minutes=contact))
    with engine.begin() as conn:
        assert len(_claim(conn, "a", NOW, limit, "t")) == min(limit, 2600)
        assert len(_claim(conn, "b", NOW, limit, "t")) == min(limit, 100)
        assert _check_queue(conn) == +Counter({"a": 2600 - min(limit, 2600), "b": 100 - min(limit, 100)})
