"""Sequences run through the journey engine, and the rules every email obeys applied to journey sends, on
SQLite and PostgreSQL with a frozen clock.

- An existing `kind: sequence` file produces the same emails, due at the same moments, with the same exits,
  as the sequence engine did before (kept below as `_former_sweep`, the reference), also when a sequence
  that the former engine had been running switches to the journey engine half-way (nobody gets a step
  twice).
- Quiet hours and the frequency cap hold journey sends back, with the reason in words, exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, select, update

from needlecast import ledger
from needlecast.audience.membership import load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.journeys.model import SendNode, WaitNode
from needlecast.campaign.plan.planner import Planner
from needlecast.campaign.plan.rules import load_ledger_view, plan_sequence
from needlecast.campaign.plan.scheduling import schedule_campaign
from needlecast.campaign.send.report import RunReport
from needlecast.config import Workspace
from needlecast.store.delivery import delivery_store
from needlecast.store.schema import campaign_state, contact_events, deliveries, enrolments, journey_positions
from tests.journey_helpers import NOW, SIGNOFF, journey_workspace, store, sweep, write_journey
from tests.journey_helpers import ids as lead_ids

SEQUENCE = f"""id: seq
kind: sequence
segment: all-leads
time_zone: Europe/London
{SIGNOFF}
enrol: {{joined_after: "2026-10-01"}}
steps:
  - {{id: welcome, template: emails/welcome, delay: 0d}}
  - {{id: evening, template: emails/deep_dive, delay: 10h}}
  - {{id: deep-dive, template: emails/deep_dive, delay: 3d}}
  - {{id: consultation, template: emails/consultation, delay: 7d}}
exits:
  - {{event: booked}}
"""
# The sweeps of the scenario (the scheduler's sweeper job, now and then), and when lead1 books.
SWEEPS = [
    NOW,
    NOW + timedelta(hours=6),
    NOW + timedelta(hours=10, minutes=1),  # 22:01 in London: the evening email waits for 08:00
    NOW + timedelta(days=1),
    NOW + timedelta(days=3),
    NOW + timedelta(days=3, hours=2),
    NOW + timedelta(days=4, hours=1),
    NOW + timedelta(days=7, minutes=30),
    NOW + timedelta(days=8),
]
BOOKED_AT = NOW + timedelta(days=4)
OTHER_SENT_AT = NOW + timedelta(days=3) - timedelta(hours=1)  # another campaign's email to lead4: the cap


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    workspace = journey_workspace(workspace_dir, store_url, monkeypatch)
    (workspace.campaigns_dir / "seq.yaml").write_text(SEQUENCE)
    return workspace


def _former_sweep(ws: Workspace, engine: Engine, now: datetime) -> None:
    """The sequence engine before journeys (the former `Planner.advance_sequence`): the reference."""
    ctx = CampaignContext.load(ws)
    campaign = ctx.campaign("seq")
    with engine.begin() as conn:
        schedule_campaign(conn, campaign, (), now)
        frame = load_frame(conn)
        view = load_ledger_view(conn, campaign.id, now, event_types=campaign.event_types)
        plan = plan_sequence(
            ctx, campaign, frame, view.enrolled, view.keys, view.history, now, view.started_at or now, now, view.events
        )
        for contact_id in plan.new_enrolments:
            conn.execute(
                insert(enrolments).values(
                    campaign_id=campaign.id, contact_id=contact_id, enrolled_at=now, exited_at=None, exit_reason=""
                )
            )
        for contact_id, reason in plan.exits.items():
            conn.execute(
                update(enrolments)
                .where(enrolments.c.contact_id == contact_id, enrolments.c.exited_at.is_(None))
                .values(exited_at=now, exit_reason=reason)
            )
    Planner(ws, delivery_store(engine)).enqueue(plan, RunReport(campaign.id), fresh=True)


def _journey_sweep(ws: Workspace, engine: Engine, now: datetime) -> None:
    """The sequence's sweep today (the runner's): through the journey engine."""
    ctx = CampaignContext.load(ws)
    with engine.connect() as conn:
        frame = load_frame(conn)
    Planner(ws, delivery_store(engine)).advance_sequence(ctx, ctx.campaign("seq"), frame, now, RunReport("seq"))


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _run(ws: Workspace, engine: Engine, sweeper: Callable[[datetime], None]) -> tuple[set[tuple], dict[int, str]]:
    """The scenario from scratch: (step, contact, due, status) of every email, and each exit's reason."""
    with engine.begin() as conn:
        for table in (deliveries, enrolments, journey_positions, campaign_state):
            conn.execute(delete(table).where(table.c.campaign_id == "seq"))
        conn.execute(delete(contact_events))
    lead1 = lead_ids(engine)["lead1"]
    for now in SWEEPS:
        if now >= BOOKED_AT:
            _booked(engine, lead1)
        sweeper(now)
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.step_id, deliveries.c.contact_id, deliveries.c.due_at, deliveries.c.status).where(
                deliveries.c.campaign_id == "seq"
            )
        ).all()
        exits = conn.execute(select(enrolments.c.contact_id, enrolments.c.exit_reason)).all()
    emails = {(s, int(c), _aware(d), status) for s, c, d, status in rows}
    return emails, {int(c): r for c, r in exits if r}


def _held_back(emails: set[tuple], booked: int) -> set[tuple]:
    """The former engine's emails as the journey engine leaves them: the booked person's emails still queued
    when they booked (no sender runs in this scenario) are held back, where the former engine let them go."""
    return {(s, c, d, "skipped" if c == booked and status == "queued" else status) for s, c, d, status in emails}


def _booked(engine: Engine, contact_id: int) -> None:
    with engine.begin() as conn:
        if conn.execute(select(contact_events.c.id).where(contact_events.c.source_id == "b1")).first():
            return
        conn.execute(
            insert(contact_events).values(
                source_id="b1",
                email_hash="",
                contact_id=contact_id,
                type="booked",
                occurred_at=BOOKED_AT,
                value=None,
                currency="",
                source="test",
                received_at=BOOKED_AT,
                treatment="",
                appointment_at=None,
            )
        )


def _other_campaign_email(engine: Engine, contact_id: int, at: datetime) -> None:
    """An email of another campaign in the ledger, due at `at`: what the frequency cap counts."""
    with delivery_store(engine).writing() as conn:
        ledger.enqueue_columns(
            delivery_store(engine),
            conn,
            {
                "campaign_id": "other",
                "step_id": "guide",
                "contact_id": [contact_id],
                "segment": "all-leads",
                "variant": "general",
                "arm": "",
                "due_at": at,
                "status": ledger.QUEUED,
                "error": "",
            },
        )


def test_a_sequence_file_is_a_straight_line_of_waits_and_sends_with_the_steps_ids(ws: Workspace) -> None:
    journey = CampaignContext.load(ws).campaign("seq").journey
    assert journey is not None
    kinds = [(n.id, type(n).__name__) for n in journey.nodes.values()]
    assert kinds == [
        ("wait-1", "WaitNode"),
        ("welcome", "SendNode"),
        ("wait-2", "WaitNode"),
        ("evening", "SendNode"),
        ("wait-3", "WaitNode"),
        ("deep-dive", "SendNode"),
        ("wait-4", "WaitNode"),
        ("consultation", "SendNode"),
    ]
    waits = [n for n in journey.nodes.values() if isinstance(n, WaitNode)]
    assert [w.delay for w in waits] == [timedelta(0), timedelta(hours=10), timedelta(days=3), timedelta(days=7)]
    assert all(w.from_entry for w in waits)  # counted from entry, as a sequence's delays always were
    last = journey.nodes["consultation"]
    assert isinstance(last, SendNode) and last.next == ""


def test_an_existing_sequence_sends_the_same_emails_at_the_same_moments_as_before(ws: Workspace) -> None:
    engine = store(ws)
    _other_campaign_email(engine, lead_ids(engine)["lead4"], OTHER_SENT_AT)
    before, exits_before = _run(ws, engine, lambda now: _former_sweep(ws, engine, now))
    after, exits_after = _run(ws, engine, lambda now: _journey_sweep(ws, engine, now))
    assert after == _held_back(before, lead_ids(engine)["lead1"])
    assert exits_after == exits_before == {lead_ids(engine)["lead1"]: "event booked"}
    # What the scenario holds, so that the equality above is not vacuous:
    ids = lead_ids(engine)
    steps = Counter(s for s, *_ in after)
    assert steps == Counter({"welcome": 6, "evening": 6, "deep-dive": 6, "consultation": 5})  # lead1 booked
    evening = {due for s, _, due, _ in after if s == "evening"}
    assert evening == {datetime(2026, 11, 25, 8, 0, tzinfo=UTC)}  # 22:00 in London is quiet: 08:00
    deep = {c: due for s, c, due, _ in after if s == "deep-dive"}
    assert deep[ids["lead4"]] == OTHER_SENT_AT + timedelta(hours=24)  # the cap deferred it
    assert deep[ids["lead0"]] == NOW + timedelta(days=3)


def test_a_sequence_the_former_engine_was_running_goes_on_without_a_second_email(ws: Workspace) -> None:
    engine = store(ws)
    _other_campaign_email(engine, lead_ids(engine)["lead4"], OTHER_SENT_AT)
    reference, reference_exits = _run(ws, engine, lambda now: _former_sweep(ws, engine, now))
    switch = NOW + timedelta(days=1)  # welcome and evening already in the ledger, people enrolled

    def switched(now: datetime) -> None:
        (_former_sweep if now < switch else _journey_sweep)(ws, engine, now)

    emails, exits = _run(ws, engine, switched)
    assert emails == _held_back(reference, lead_ids(engine)["lead1"]) and exits == reference_exits
    with engine.connect() as conn:
        keys = conn.execute(
            select(deliveries.c.step_id, deliveries.c.contact_id).where(deliveries.c.campaign_id == "seq")
        ).all()
        adopted = conn.execute(select(journey_positions.c.contact_id, journey_positions.c.entry)).all()
    assert len(keys) == len(set(keys)) == 23
    assert sorted(e for _, e in adopted) == [1] * 6  # the enrolments became positions, entered once


def test_an_edited_sequence_moves_its_waiting_people_and_sends_nothing_twice(ws: Workspace) -> None:
    engine = store(ws)
    for now in (NOW, NOW + timedelta(hours=10, minutes=1), NOW + timedelta(days=3)):
        _journey_sweep(ws, engine, now)
    with engine.connect() as conn:
        nodes = set(conn.execute(select(journey_positions.c.node)).scalars())
    assert nodes == {"wait-4"}  # welcome, evening and deep-dive sent: waiting for the consultation
    edited = SEQUENCE.replace("  - {id: evening, template: emails/deep_dive, delay: 10h}\n", "")
    (ws.campaigns_dir / "seq.yaml").write_text(edited.replace("delay: 7d", "delay: 8d"))
    # wait-4 is gone (the line is shorter): everyone starts again at the first node, walks past what they had
    # and waits for the consultation, now 8 days after their entry.
    _journey_sweep(ws, engine, NOW + timedelta(days=3, hours=1))
    with engine.connect() as conn:
        waiting = conn.execute(select(journey_positions.c.node, journey_positions.c.due_at)).all()
    assert {(n, _aware(d)) for n, d in waiting} == {("wait-3", NOW + timedelta(days=8))}
    _journey_sweep(ws, engine, NOW + timedelta(days=7, minutes=1))
    _journey_sweep(ws, engine, NOW + timedelta(days=8))
    with engine.connect() as conn:
        keys = conn.execute(select(deliveries.c.step_id).where(deliveries.c.campaign_id == "seq")).scalars().all()
    assert Counter(keys) == Counter({"welcome": 6, "evening": 6, "deep-dive": 6, "consultation": 6})


def test_a_journey_send_in_quiet_hours_waits_for_the_morning_once(ws: Workspace) -> None:
    (ws.campaigns_dir / "seq.yaml").unlink()
    write_journey(
        ws, 'steps:\n  - {id: late, kind: wait, until_time: "22:30"}\n  - {id: note, template: emails/welcome}\n'
    )
    engine = store(ws)
    sweep(ws, engine, NOW)
    report = sweep(ws, engine, NOW + timedelta(hours=10, minutes=31))
    assert report.enqueued == 6 and report.deferred == Counter({"deferred by quiet hours": 6})
    morning = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # the end of the quiet hours (21:00-08:00) in London
    assert _journey_rows(engine) == {
        (c, morning, "queued", "deferred by quiet hours") for c in lead_ids(engine).values()
    }
    again = sweep(ws, engine, NOW + timedelta(hours=11))
    assert again.enqueued == 0 and not again.deferred  # held back once: nothing more, nothing moved again
    assert len(_journey_rows(engine)) == 6


def test_a_journey_send_over_the_frequency_cap_is_deferred_with_the_reason(ws: Workspace) -> None:
    (ws.campaigns_dir / "seq.yaml").unlink()
    write_journey(ws, "steps:\n  - {id: note, template: emails/welcome}\n")
    engine = store(ws)
    ids = lead_ids(engine)
    _other_campaign_email(engine, ids["lead0"], NOW - timedelta(hours=2))
    report = sweep(ws, engine, NOW)
    assert report.enqueued == 6 and report.deferred == Counter({"deferred by frequency cap": 1})
    rows = {c: (due, reason) for c, due, _, reason in _journey_rows(engine)}
    assert rows[ids["lead0"]] == (NOW + timedelta(hours=22), "deferred by frequency cap")  # 24 h after the other
    assert {rows[ids[f"lead{i}"]] for i in range(1, 6)} == {(NOW, "")}
    assert sweep(ws, engine, NOW + timedelta(hours=1)).enqueued == 0
    assert len(_journey_rows(engine)) == 6


def _journey_rows(engine: Engine) -> set[tuple[int, datetime, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.contact_id, deliveries.c.due_at, deliveries.c.status, deliveries.c.error).where(
                deliveries.c.campaign_id == "j"
            )
        ).all()
    return {(int(c), _aware(d), s, e) for c, d, s, e in rows}
