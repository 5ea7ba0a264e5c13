"""`needlecast worker` and local workers, as processes on one machine (SQLite), against the loopback sink:
the scheduler leaves them the sending, metrics over HTTP, status and /healthz, SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.send.runner import Runner
from needlecast.config import open_workspace
from needlecast.delivery import backend_factory
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.fleet.sender_processes import SenderHelpers
from needlecast.fleet.worker import Worker
from tests.test_fleet import API_KEY, Fleet, _answers, _fleet, _free_port, _live
from tests.waiting import wait_until


@pytest.fixture()
def sink() -> Iterator[SendGridSink]:
    with SendGridSink(api_key=API_KEY, keep_payloads=False) as running:
        yield running


def test_the_sending_processes_start_without_pandas_or_alembic() -> None:
    """A worker and a helper sender process read campaigns and segment definitions, render and post: pandas
    (with pyarrow) and Alembic (with Mako and Pygments) cost each of them about half a second of CPU at start
    for nothing. A process of its own: this one imported both long ago."""
    imports = "import sys, needlecast.cli, needlecast.fleet.worker, needlecast.fleet.sender_processes; "
    imports += "print(sorted(name for name in ('pandas', 'alembic', 'pyarrow') if name in sys.modules))"
    shown = subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def _status(running: Fleet) -> dict[str, object]:
    result: dict[str, object] = json.loads(running.status().stdout)
    return result


def test_a_worker_sends_what_the_scheduler_plans_serves_metrics_and_stops_cleanly(
    tmp_path: Path, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = _fleet(
        tmp_path,
        f"sqlite:///{tmp_path / 'state.db'}",
        sink,
        monkeypatch,
        recipients=300,
        send_at=datetime.now(UTC) - timedelta(seconds=30),
        delivery="requests_per_second = 0\nbatch_size = 50\n",
    )
    metrics_port, web_port = _free_port(), _free_port()
    try:
        worker = running.start("worker", "--concurrency", "2", "--metrics-port", str(metrics_port), name="worker")
        running.start("web", "--port", str(web_port), name="web")  # it starts up while the others work
        wait_until(lambda: len(_live(running.engine, "worker")) == 1, 60, "the worker to be alive")
        scheduler = running.start("scheduler", name="scheduler")
        wait_until(lambda: len(sink.accepted_delivery_ids()) == 300, 120, "the broadcast to be sent")
        wait_until(lambda: running.counts()["sent"] == 300, 60, "the sends to be recorded")
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'needlecast_emails_recorded_total{campaign="big",status="sent"} 300.0' in metrics
        assert f'needlecast_provider_requests_total{{status="202"}} {float(len(sink.accepted))}' in metrics
        assert "needlecast_workers_alive 1.0" in metrics and "needlecast_sender_heartbeat_age_seconds{" in metrics
        assert "example.com" not in metrics  # ids and states only
        status = _status(running)
        leader = status["leader"]
        assert isinstance(leader, dict) and leader["pid"] == scheduler.pid
        workers = status["workers"]
        assert isinstance(workers, list) and [w["pid"] for w in workers] == [worker.pid]
        wait_until(lambda: _answers(f"http://127.0.0.1:{web_port}/healthz"), 60, "the web app")
        health = httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=10).json()
        assert health["status"] == "ok" and health["leader"]["id"] == leader["id"]
        assert len(health["workers"]) == 1 and health["queue"] == {"queued": 0, "due": 0}
        assert "pid" not in json.dumps(health)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        wait_until(lambda: not _live(running.engine, "worker"), 10, "the worker to be gone from the fleet")
    finally:
        running.stop_all()
    assert "workers are alive; the sending is theirs" in running.log("scheduler")
    assert "stopped: 300 sent" in running.log("worker")
    assert Counter(sink.accepted_delivery_ids()).most_common(1)[0][1] == 1


def test_sender_processes_start_local_workers_that_stop_with_the_scheduler(
    tmp_path: Path, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = _fleet(
        tmp_path,
        f"sqlite:///{tmp_path / 'state.db'}",
        sink,
        monkeypatch,
        recipients=600,
        # Already due: the scheduler leads (and fires it) only once its local workers are alive.
        send_at=datetime.now(UTC) - timedelta(seconds=30),
        delivery="requests_per_second = 0\nbatch_size = 30\nsender_processes = 2\n",
    )
    try:
        scheduler = running.start("scheduler", name="scheduler")
        wait_until(lambda: len(_live(running.engine, "worker")) == 2, 60, "two local workers")
        wait_until(lambda: len(sink.accepted_delivery_ids()) == 600, 120, "the broadcast to be sent")
        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(60) == 0
    finally:
        running.stop_all()
    assert not _live(running.engine, "worker")  # they stopped with it
    log = running.log("scheduler")
    assert "2 local worker(s) started" in log and "stopped: " in log
    sent_by = [int(n) for n in re.findall(r"stopped: (\d+) sent", log)]
    assert sum(sent_by) == 600 and len(sent_by) == 2
    assert Counter(sink.accepted_delivery_ids()).most_common(1)[0][1] == 1


def test_a_worker_never_starts_helper_processes_of_its_own(
    tmp_path: Path, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `sender_processes = 3` the scheduler starts three workers; a worker that also started helpers
    for a large send would make it nine senders."""
    running = _fleet(
        tmp_path,
        f"sqlite:///{tmp_path / 'state.db'}",
        sink,
        monkeypatch,
        recipients=200,
        send_at=datetime.now(UTC) - timedelta(seconds=30),
        delivery="requests_per_second = 0\nbatch_size = 20\nsender_processes = 3\nparallel_from = 10\n",
    )
    ws = open_workspace(running.root)
    helpers_started: list[int] = []
    original = Runner._helpers

    def counted(self: Runner, campaign: Campaign, size: int | None) -> SenderHelpers:
        helpers = original(self, campaign, size)
        helpers_started.append(len(helpers))
        return helpers

    monkeypatch.setattr(Runner, "_helpers", counted)
    stop = threading.Event()
    worker = Worker(ws, running.engine, stop=stop, poll_seconds=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        wait_until(lambda: len(_live(running.engine, "worker")) == 1, 30, "the worker to be alive")
        planned = Runner(ws, running.engine, backend_factory(ws), defer_to_workers=True).run_broadcast(
            "big", send_now=True
        )
        assert planned.enqueued == 200 and planned.sent == 0  # the scheduler's runner left the sending to it
        wait_until(lambda: len(sink.accepted_delivery_ids()) == 200, 60, "the worker to send the broadcast")
    finally:
        stop.set()
        thread.join(60)
    assert worker.totals.sent == 200 and helpers_started and set(helpers_started) == {0}
