"""Journeys never send twice and never skip, on SQLite and PostgreSQL: two sweepers at once (threads that wait
on each other, no sleeps), a sweeper acting on what it read before another one moved everyone, and a sweep
killed with SIGKILL between its rounds; counted at the loopback SendGrid sink."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from needlecast.audience.membership import load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.journeys import sweeper
from needlecast.campaign.journeys.conditions import Facts
from needlecast.campaign.journeys.sweeper import SweepReport, sweep_journey
from needlecast.campaign.send.runner import Runner
from needlecast.config import Workspace
from needlecast.delivery.base import RetryPolicy
from needlecast.delivery.sendgrid import SendGridBackend
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.store import journeys as positions_store
from needlecast.store.delivery import delivery_store
from tests.journey_helpers import NOW, Clock, journey_workspace, ledger_rows, store, where_is, write_journey
from tests.journey_helpers import ids as lead_ids

REPO = Path(__file__).resolve().parent.parent
API_KEY = "SG.runner-test"
JOURNEY = """
steps:
  - {id: hello, template: emails/welcome}
  - id: route
    kind: branch
    paths: [{when: [{concern: acne}], next: acne}]
    default: general
  - {id: acne, template: emails/deep_dive, next: pause}
  - {id: general, template: emails/consultation, next: pause}
  - {id: pause, kind: wait, delay: 1d}
  - {id: bye, template: emails/broadcast}
"""


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return journey_workspace(workspace_dir, store_url, monkeypatch)


def _send(ws: Workspace, engine: Engine, sink: SendGridSink, clock: Clock) -> None:
    """Send what the journey enqueued, as the scheduler's sweeper job does."""
    settings = dataclasses.replace(ws.settings, delivery=dataclasses.replace(ws.settings.delivery, api_host=sink.url))
    backends = partial(SendGridBackend, settings, api_key=API_KEY, retry=RetryPolicy(2, 0.01, 0.02))
    Runner(dataclasses.replace(ws, settings=settings), engine, backends, clock=clock).sweep()


def _at_sink(sink: SendGridSink) -> Counter[tuple[str, str]]:
    """(step, address) -> how many emails the sink accepted."""
    counts: Counter[tuple[str, str]] = Counter()
    for request in sink.accepted:
        payload = request.payload
        assert payload is not None
        for person in payload["personalizations"]:
            counts[(payload["custom_args"]["step"], person["to"][0]["email"])] += 1
    return counts


def test_two_sweepers_at_once_send_each_email_exactly_once(ws: Workspace) -> None:
    sink = SendGridSink(api_key=API_KEY)
    write_journey(ws, JOURNEY)
    engine = store(ws)
    ctx = CampaignContext.load(ws)
    campaign = ctx.campaign("j")
    both_entered = threading.Barrier(2, timeout=60)
    reports: list[SweepReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        first = [True]

        def after_round() -> None:
            if first[0]:  # both have done their entries before either advances anyone
                first[0] = False
                both_entered.wait()

        try:
            reports.append(sweep_journey(engine, ctx, campaign, NOW, after_round=after_round))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
            both_entered.abort()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and len(reports) == 2
    assert sum(r.entered for r in reports) == 6
    assert set(ledger_rows(engine).values()) == {1} and len(ledger_rows(engine)) == 12
    with sink:
        clock = Clock(NOW)
        _send(ws, engine, sink, clock)
        sweep_journey(engine, CampaignContext.load(ws), campaign, NOW + timedelta(days=1))
        clock.now = NOW + timedelta(days=1)
        _send(ws, engine, sink, clock)
        counts = _at_sink(sink)
    assert set(counts.values()) == {1} and len(counts) == 18
    assert Counter(step for step, _ in counts) == Counter({"hello": 6, "bye": 6, "acne": 2, "general": 4})


def test_a_sweeper_acting_on_what_it_read_before_another_moved_everyone_changes_nothing(ws: Workspace) -> None:
    write_journey(ws, JOURNEY)
    engine = store(ws)
    ctx = CampaignContext.load(ws)
    campaign = ctx.campaign("j")
    journey = campaign.journey
    assert journey is not None
    writer = delivery_store(engine)
    with writer.writing() as conn:  # the late sweeper: enter everyone, then read who is due where
        sweeper.enter(conn, campaign, [(c, 1, None) for c in lead_ids(engine).values()], _people(engine), NOW)
    with writer.writing() as conn:
        stale = positions_store.due(conn, "j", NOW, 100, nodes=list(journey.nodes))
    report = sweep_journey(engine, ctx, campaign, NOW)  # the other sweeper does everything meanwhile
    assert report.enqueued == 12
    late = SweepReport("j")
    with writer.writing() as conn:  # the late one now acts on its stale read
        plan = sweeper._decide(campaign, journey, stale, _people(engine), Facts(conn, "j", ()), NOW)
        sweeper._apply(conn, campaign, journey, plan, _people(engine), (), NOW, late)
    assert late.enqueued == 0
    assert set(ledger_rows(engine).values()) == {1} and len(ledger_rows(engine)) == 12
    assert {where_is(engine, c)[:2] for c in lead_ids(engine).values()} == {("pause", "active")}


def test_a_round_that_fails_after_writing_its_moves_moves_nobody(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_journey(ws, JOURNEY)
    engine = store(ws)
    ctx = CampaignContext.load(ws)
    with pytest.raises(_Stop):
        sweep_journey(engine, ctx, ctx.campaign("j"), NOW, after_round=_stop_after_the_entries)
    assert {where_is(engine, c)[:2] for c in lead_ids(engine).values()} == {("hello", "active")}

    def failing(*_args: object) -> int:  # the moves are written first, then the round's emails are enqueued
        raise RuntimeError("the database went away")

    monkeypatch.setattr(sweeper, "_enqueue", failing)
    with pytest.raises(RuntimeError):
        sweep_journey(engine, ctx, ctx.campaign("j"), NOW)
    assert {where_is(engine, c)[:2] for c in lead_ids(engine).values()} == {("hello", "active")}
    assert not ledger_rows(engine)


class _Stop(Exception):
    pass


def _stop_after_the_entries() -> None:
    raise _Stop


def _people(engine: Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return load_frame(conn).set_index("id", drop=False)


KILLER = """
import os, signal, sys
from pathlib import Path
from datetime import datetime
from needlecast.campaign.context import CampaignContext
from needlecast.config import open_workspace
from needlecast.campaign.journeys import sweeper
from needlecast.campaign.journeys.sweeper import sweep_journey
from needlecast.store.engine import open_store

sweeper.ROUND_SIZE = 2  # a round takes its people as far as they go: rounds of two leave the rest for later
ws = open_workspace(Path(sys.argv[1]))
engine = open_store(ws.database_url)
ctx = CampaignContext.load(ws)
calls = [0]

def after_round():
    calls[0] += 1
    if calls[0] == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)

sweep_journey(engine, ctx, ctx.campaign("j"), datetime.fromisoformat(sys.argv[2]), after_round=after_round)
"""


@pytest.mark.parametrize("killed_after", [1, 2])
def test_a_sweep_killed_between_rounds_is_finished_by_the_next_without_a_duplicate(
    ws: Workspace, killed_after: int
) -> None:
    write_journey(ws, JOURNEY)
    engine = store(ws)
    done = subprocess.run(
        [sys.executable, "-c", KILLER, str(ws.root), NOW.isoformat(), str(killed_after)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    before = len(ledger_rows(engine))
    assert before < 12  # killed part way
    report = sweep_journey(engine, CampaignContext.load(ws), CampaignContext.load(ws).campaign("j"), NOW)
    assert report.enqueued == 12 - before
    assert set(ledger_rows(engine).values()) == {1} and len(ledger_rows(engine)) == 12
    assert {where_is(engine, c)[:2] for c in lead_ids(engine).values()} == {("pause", "active")}


def test_a_second_entrys_emails_go_out_as_their_own_ledger_rows(ws: Workspace, sink: SendGridSink) -> None:
    write_journey(
        ws, "entry: {segment: true}\nreentry: {after: 30d}\nsteps:\n  - {id: hello, template: emails/welcome}\n"
    )
    engine = store(ws)
    ctx = CampaignContext.load(ws)
    clock = Clock(NOW)
    sweep_journey(engine, ctx, ctx.campaign("j"), NOW)
    _send(ws, engine, sink, clock)
    clock.now = NOW + timedelta(days=30)
    assert sweep_journey(engine, ctx, ctx.campaign("j"), clock.now).entered == 6
    _send(ws, engine, sink, clock)
    counts = _at_sink(sink)
    assert Counter(step for step, _ in counts) == Counter({"hello": 6, "hello#2": 6})
    assert set(counts.values()) == {1}
