"""The real scheduler, as a subprocess, against the loopback SendGrid sink: kills, SIGTERM, locks, sync."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, insert, text

from needlecast.audience.importer import import_file
from needlecast.config import open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.schedule import SchedulerRuntime, build_scheduler, sync, sync_offline
from needlecast.store.delivery import delivery_store
from needlecast.store.engine import open_store
from needlecast.store.leader import SenderLock
from needlecast.store.schema import events
from tests.conftest import PG_SKIP, postgres_url
from tests.sending import big_broadcast_workspace
from tests.waiting import wait_until

API_KEY = "SG.scheduler-test"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def sink() -> Iterator[SendGridSink]:
    with SendGridSink(api_key=API_KEY, keep_payloads=False) as running:
        yield running


def _workspace(root: Path, recipients: int, send_at: datetime, batch: int = 50) -> tuple[Path, dict[str, str]]:
    """A workspace with `recipients` consenting contacts and one broadcast at `send_at`, sent in requests of
    `batch` emails (25 requests a second): what the kills and signals land among is requests, so the tests
    keep their number of requests and few rows in each (rows only cost time to import, plan and render)."""
    big_broadcast_workspace(
        root,
        recipients,
        send_at,
        lambda config: (
            config.replace("requests_per_second = 10", f"requests_per_second = 25\nbatch_size = {batch}")
            + "\n[schedule]\nsweep_interval_seconds = 1\n"
        ),
    )
    env = {
        **os.environ,
        "NEEDLECAST_DATABASE_URL": f"sqlite:///{root / 'state.db'}",
        "NEEDLECAST_BACKEND": "sendgrid",
        "SENDGRID_API_KEY": API_KEY,
        "NEEDLECAST_SECRET": "x" * 40,
        "NEEDLECAST_QUIET_HOURS": "off",
        "NEEDLECAST_WORKSPACE": str(root),
    }
    return root, env


def _import(root: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Engine:
    """Import the audience and schedule the campaign at once (as `needlecast schedule sync` would), so that
    a scheduler started later catches up on its moment instead of refusing a schedule already past."""
    for key, value in env.items():
        if key.startswith(("NEEDLECAST_", "SENDGRID_")):
            monkeypatch.setenv(key, value)
    ws = open_workspace(root)
    engine = open_store(ws.database_url)
    assert sync_offline(ws) is not None
    import_file(engine, root / "audiences" / "big.csv", load_vocabulary_for(ws))
    return engine


def _start(env: dict[str, str], sink: SendGridSink, log: Path) -> subprocess.Popen[bytes]:
    env = {**env, "NEEDLECAST_SENDGRID_HOST": sink.url}
    return subprocess.Popen(
        [sys.executable, str(REPO / "scheduler.py")],
        env=env,
        cwd=env["NEEDLECAST_WORKSPACE"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def _lock_taken(engine: Engine) -> bool:
    probe = SenderLock(engine)
    if probe.acquire():
        probe.release()
        return False
    return True


def _settled(engine: Engine) -> bool:
    with engine.connect() as conn:
        counts = delivery_store(conn).counts(conn, "big")
    return sum(counts.values()) > 0 and counts["queued"] == 0 and counts["sending"] == 0


def test_sigkill_at_several_points_then_restart_delivers_every_recipient_exactly_once(
    tmp_path: Path, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 80 requests of 50; killed after 12, 32 and 52 of them were accepted, then restarted to finish.
    root, env = _workspace(tmp_path / "ws", 4_000, datetime.now(UTC) - timedelta(seconds=20))
    engine = _import(root, env, monkeypatch)
    log = tmp_path / "scheduler.log"
    for kill_after in (600, 1_600, 2_600):
        process = _start(env, sink, log)
        wait_until(lambda n=kill_after: len(sink.accepted_delivery_ids()) >= n, 60, f"{kill_after} accepted")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    process = _start(env, sink, log)
    try:
        wait_until(lambda: _settled(engine), 90, "the broadcast to finish after the last restart")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    # SendGrid would now report a `processed` event for every message it accepted; the sink is its witness.
    accepted = sink.accepted_delivery_ids()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(events),
            [
                {
                    "provider_event_id": f"p-{d}",
                    "kind": "processed",
                    "delivery_id": int(d),
                    "campaign_id": "big",
                    "step_id": "guide",
                    "message_id": "",
                    "email_hash": "",
                    "occurred_at": now,
                    "received_at": now,
                    "detail": "",
                    "raw": {},
                }
                for d in accepted
            ],
        )
        delivery_store(conn).settle_campaign_by_events(conn, "big")
        resent = delivery_store(conn).requeue_unknown(conn, "big")
    if resent:  # rows claimed at a kill but never posted: sent again, on request, exactly once
        process = _start(env, sink, log)
        try:
            wait_until(lambda: _settled(engine), 60, "the resend")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
    ids = Counter(sink.accepted_delivery_ids())
    assert len(ids) == 4_000, log.read_text()[-3000:]
    assert max(ids.values()) == 1  # nobody was mailed twice
    with engine.connect() as conn:
        assert delivery_store(conn).counts(conn, "big")["sent"] == 4_000


def test_sigterm_finishes_the_batch_in_flight_and_exits(
    tmp_path: Path, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 24 requests of 50; the signal lands after 4 of them were accepted.
    root, env = _workspace(tmp_path / "ws", 1_200, datetime.now(UTC) - timedelta(seconds=20))
    engine = _import(root, env, monkeypatch)
    log = tmp_path / "log"
    process = _start(env, sink, log)
    wait_until(lambda: len(sink.accepted_delivery_ids()) >= 200, 60, "sending to start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    with engine.connect() as conn:
        counts = delivery_store(conn).counts(conn, "big")
    # Every batch in flight was finished and marked, the rest waits for the next start (how much was sent
    # before the signal landed depends on the machine's speed; the accounting does not).
    assert counts["sending"] == 0 and counts["unknown"] == 0
    assert counts["sent"] == len(sink.accepted_delivery_ids()) and counts["queued"] == 1_200 - counts["sent"]
    text = log.read_text()
    assert "finishing the batches in flight" in text
    assert "cannot schedule new futures" not in text and "Traceback" not in text


def test_a_second_scheduler_on_the_same_store_waits_as_a_standby_and_stops_cleanly(
    tmp_path: Path, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, env = _workspace(tmp_path / "ws", 10, datetime.now(UTC) + timedelta(days=1))
    engine = _import(root, env, monkeypatch)
    logs = [tmp_path / "one.log", tmp_path / "other.log"]
    started = [_start(env, sink, log) for log in logs]  # at once: whichever takes the lock first leads
    try:
        wait_until(lambda: any("leading" in log.read_text() for log in logs), 60, "one scheduler to lead")
        standby = next(n for n, log in enumerate(logs) if "leading" not in log.read_text())
        wait_until(lambda: "standby" in logs[standby].read_text(), 60, "the other to wait as standby")
        assert _lock_taken(engine)  # the leader holds the lock ...
        assert "leading" not in logs[standby].read_text()  # ... and the other waits
        started[standby].send_signal(signal.SIGTERM)
        assert started[standby].wait(30) == 0
        assert "leading" not in logs[standby].read_text()
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)


def test_postgres_advisory_lock_allows_one_sender(store_url: str) -> None:
    engine = open_store(store_url)
    first, second = SenderLock(engine), SenderLock(engine)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    second.release()


@pytest.mark.postgres
def test_stores_in_two_schemas_of_one_database_each_have_their_own_leader() -> None:
    base = postgres_url()
    if not base:
        pytest.skip(PG_SKIP)
    admin = create_engine(base)
    schemas = [f"s_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with admin.begin() as conn:
        for schema in schemas:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    one, other = (open_store(f"{base}?options=-csearch_path%3D{schema}") for schema in schemas)
    leaders = [SenderLock(one), SenderLock(other)]
    try:
        assert [lock.acquire() for lock in leaders] == [True, True]  # neither waits for the other's
        assert not SenderLock(one).acquire()  # ... and each still allows one leader
    finally:
        for lock in leaders:
            lock.release()
        one.dispose()
        other.dispose()
        with admin.begin() as conn:
            for schema in schemas:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_sync_reschedules_changed_files_and_unschedules_deleted_ones(
    tmp_path: Path, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    moment = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
    root, env = _workspace(tmp_path / "ws", 10, moment)
    engine = _import(root, env, monkeypatch)
    ws = open_workspace(root)

    def jobs() -> set[str]:
        scheduler = build_scheduler(SchedulerRuntime(engine), BackgroundScheduler)
        scheduler.start(paused=True)
        try:
            sync(scheduler, open_workspace(root), engine)
            return {job.id for job in scheduler.get_jobs()}
        finally:
            scheduler.shutdown(wait=False)

    assert jobs() == {"sweeper", "resync", "upkeep", "confirmations", "broadcast:big:20270105T090000Z"}
    campaign = ws.campaigns_dir / "big.yaml"
    campaign.write_text(campaign.read_text().replace("2027-01-05T09:00", "2027-01-06T10:30"))
    assert jobs() == {"sweeper", "resync", "upkeep", "confirmations", "broadcast:big:20270106T103000Z"}
    campaign.unlink()
    assert jobs() == {"sweeper", "resync", "upkeep", "confirmations"}


def test_missed_broadcast_runs_once_when_the_scheduler_comes_back(
    tmp_path: Path, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    moment = datetime.now(UTC) + timedelta(seconds=2)
    root, env = _workspace(tmp_path / "ws", 300, moment)
    engine = _import(root, env, monkeypatch)  # scheduled while the moment is ahead
    wait_until(lambda: datetime.now(UTC) > moment, 30, "the broadcast's moment to pass while no scheduler runs")
    log = tmp_path / "log"
    process = _start(env, sink, log)
    try:
        wait_until(lambda: _settled(engine), 60, "the missed broadcast")
        sweeps = log.read_text().count("sweep done")
        wait_until(lambda: log.read_text().count("sweep done") >= sweeps + 2, 60, "two more sweeps")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    ids = sink.accepted_delivery_ids()
    assert len(ids) == len(set(ids)) == 300  # caught up once; the sweeps after it sent nothing more
    assert "Error submitting job" not in log.read_text()


def test_a_stopped_scheduler_submits_no_job_even_when_one_falls_due_as_it_stops(store_url: str) -> None:
    from apscheduler.schedulers.base import STATE_PAUSED, STATE_STOPPED

    from needlecast.schedule import StopSafeBackgroundScheduler

    engine = open_store(store_url)
    scheduler = build_scheduler(SchedulerRuntime(engine), StopSafeBackgroundScheduler)
    scheduler.start(paused=True)
    try:
        submitted: list[str] = []
        executor = scheduler._lookup_executor("default")
        monkey = pytest.MonkeyPatch()
        monkey.setattr(executor, "submit_job", lambda job, run_times: submitted.append(job.id))
        scheduler.add_job(print, "date", run_date=datetime.now(UTC) - timedelta(seconds=1), id="due", args=["x"])
        scheduler.state = STATE_STOPPED  # what shutdown() sets before it waits for the job-store lock
        assert scheduler._process_jobs() is None and submitted == []
        scheduler.state = STATE_PAUSED  # as it was, so that the real shutdown below can run
        monkey.undo()
    finally:
        scheduler.shutdown(wait=False)


def test_a_scheduler_asked_to_wait_stops_while_a_running_job_changes_the_jobs() -> None:
    """The resync job reads and changes the jobs while it runs. APScheduler's own shutdown(wait=True) waited for
    it holding the job-store lock that the job needed: a SIGTERM during a resync hung the scheduler for good
    (found as a scheduler that outlived its SIGTERM by 30 s in the standby test below)."""
    from apscheduler.schedulers.base import STATE_RUNNING

    from needlecast.schedule import StopSafeBackgroundScheduler

    scheduler = StopSafeBackgroundScheduler(timezone="UTC")
    running, go_on, changed = threading.Event(), threading.Event(), threading.Event()

    def resync_like() -> None:
        running.set()
        go_on.wait(60)
        scheduler.get_jobs()
        scheduler.add_job(print, "interval", seconds=60, id="added", replace_existing=True)
        changed.set()

    scheduler.add_job(resync_like, id="resync")  # no trigger: runs at once
    scheduler.start()
    assert running.wait(60)
    stopper = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True)
    stopper.start()
    wait_until(lambda: scheduler.state != STATE_RUNNING, 60, "the shutdown to begin")
    go_on.set()  # the job goes on to change the jobs while the shutdown waits for it
    stopper.join(60)
    assert not stopper.is_alive(), "the shutdown waited for a job that waited for it"
    assert changed.is_set()


def test_the_upkeep_job_forgets_senders_ended_over_a_week_ago(workspace_dir: Path) -> None:
    from needlecast.fleet.recovery import SENDERS_KEPT_SECONDS
    from needlecast.schedule import run_upkeep_job
    from needlecast.store import fleet

    workspace = open_workspace(workspace_dir)
    engine = open_store(workspace.database_url)
    try:
        with engine.begin() as conn:
            old, recent = fleet.register(conn, "worker"), fleet.register(conn, "worker")
            fleet.retire(conn, old)
            fleet.retire(conn, recent)
            conn.exec_driver_sql(
                "UPDATE senders SET beat_at = beat_at - ? WHERE id = ?", (SENDERS_KEPT_SECONDS + 60, old)
            )
        run_upkeep_job(str(workspace_dir), runtime=SchedulerRuntime(engine))
        with engine.connect() as conn:
            assert [row[0] for row in conn.exec_driver_sql("SELECT id FROM senders")] == [recent]
    finally:
        engine.dispose()
