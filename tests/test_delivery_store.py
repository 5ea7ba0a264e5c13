"""The delivery store's contract (`store.delivery.DeliveryStore`), run against both implementations.

`tests/test_ledger.py` pins the ledger's rules through the store; these tests pin what the dispatcher and
the planner ask of the store directly: claims with their contact's data, claims that never overlap between
senders, changes that touch only the rows in the state they expect, the queue's upkeep, the evidence a
request's settlement reads, and the write turn. Each runs on SQLite and on PostgreSQL (`engine` fixture).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, event, insert, select, update

from needlecast import ledger
from needlecast.devtools.stopwatch import Stopwatch
from needlecast.devtools.timed import STORE_CALLS, STORE_ENTRIES
from needlecast.store.delivery import (
    CLAIMED_FIELDS,
    PostgresDeliveryStore,
    SqliteDeliveryStore,
    delivery_store,
)
from needlecast.store.schema import contacts, deliveries, events, suppressions

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _contacts(conn: Connection, count: int) -> list[int]:
    conn.execute(
        insert(contacts),
        [
            {
                "email": f"p{i}@example.com",
                "email_hash": f"h{i}",
                "first_name": f"P{i}",
                "status": "pending" if i == 3 else "active",
                "marketing_consent": i != 4,
                "attributes": {"paused_until": "2027-01-01"} if i == 5 else {},
                "signed_up_at": NOW,
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(1, count + 1)
        ],
    )
    return list(conn.execute(select(contacts.c.id).order_by(contacts.c.id)).scalars())


def _enqueue(conn: Connection, campaign: str, ids: list[int], due_at: datetime = NOW) -> int:
    return ledger.enqueue_columns(
        delivery_store(conn),
        conn,
        {
            "campaign_id": campaign,
            "step_id": "s1",
            "contact_id": ids,
            "segment": "all",
            "variant": "general",
            "arm": "",
            "due_at": due_at,
            "status": "queued",
            "error": "",
        },
    )


def test_the_store_of_each_database_is_its_own_implementation(engine: Engine) -> None:
    store = delivery_store(engine)
    expected = SqliteDeliveryStore if engine.dialect.name == "sqlite" else PostgresDeliveryStore
    assert type(store) is expected and store.engine is engine
    with engine.connect() as conn:
        assert type(delivery_store(conn)) is expected  # from a connection too


def test_a_claim_brings_each_row_with_its_contact_as_it_is_at_claim_time(engine: Engine) -> None:
    store = delivery_store(engine)
    with engine.begin() as conn:
        ids = _contacts(conn, 6)
        _enqueue(conn, "c", ids)
        conn.execute(insert(suppressions).values(email_hash="h2", reason="complaint", source="t", created_at=NOW))
        conn.execute(contacts.delete().where(contacts.c.id == ids[5]))  # erased after planning
    with store.writing() as conn:
        rows = store.claim(conn, "c", NOW, 100, "tok")
    assert [row[1] for row in rows] == ids  # in id order, every due row
    by_contact = {row[1]: dict(zip(CLAIMED_FIELDS, row, strict=True)) for row in rows}
    first = by_contact[ids[0]]
    assert (first["email"], first["first_name"], first["status"], first["suppressed"]) == (
        "p1@example.com",
        "P1",
        "active",
        None,
    )
    assert bool(first["marketing_consent"]) and first["attributes"] in ("{}", "{}\n")
    assert by_contact[ids[1]]["suppressed"] == "complaint"
    assert by_contact[ids[2]]["status"] == "pending"
    assert not by_contact[ids[3]]["marketing_consent"]
    assert "paused_until" in by_contact[ids[4]]["attributes"]  # JSON text on both databases
    assert by_contact[ids[5]]["email"] is None
    with engine.connect() as conn:
        assert delivery_store(conn).counts(conn, "c")["sending"] == 6
        tokens = set(conn.execute(select(deliveries.c.claim_token)).scalars())
    assert tokens == {"tok"}


def test_concurrent_claims_never_hand_out_a_row_twice(engine: Engine) -> None:
    store = delivery_store(engine)
    with engine.begin() as conn:
        _enqueue(conn, "c", list(range(1, 5001)))
    taken: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def sender(name: str) -> None:
        start.wait()
        while True:
            with store.writing() as conn:
                rows = store.claim(conn, "c", NOW, 700, name)
            if not rows:
                return
            taken[name] += [int(row[0]) for row in rows]

    threads = [threading.Thread(target=sender, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    together = taken["a"] + taken["b"]
    assert len(together) == len(set(together)) == 5000
    with engine.connect() as conn:
        assert store.queue_depth(conn, NOW) == (0, 0)


def test_status_changes_touch_only_rows_in_the_state_expected(engine: Engine) -> None:
    store = delivery_store(engine)
    with store.writing() as conn:
        _enqueue(conn, "c", list(range(1, 11)))
        ids = [int(row[0]) for row in store.claim(conn, "c", NOW, 10, "tok")]
        assert store.set_status(conn, ids[:4], "sending", {"status": "sent", "sent_at": NOW}) == 4
        assert store.set_status(conn, ids[:6], "sending", {"status": "failed"}, count_attempt=True) == 2
        assert store.set_status(conn, ids, "sending", {"status": "unknown"}, request_id="r1") == 0  # no row has r1
        assert store.set_status(conn, ids[6:8], "sending", {"status": "unknown", "request_id": "r1"}) == 2
        assert store.set_status(conn, ids, "unknown", {"status": "sent"}, request_id="r1", token="other") == 0
        assert store.requeue(conn, {"error": "lost"}, ids=ids, only_from="unknown", request_id="r1") == 2
        assert store.requeue(conn, {"error": "stopped"}, token="tok", only_from="sending") == 2
        assert store.requeue(conn, {"error": ""}, ids=[], only_from="sending") == 0
        attempts = dict(conn.execute(select(deliveries.c.id, deliveries.c.attempts)).all())
        assert [attempts[i] for i in ids] == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
        assert delivery_store(conn).counts(conn, "c") == {
            **dict.fromkeys(ledger.STATUSES, 0),
            "sent": 4,
            "failed": 2,
            "queued": 4,
        }
        assert store.queued_count(conn, "c") == 4  # every row back in `queued` is in the queue again
        again = store.claim(conn, "c", NOW, 10, "tok2")
    assert sorted(int(row[0]) for row in again) == sorted(ids[6:])


def test_queue_readings_agree_with_what_was_enqueued(engine: Engine) -> None:
    store = delivery_store(engine)
    later = NOW + timedelta(hours=3)
    with store.writing() as conn:
        _enqueue(conn, "a", list(range(1, 1201)))
        _enqueue(conn, "b", list(range(1, 11)), later)
    with engine.connect() as conn:
        assert store.queue_depth(conn, NOW) == (1210, 1200)
        assert store.due_campaigns(conn, NOW) == ["a"] and store.due_campaigns(conn, later) == ["a", "b"]
        assert [(due.replace(tzinfo=UTC), n) for due, n in store.queued_by_due(conn, "b")] == [(later, 10)]
        by_campaign = {campaign: size for campaign, size, _ in store.queue_by_campaign(conn)}
        assert by_campaign == {"a": 1200, "b": 10}
        assert store.has_rows(conn, "a") and not store.has_rows(conn, "z")
    with store.writing() as conn:
        assert store.cancel_queued(conn, "a") == 1200
        assert store.queue_depth(conn, later) == (10, 10)


def test_skipped_rows_are_counted_by_their_reason_most_first(engine: Engine) -> None:
    store = delivery_store(engine)
    with store.writing() as conn:
        _enqueue(conn, "c", list(range(1, 7)))
        _enqueue(conn, "other", [1])
        ids = [int(row[0]) for row in store.claim(conn, "c", NOW, 10, "tok")]
        delivery_store(conn).mark_skipped(
            conn, {ids[0]: "no marketing consent", **dict.fromkeys(ids[1:4], "suppressed: complaint")}
        )
        delivery_store(conn).mark_skipped(
            conn, dict.fromkeys([int(r[0]) for r in store.claim(conn, "other", NOW, 1, "t2")], "x")
        )
    with engine.connect() as conn:
        assert list(store.skipped_by_reason(conn, "c").items()) == [
            ("suppressed: complaint", 3),
            ("no marketing consent", 1),
        ]
        assert store.skipped_by_reason(conn, "nothing") == {}
        for campaign in ("c", "other", "nothing"):  # one pass gives both, the same
            counted = store.counts_and_skipped(conn, campaign)
            assert counted == (store.counts(conn, campaign), store.skipped_by_reason(conn, campaign))
        assert list(store.counts_and_skipped(conn, "c")[1]) == ["suppressed: complaint", "no marketing consent"]


def test_request_evidence_reads_the_events_of_any_of_its_rows(engine: Engine) -> None:
    store = delivery_store(engine)
    with store.writing() as conn:
        _enqueue(conn, "c", list(range(1, 7)))
        ids = [int(row[0]) for row in store.claim(conn, "c", NOW, 6, "tok")]
        store.set_status(conn, ids[:3], "sending", {"status": "unknown", "request_id": "r1"})
        store.set_status(conn, ids[3:], "sending", {"status": "sent", "sent_at": NOW + timedelta(minutes=5)})
        conn.execute(
            insert(events),
            [
                {
                    "provider_event_id": f"e{n}",
                    "kind": "delivered",
                    "delivery_id": delivery_id,
                    "campaign_id": "c",
                    "step_id": "s1",
                    "message_id": f"m{n}",
                    "email_hash": "",
                    "occurred_at": NOW + timedelta(minutes=n),
                    "received_at": NOW,
                    "detail": "",
                    "raw": {},
                }
                for n, delivery_id in ((1, ids[1]), (2, ids[4]))
            ],
        )
        evidence = store.request_evidence(conn, "r1", ids[:3])
        assert evidence.unknown_rows == 3 and evidence.first_event is not None and evidence.message_id == "m1"
        assert store.request_evidence(conn, "r2", ids[:1]).first_event is None
        assert store.has_events_after(conn, "c", NOW) and not store.has_events_after(
            conn, "c", NOW + timedelta(hours=1)
        )
        assert store.unknown_requests_of(conn, ids) == ["r1"]
        assert store.campaigns_of(conn, [*ids, 10**9]) == {"c"} and store.campaigns_of(conn, []) == set()
        assert store.settle_rows_with_events(conn, [ids[1]]) == 1  # the webhook's: rows with an event
        assert store.settle_campaign_by_events(conn, "c") == 0  # the campaign's: no other unknown row has one
        conn.execute(update(deliveries).where(deliveries.c.id == ids[1]).values(status="unknown"))
        assert store.settle_campaign_by_events(conn, "c") == 1


def test_events_of_kinds_are_found_among_thousands_of_ids_bound_as_one_parameter(engine: Engine) -> None:
    """The deliverability guard asks this for every round the dispatcher records (4,000 ids): the ids go to
    the database as one parameter, whatever their number, and only the kinds asked for count."""
    store = delivery_store(engine)
    ids = list(range(1, 5001))
    statements: list[tuple[str, object]] = []

    def seen(conn: Connection, cursor: object, statement: str, params: object, *rest: object) -> None:
        statements.append((statement, params))

    with store.writing() as conn:
        conn.execute(
            insert(events),
            [
                {
                    "provider_event_id": f"e{n}",
                    "kind": kind,
                    "delivery_id": delivery_id,
                    "campaign_id": "c",
                    "step_id": "s1",
                    "message_id": "m",
                    "email_hash": "",
                    "occurred_at": NOW,
                    "received_at": NOW,
                    "detail": "",
                    "raw": {},
                }
                for n, (kind, delivery_id) in enumerate((("delivered", 10), ("bounced", 4999), ("dropped", 7000)))
            ],
        )
        event.listen(engine, "before_cursor_execute", seen)
        try:
            assert store.has_events_of(conn, ids, {"bounced", "complained", "dropped"})
            assert not store.has_events_of(conn, ids[:4000], {"bounced", "complained", "dropped"})
            assert store.has_events_of(conn, ids[:4000], {"delivered"})
            assert not store.has_events_of(conn, [], {"delivered"})
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 3  # none for no ids
    assert all(len(params) == 2 for _, params in statements)  # type: ignore[arg-type]


def test_provider_outcomes_apply_in_order_so_the_latest_report_wins(engine: Engine) -> None:
    store = delivery_store(engine)
    with store.writing() as conn:
        _enqueue(conn, "c", [1, 2])
        first, second = sorted(int(row[0]) for row in store.claim(conn, "c", NOW, 2, "tok"))
        later = NOW + timedelta(hours=1)
        store.record_outcomes(conn, [(first, "deferred", NOW), (first, "delivered", later), (second, "bounced", NOW)])
        found = {
            row.id: (row.outcome, row.outcome_at.replace(tzinfo=UTC))
            for row in conn.execute(select(deliveries.c.id, deliveries.c.outcome, deliveries.c.outcome_at))
        }
    assert found == {first: ("delivered", later), second: ("bounced", NOW)}
    with engine.connect() as conn:
        assert (
            delivery_store(conn).counts(conn, "c")["sending"] == 2
        )  # an outcome is the provider's word; the state stays


def test_a_timed_store_is_the_store_with_its_calls_on_the_stopwatch(engine: Engine) -> None:
    watch = Stopwatch()
    store = watch.wrap(delivery_store(engine), calls=STORE_CALLS, entries=STORE_ENTRIES)
    with store.writing() as conn:
        _enqueue(conn, "c", [1, 2, 3])
        rows = store.claim(conn, "c", NOW, 10, "tok")
        store.set_status(conn, [int(row[0]) for row in rows], "sending", {"status": "sent"})
    assert len(rows) == 3
    assert set(watch.seconds) == {"turn", "claim", "mark"}
    assert all(seconds >= 0 for seconds in watch.seconds.values())
    with engine.connect() as conn:
        assert delivery_store(conn).counts(conn, "c")["sent"] == 3


@pytest.mark.parametrize("stage", ["claim", "mark"])
def test_a_failing_call_is_still_timed_and_its_error_raised(stage: str) -> None:
    class Broken:
        def claim(self) -> None:
            raise RuntimeError("claim failed")

        def set_status(self) -> None:
            raise RuntimeError("mark failed")

    watch = Stopwatch()
    timed = watch.wrap(Broken(), calls=STORE_CALLS)
    with pytest.raises(RuntimeError, match=f"{stage} failed"):
        (timed.claim if stage == "claim" else timed.set_status)()
    assert stage in watch.seconds


def test_marks_move_only_sending_rows_along_the_ledgers_transitions(engine: Engine) -> None:
    store = delivery_store(engine)
    with store.writing() as conn:
        _enqueue(conn, "c", list(range(1, 11)))
        ids = [int(row[0]) for row in store.claim(conn, "c", NOW, 10, "tok")]
        assert store.mark_sent(conn, ids[:3], "m" * 150, NOW) == 3
        assert store.mark_sent(conn, ids[:3], "again", NOW) == 0  # a row marked twice changes once
        assert store.mark_failed(conn, ids[:4], "x" * 3000) == 1  # only the row still `sending`
        assert store.mark_unknown(conn, ids[4:6], "timed out", "req-1") == 2
        assert store.release(conn, ids[6:7], "429") == 1
        assert store.release_claim(conn, "tok", "stopped") == 3  # the rest of the claim
        assert store.requeue_unknown(conn, "c") == 2  # only when a person asks
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(deliveries).where(deliveries.c.campaign_id == "c"))}
        assert len(rows[ids[0]].message_id) == 100 and rows[ids[0]].error == ""
        assert rows[ids[3]].status == "failed" and len(rows[ids[3]].error) == 2000
        assert store.counts(conn, "c") == {**dict.fromkeys(ledger.STATUSES, 0), "sent": 3, "failed": 1, "queued": 6}
        assert store.queued_count(conn, "c") == 6  # every queued row is in the queue again
    for state, targets in ledger.TRANSITIONS.items():  # the rules: only a claim enters `sending`
        assert state in ledger.STATUSES and targets <= set(ledger.STATUSES)
        assert (ledger.SENDING in targets) == (state == ledger.QUEUED)


def test_campaign_state_keeps_its_failure_streak_and_pauses_at_the_limit(engine: Engine) -> None:
    store = delivery_store(engine)
    with store.writing() as conn:
        assert store.campaign_state(conn, "c") is None
        assert not store.set_campaign_status(conn, "c", "paused")  # no state row yet
        first = store.ensure_campaign_state(conn, "c", "d1", NOW)
        assert first["status"] == "active" and first["digest"] == "d1"
        assert store.ensure_campaign_state(conn, "c", "d2", NOW + timedelta(days=1))["digest"] == "d1"  # kept
        assert not store.record_batch_result(conn, "c", False, 3, "503")
        assert not store.record_batch_result(conn, "c", True, 3)  # a success resets the streak
        assert not store.record_batch_result(conn, "c", False, 3, "503")
        assert not store.record_batch_result(conn, "c", False, 3, "503")
        assert store.record_batch_result(conn, "c", False, 3, "503")  # the third in a row pauses
        paused = store.campaign_state(conn, "c")
        assert paused is not None and paused["status"] == "paused" and "3 failed batches" in paused["note"]
        assert store.set_campaign_status(conn, "c", "active")
        resumed = store.campaign_state(conn, "c")
        assert resumed is not None and resumed["consecutive_failures"] == 0


def test_an_intent_is_written_only_while_its_sender_is_alive(engine: Engine) -> None:
    store = delivery_store(engine)
    with store.writing() as conn:
        _enqueue(conn, "c", [1, 2, 3])
        sender = store.register_sender(conn, "send")
        token = store.claim_token(sender)
        ids = [int(row[0]) for row in store.claim(conn, "c", NOW, 10, token)]
        assert store.record_intent(conn, "req-1", "c", sender, token, ids[:2])
        assert store.live_senders(conn, 30, kind="send") >= 1
        assert store.beat(conn, sender)
        store.retire_sender(conn, sender)
        assert not store.beat(conn, sender)  # a stopped sender is no longer alive
        assert not store.record_intent(conn, "req-2", "c", sender, token, ids[2:])  # the fence
        store.finish_claim(conn, token)


def test_the_fleet_rate_limiter_reports_its_waits_to_the_hook_it_was_built_with(engine: Engine) -> None:
    waits: list[float] = []
    limiter = delivery_store(engine).rate_limiter(2, 0, on_wait=waits.append)
    limiter.acquire(1000)
    limiter.acquire(1000)
    assert len(waits) == 1 and 0 < waits[0] <= 0.5  # two requests a second: the second waits its turn


def test_the_audiences_time_zones_are_found_through_the_index_one_seek_each(engine: Engine) -> None:
    from needlecast.campaign.plan.scheduling import audience_zones

    with engine.connect() as conn:
        assert audience_zones(conn) == set()  # no contacts: no zones
    with engine.begin() as conn:
        ids = _contacts(conn, 7)
        zones = ["Europe/London", "", "Asia/Tokyo", "Europe/London", "America/New_York", "", "Asia/Tokyo"]
        for contact_id, zone in zip(ids, zones, strict=True):
            conn.execute(update(contacts).where(contacts.c.id == contact_id).values(time_zone=zone))
    with engine.connect() as conn:
        found = audience_zones(conn)
        assert found == set(zones) == set(conn.execute(select(contacts.c.time_zone).distinct()).scalars())
