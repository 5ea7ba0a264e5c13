"""The fleet's store contract, on SQLite and PostgreSQL (the `engine` fixture): senders and heartbeats, request
intents, recovery to the request, per-request settlement, and the fleet-wide rate limit."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, insert, select

from needlecast import ledger
from needlecast.fleet.heartbeat import Heartbeat
from needlecast.store import fleet
from needlecast.store.delivery import delivery_store
from needlecast.store.ratelimit import FleetRateLimiter
from needlecast.store.schema import deliveries, events
from tests.test_ledger import NOW, _check_queue, _enqueue


def _claim(conn: Connection, sender_id: str, count: int) -> tuple[str, list[int]]:
    token = fleet.claim_token(sender_id)
    return token, [int(row[0]) for row in delivery_store(conn).claim(conn, "a", NOW, count, token)]


def _statuses(engine: Engine) -> dict[int, tuple[str, str]]:
    with engine.connect() as conn:
        return {r.id: (r.status, r.request_id) for r in conn.execute(select(deliveries))}


def _event(conn: Connection, delivery_id: int, at: datetime) -> None:
    conn.execute(
        insert(events).values(
            provider_event_id=f"p-{delivery_id}",
            kind="processed",
            delivery_id=delivery_id,
            campaign_id="a",
            step_id="s1",
            message_id="m-accepted",
            email_hash="",
            occurred_at=at,
            received_at=at,
            detail="",
            raw={},
        )
    )


def test_a_dead_senders_posted_request_becomes_unknown_and_the_rest_of_its_claim_goes_back_to_the_queue(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        _enqueue(conn, "a", list(range(1, 41)))
        dead = fleet.register(conn, "worker")
        alive = fleet.register(conn, "worker")
        token, ids = _claim(conn, dead, 30)
        other_token, other = _claim(conn, alive, 10)
        assert fleet.record_intent(conn, "r1", "a", dead, token, ids[:10])  # posted (it may have arrived)
        assert fleet.record_intent(conn, "r2", "a", alive, other_token, other)
        conn.exec_driver_sql(f"UPDATE senders SET beat_at = beat_at - 100 WHERE id = {_param(conn)}", (dead,))
    with engine.begin() as conn:
        result = ledger.recover_senders(conn, 30)
        assert result.senders == [dead] and (result.unknown, result.requests, result.requeued) == (10, 1, 20)
        assert _check_queue(conn) == {"a": 20}
        assert not fleet.record_intent(conn, "r3", "a", dead, token, ids[10:20])  # the fence: it cannot post again
    states = _statuses(engine)
    assert {states[i] for i in ids[:10]} == {("unknown", "r1")}
    assert {states[i][0] for i in ids[10:]} == {"queued"}
    assert {states[i][0] for i in other} == {"sending"}  # the live sender's claim is its own
    with engine.begin() as conn:  # a second recovery finds nothing more to do
        again = ledger.recover_senders(conn, 30, scan=True)
        assert (again.senders, again.unknown, again.requeued) == ([], 0, 0)


def _param(conn: Connection) -> str:
    return "?" if conn.dialect.name == "sqlite" else "%s"


def test_a_sender_whose_process_is_gone_is_recovered_at_once_without_waiting_for_the_lease(engine: Engine) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with engine.begin() as conn:
        _enqueue(conn, "a", list(range(1, 11)))
        sender = fleet.register(conn, "worker")
        conn.exec_driver_sql(f"UPDATE senders SET pid = {_param(conn)} WHERE id = {_param(conn)}", (gone.pid, sender))
        _token, _ids = _claim(conn, sender, 10)
    with engine.begin() as conn:
        result = ledger.recover_senders(conn, 3600)  # a lease of an hour: only the missing process tells
        assert result.senders == [sender] and result.requeued == 10
        assert _check_queue(conn) == {"a": 10}


def test_rows_claimed_before_senders_had_ids_are_unknown_after_a_scan(engine: Engine) -> None:
    with engine.begin() as conn:
        _enqueue(conn, "a", list(range(1, 6)))
        delivery_store(conn).claim(conn, "a", NOW, 5, "0123456789abcdef0123456789abcdef")  # an older needlecast's token
    with engine.begin() as conn:
        assert ledger.recover_senders(conn, 30).legacy == 0  # nobody died: no scan
        assert ledger.recover_senders(conn, 30, scan=True).legacy == 5
        assert delivery_store(conn).counts(conn, "a")["unknown"] == 5


def _unknown_requests(engine: Engine) -> tuple[list[int], list[int]]:
    """Two requests of a dead sender left unknown: ("r1", 10 rows) and ("r2", 10 rows), and 10 rows sent
    later by a live sender."""
    with engine.begin() as conn:
        _enqueue(conn, "a", list(range(1, 31)))
        dead = fleet.register(conn, "worker")
        token, ids = _claim(conn, dead, 20)
        fleet.record_intent(conn, "r1", "a", dead, token, ids[:10])
        fleet.record_intent(conn, "r2", "a", dead, token, ids[10:])
        fleet.retire(conn, dead)  # stopped without recording anything: as good as dead for recovery
        ledger.recover_senders(conn, 30, scan=True)
        live = fleet.register(conn, "worker")
        _later_token, later = _claim(conn, live, 10)
        delivery_store(conn).mark_sent(conn, later, "m-later", datetime.now(UTC))
    return ids, later


def test_one_event_settles_its_whole_request_and_a_request_without_events_is_proved_lost_after_the_wait(
    engine: Engine,
) -> None:
    ids, later = _unknown_requests(engine)
    with engine.begin() as conn:
        _event(conn, ids[3], datetime.now(UTC))  # one email of r1
        verdicts = {v.request_id: v for v in ledger.judge_requests(conn, "a", 3600)}
        assert verdicts["r1"].verdict == ledger.ACCEPTED_BY_EVENT and verdicts["r2"].verdict == ledger.WAITING
        assert ledger.settle_requests(conn, "a", 3600).accepted_rows == 10  # r2 waits: too young to be lost
        _event(conn, later[0], datetime.now(UTC))  # a later request has events
        assert ledger.settle_requests(conn, "a", None).waiting == 1  # None: never proved lost
        settled = ledger.settle_requests(conn, "a", 0)
        assert (settled.lost, settled.requeued_rows, settled.waiting) == (1, 10, 0)
        assert _check_queue(conn) == {"a": 10}
        assert {r.id for r in fleet.requests_of_campaign(conn, "a", fleet.ACCEPTED)} == {"r1"}
        assert {r.id for r in fleet.requests_of_campaign(conn, "a", fleet.LOST)} == {"r2"}
    states = _statuses(engine)
    assert {states[i][0] for i in ids[:10]} == {"sent"} and {states[i][0] for i in ids[10:]} == {"queued"}


def test_a_request_is_not_proved_lost_while_no_later_request_has_events(engine: Engine) -> None:
    _ids, _later = _unknown_requests(engine)
    with engine.begin() as conn:
        assert ledger.settle_requests(conn, "a", 0).waiting == 2
        assert delivery_store(conn).counts(conn, "a")["unknown"] == 20


def test_an_event_stored_by_the_webhook_settles_the_other_rows_of_its_request(engine: Engine) -> None:
    ids, _later = _unknown_requests(engine)
    with engine.begin() as conn:
        assert ledger.accept_requests_of(conn, [ids[12]]) == 10
        assert ledger.accept_requests_of(conn, [ids[12]]) == 0
    states = _statuses(engine)
    assert {states[i][0] for i in ids[10:]} == {"sent"} and {states[i][0] for i in ids[:10]} == {"unknown"}


def test_a_heartbeat_finds_its_sender_expired_and_fences_it(engine: Engine) -> None:
    fenced = threading.Event()
    with Heartbeat(engine, "worker", 60, on_fenced=fenced.set) as beat:
        assert beat.beat()
        with engine.begin() as conn:
            m = _param(conn)
            conn.exec_driver_sql(f"UPDATE senders SET beat_at = beat_at - 120 WHERE id = {m}", (beat.id,))
            assert fleet.expire(conn, fleet.cutoff(conn, 60)) == [beat.id]
        assert not beat.beat()
        assert fenced.is_set() and beat.fenced.is_set()
    with engine.connect() as conn:
        assert fleet.live(conn, fleet.cutoff(conn, 60)) == []


def test_a_sender_that_stops_cleanly_is_no_longer_live(engine: Engine) -> None:
    with Heartbeat(engine, "worker", 60) as beat, engine.connect() as conn:
        assert [s.id for s in fleet.live(conn, fleet.cutoff(conn, 60), kind="worker")] == [beat.id]
    with engine.connect() as conn:
        assert fleet.live(conn, fleet.cutoff(conn, 60)) == []


def test_senders_that_ended_long_ago_are_forgotten_and_a_forgotten_sender_stays_fenced(engine: Engine) -> None:
    with engine.begin() as conn:
        _enqueue(conn, "a", list(range(1, 11)))
        alive, stopped, recent, dead = (fleet.register(conn, "worker") for _ in range(4))
        token, ids = _claim(conn, dead, 10)
        fleet.retire(conn, stopped)
        fleet.retire(conn, recent)
        m = _param(conn)
        for old in (stopped, dead):
            conn.exec_driver_sql(f"UPDATE senders SET beat_at = beat_at - 1000 WHERE id = {m}", (old,))
        assert fleet.expire(conn, fleet.cutoff(conn, 30)) == [dead]
        assert fleet.forget_ended(conn, fleet.clock(conn) - 500) == 2  # stopped and dead, long ago
        assert {row[0] for row in conn.exec_driver_sql("SELECT id FROM senders")} == {alive, recent}
        assert not fleet.record_intent(conn, "r1", "a", dead, token, ids)  # no row: the fence holds
    with engine.begin() as conn:
        result = ledger.recover_senders(conn, 30, scan=True)  # its claim is recovered like any dead sender's
        assert result.requeued == 10 and _check_queue(conn) == {"a": 10}


def test_the_fleet_rate_limit_spaces_every_limiters_requests_by_the_interval(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts: list[float] = []
    read: list[float] = []  # the database's clock as the limiter read it, to book against
    database_clock = fleet.clock

    def clock(conn: Connection) -> float:  # the database's clock, frozen at its first reading: every request
        # after the first must then wait for its slot, however slow the machine runs between them
        read.append(read[0] if read else database_clock(conn))
        return read[-1]

    def booked(wait: float) -> None:  # no real sleep: the booked start is the clock it read + wait
        starts.append(read[-1] + wait)

    monkeypatch.setattr(fleet, "clock", clock)

    limiters = [FleetRateLimiter(engine, 20, 0, sleep=booked) for _ in range(3)]  # three senders
    for _ in range(4):
        for limiter in limiters:
            limiter.acquire(100)
    starts.sort()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 11  # the first request of all goes at once (no wait)
    assert all(gap >= 0.05 - 1e-6 for gap in gaps), gaps  # exactly the interval apart, however slow the machine


def test_the_hourly_email_cap_spaces_requests_by_their_size(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    first: list[float] = []
    database_clock = fleet.clock

    def clock(conn: Connection) -> float:  # the database's clock, frozen at its first reading: the wait is then
        # exactly the first request's share of the hour, however slow the machine runs between the two
        if not first:
            first.append(database_clock(conn))
        return first[0]

    monkeypatch.setattr(fleet, "clock", clock)
    waits: list[float] = []
    limiter = FleetRateLimiter(engine, 0, 36_000, sleep=waits.append)  # 10 emails a second
    limiter.acquire(50)
    limiter.acquire(10)
    assert waits == [pytest.approx(5.0)]  # the second waits for the first's 50 emails


def test_a_lease_or_takeover_too_short_is_refused_naming_the_setting(tmp_path: Path) -> None:
    from needlecast.config import load_settings
    from needlecast.errors import ConfigurationError

    for section, text, named in (
        ("delivery", "lease_seconds = 0", "[delivery] lease_seconds must be at least 2"),
        ("schedule", "takeover_seconds = 0.5", "[schedule] takeover_seconds must be at least 1"),
        ("delivery", "sender_processes = 0", "[delivery] sender_processes must be at least 1"),
    ):
        (tmp_path / "needlecast.toml").write_text(f"[{section}]\n{text}\n")
        with pytest.raises(ConfigurationError, match=re.escape(named)):
            load_settings(tmp_path)
    (tmp_path / "needlecast.toml").write_text("[delivery]\nlease_seconds = 10\n[schedule]\ntakeover_seconds = 5\n")
    settings = load_settings(tmp_path)
    assert settings.delivery.lease_seconds == 10 and settings.schedule.takeover_seconds == 5
