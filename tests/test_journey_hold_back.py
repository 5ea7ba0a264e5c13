"""An email of a journey deferred into the future (quiet hours) is held back when its person leaves before it
goes: the goal (a booking), an exit node, a sequence's exit rule. A row a sender already claimed is not
touched; the dispatcher still re-checks suppression at send time; nothing is sent twice. Frozen clock, on
SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from needlecast.audience.membership import load_frame
from needlecast.audience.suppression import suppress
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.plan.planner import Planner
from needlecast.campaign.send.runner import Runner, RunReport
from needlecast.config import Workspace
from needlecast.delivery.base import RetryPolicy
from needlecast.delivery.sendgrid import SendGridBackend
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.store.delivery import delivery_store
from needlecast.store.schema import deliveries, delivery_queue
from tests.journey_helpers import NOW, Clock, journey_workspace, record_event, store, sweep, where_is, write_journey
from tests.journey_helpers import ids as lead_ids

LATE = NOW + timedelta(hours=10, minutes=31)  # 22:31 in London: quiet hours (21:00-08:00)
MORNING = NOW + timedelta(hours=20)  # 08:00 in London the next day: the deferred emails' moment
BOOKED = NOW + timedelta(hours=11)  # 23:00: between the deferral and the moment

# A wait until 22:30, a send (deferred to 08:00 by quiet hours), then a wait of two days and a second send.
JOURNEY = """goal: {event: booked}
steps:
  - {id: late, kind: wait, until_time: "22:30"}
  - {id: note, template: emails/welcome}
  - {id: pause, kind: wait, delay: 2d}
  - {id: later, template: emails/deep_dive}
"""
# Whoever has a `no_show` is routed to an exit node after the (deferred) send.
EXIT_NODE = """steps:
  - {id: late, kind: wait, until_time: "22:30"}
  - {id: note, template: emails/welcome}
  - {id: check, kind: wait, delay: 1h}
  - id: route
    kind: branch
    paths: [{when: [{event: no_show, within: 30d}], next: gone}]
    default: thanks
  - {id: gone, kind: exit}
  - {id: thanks, template: emails/deep_dive}
  - {id: done, kind: exit}
"""
SEQUENCE = """id: j
kind: sequence
segment: all-leads
time_zone: Europe/London
signoff: {reviewer: QA, date: 2026-11-24, note: test content}
enrol: {joined_after: "2026-10-01"}
steps:
  - {id: welcome, template: emails/welcome, delay: 10h}
  - {id: deep-dive, template: emails/deep_dive, delay: 3d}
exits:
  - {event: booked}
"""


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return journey_workspace(workspace_dir, store_url, monkeypatch)


def _rows(engine: Engine) -> dict[int, list[tuple[str, str, str]]]:
    """contact -> [(step, status, error)] of the journey's ledger rows."""
    found: dict[int, list[tuple[str, str, str]]] = {}
    with engine.connect() as conn:
        query = select(deliveries.c.contact_id, deliveries.c.step_id, deliveries.c.status, deliveries.c.error).where(
            deliveries.c.campaign_id == "j"
        )
        for contact_id, step, status, error in conn.execute(query):
            found.setdefault(int(contact_id), []).append((step, status, error))
    return found


def _queue_lists(engine: Engine) -> Counter[int]:
    """delivery id -> in how many queue entries it is listed."""
    listed: Counter[int] = Counter()
    with engine.connect() as conn:
        for (value,) in conn.execute(select(delivery_queue.c.delivery_ids)):
            listed.update(value if isinstance(value, list) else [int(v) for v in value.strip("[]").split(",") if v])
    return listed


def _queued_ids(engine: Engine) -> set[int]:
    with engine.connect() as conn:
        return {int(i) for (i,) in conn.execute(select(deliveries.c.id).where(deliveries.c.status == "queued"))}


def _send(ws: Workspace, engine: Engine, sink: SendGridSink, now: datetime) -> RunReport:
    """The dispatcher at `now`, sending the journey's due emails to the loopback sink."""
    settings = dataclasses.replace(ws.settings, delivery=dataclasses.replace(ws.settings.delivery, api_host=sink.url))
    backends = partial(SendGridBackend, settings, api_key="SG.runner-test", retry=RetryPolicy(2, 0.01, 0.02))
    runner = Runner(dataclasses.replace(ws, settings=settings), engine, backends, clock=Clock(now))
    ctx = CampaignContext.load(runner.workspace)
    report = RunReport("j")
    runner.dispatch(ctx, ctx.campaign("j"), report)
    return report


def _sequence_sweep(ws: Workspace, engine: Engine, now: datetime) -> RunReport:
    """The sequence's sweep (the runner's): through the journey engine."""
    ctx = CampaignContext.load(ws)
    with engine.connect() as conn:
        frame = load_frame(conn)
    report = RunReport("j")
    Planner(ws, delivery_store(engine)).advance_sequence(ctx, ctx.campaign("j"), frame, now, report)
    return report


def _deferred(ws: Workspace, body: str) -> tuple[Engine, dict[str, int]]:
    write_journey(ws, body)
    engine = store(ws)
    sweep(ws, engine, NOW)
    assert sweep(ws, engine, LATE).deferred == Counter({"deferred by quiet hours": 6})
    return engine, lead_ids(engine)


def test_a_booking_between_the_deferral_and_the_moment_holds_the_email_back(ws: Workspace, sink: SendGridSink) -> None:
    engine, ids = _deferred(ws, JOURNEY)
    record_event(engine, ids["lead1"], "booked", BOOKED, "b1")
    report = sweep(ws, engine, BOOKED)
    assert report.converted == 1
    assert _rows(engine)[ids["lead1"]] == [("note", "skipped", "left the journey: booked")]
    assert {r for c, rows in _rows(engine).items() if c != ids["lead1"] for r in rows} == {
        ("note", "queued", "deferred by quiet hours")
    }
    assert set(_queue_lists(engine)) == _queued_ids(engine) and set(_queue_lists(engine).values()) == {1}
    sent = _send(ws, engine, sink, MORNING)
    assert sent.sent == 5 and not sent.skipped
    assert sorted(e for a in sink.accepted for e, _ in a.recipients) == [
        f"lead{i}@example.com" for i in (0, 2, 3, 4, 5)
    ]
    assert _send(ws, engine, sink, MORNING + timedelta(hours=1)).sent == 0  # nothing twice
    assert len(sink.accepted_delivery_ids()) == 5


def test_a_row_a_sender_already_claimed_is_not_touched_by_the_exit(ws: Workspace) -> None:
    engine, ids = _deferred(ws, JOURNEY)
    writer = delivery_store(engine)
    with writer.writing() as conn:  # a sender claims the due emails (the clock has reached 08:00 for it)
        claimed = writer.claim(conn, "j", MORNING, 1000, writer.claim_token("sender-a"))
    assert len(claimed) == 6
    record_event(engine, ids["lead1"], "booked", BOOKED, "b1")
    assert sweep(ws, engine, BOOKED).converted == 1
    assert _rows(engine)[ids["lead1"]] == [("note", "sending", "deferred by quiet hours")]
    assert where_is(engine, ids["lead1"])[1] == "converted"


def test_a_sequence_exit_rule_holds_back_its_deferred_step(ws: Workspace) -> None:
    (ws.campaigns_dir / "j.yaml").write_text(SEQUENCE)
    engine = store(ws)
    ids = lead_ids(engine)
    _sequence_sweep(ws, engine, NOW)
    _sequence_sweep(ws, engine, NOW + timedelta(hours=10, minutes=1))
    assert {r for rows in _rows(engine).values() for r in rows} == {("welcome", "queued", "deferred by quiet hours")}
    record_event(engine, ids["lead2"], "booked", BOOKED, "b2")
    _sequence_sweep(ws, engine, BOOKED)
    assert _rows(engine)[ids["lead2"]] == [("welcome", "skipped", "left the journey: event booked")]
    assert sorted(s for s, _, _ in _rows(engine)[ids["lead3"]]) == ["welcome"]
    assert [r[1] for r in _rows(engine)[ids["lead3"]]] == ["queued"]


def test_an_exit_node_holds_back_but_an_exit_right_after_a_send_lets_it_go(ws: Workspace) -> None:
    engine, ids = _deferred(ws, EXIT_NODE)
    record_event(engine, ids["lead4"], "no_show", LATE, "n4")
    sweep(ws, engine, LATE + timedelta(hours=1))  # through the branch: lead4 to `gone`, the rest to `thanks`
    rows = _rows(engine)
    assert rows[ids["lead4"]] == [("note", "skipped", "left the journey: exit at gone")]
    for i in (0, 1, 2, 3, 5):  # `done` directly follows a send: the end of that path, both emails go
        assert sorted((s, status) for s, status, _ in rows[ids[f"lead{i}"]]) == [
            ("note", "queued"),
            ("thanks", "queued"),
        ]
        assert where_is(engine, ids[f"lead{i}"])[:2] == ("done", "done")


def test_an_exit_node_right_after_a_send_lets_the_deferred_email_go(ws: Workspace) -> None:
    engine, ids = _deferred(
        ws,
        'steps:\n  - {id: late, kind: wait, until_time: "22:30"}\n'
        "  - {id: note, template: emails/welcome}\n  - {id: done, kind: exit}\n",
    )
    assert {where_is(engine, c)[1] for c in ids.values()} == {"done"}
    assert {r for rows in _rows(engine).values() for r in rows} == {("note", "queued", "deferred by quiet hours")}


def test_the_dispatcher_rechecks_suppression_of_a_deferred_journey_email(ws: Workspace, sink: SendGridSink) -> None:
    engine, ids = _deferred(ws, JOURNEY)
    with engine.begin() as conn:  # no sweep between: only the dispatcher can stop it
        suppress(conn, "lead5@example.com", "unsubscribed", source="test")
    report = _send(ws, engine, sink, MORNING)
    assert report.sent == 5 and report.skipped == Counter({"suppressed: unsubscribed": 1})
    assert _rows(engine)[ids["lead5"]] == [("note", "skipped", "suppressed: unsubscribed")]
    assert all(e != "lead5@example.com" for a in sink.accepted for e, _ in a.recipients)


def test_an_unsubscribe_seen_by_the_sweeper_holds_the_email_back_with_its_reason(ws: Workspace) -> None:
    engine, ids = _deferred(ws, JOURNEY)
    with engine.begin() as conn:
        suppress(conn, "lead0@example.com", "unsubscribed", source="test")
    sweep(ws, engine, BOOKED)
    assert _rows(engine)[ids["lead0"]] == [("note", "skipped", "left the journey: unsubscribed")]
