"""Journeys, node by node, on SQLite and PostgreSQL, with a frozen clock: what each node does to the people at
it, what the ledger gets, and where each person is afterwards."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, update

from needlecast.campaign.context import CampaignContext
from needlecast.config import Workspace
from needlecast.errors import CampaignFileError
from needlecast.store.schema import contacts
from tests.journey_helpers import (
    NOW,
    journey_workspace,
    ledger_rows,
    positions,
    record_event,
    steps_of,
    store,
    sweep,
    where_is,
    write_journey,
)
from tests.journey_helpers import ids as lead_ids


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return journey_workspace(workspace_dir, store_url, monkeypatch)


def _aware(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def test_send_wait_send_walks_everyone_once_and_ends(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - {id: welcome, template: emails/welcome}
  - {id: pause, kind: wait, delay: 2d}
  - {id: tips, template: emails/deep_dive}
""",
    )
    engine = store(ws)
    report = sweep(ws, engine, NOW)
    assert report.entered == 6 and report.enqueued == 6
    assert {s for s, _ in ledger_rows(engine)} == {"welcome"}
    assert {where_is(engine, c)[:2] for c in lead_ids(engine).values()} == {("pause", "active")}
    assert sweep(ws, engine, NOW + timedelta(days=1)).enqueued == 0  # still waiting
    report = sweep(ws, engine, NOW + timedelta(days=2))
    assert report.enqueued == 6 and report.left == Counter({"end of the journey": 6})
    assert sweep(ws, engine, NOW + timedelta(days=9)).enqueued == 0  # nobody enters twice (re-entry: never)
    assert set(ledger_rows(engine).values()) == {1} and len(ledger_rows(engine)) == 12


def test_a_sequence_file_still_loads_as_a_straight_line_of_steps(ws: Workspace) -> None:
    ctx = CampaignContext.load(ws)
    assert not ctx.problems
    (ws.campaigns_dir / "s.yaml").write_text(
        """id: s
kind: sequence
segment: all-leads
time_zone: Europe/London
steps:
  - {id: welcome, template: emails/welcome, delay: 0d}
  - {id: later, template: emails/deep_dive, delay: 3d}
"""
    )
    campaign = CampaignContext.load(ws).campaign("s")
    assert [s.delay.days for s in campaign.steps] == [0, 3]
    assert campaign.journey is not None  # one engine: a straight line of waits and sends (test_journey_sequences)
    assert list(campaign.journey.nodes) == ["wait-1", "welcome", "wait-2", "later"]


def test_wait_until_an_event_goes_on_when_it_happens_and_at_the_timeout_otherwise(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - {id: welcome, template: emails/welcome}
  - {id: booked-yet, kind: wait_until, event: booked, timeout: 7d, next: thanks, on_timeout: nudge}
  - {id: nudge, template: emails/consultation, next: done}
  - {id: thanks, template: emails/deep_dive}
  - {id: done, kind: exit}
""",
    )
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    record_event(engine, leads["lead1"], "booked", NOW + timedelta(days=1), "b1")
    record_event(engine, leads["lead2"], "booked", NOW - timedelta(days=1), "b2")  # before they arrived: no
    sweep(ws, engine, NOW + timedelta(days=1, hours=1))
    assert steps_of(engine, leads["lead1"]) == ["thanks", "welcome"]
    assert where_is(engine, leads["lead1"])[1:] == ("done", 1)
    assert where_is(engine, leads["lead2"])[:2] == ("booked-yet", "active")
    sweep(ws, engine, NOW + timedelta(days=7))
    assert steps_of(engine, leads["lead2"]) == ["nudge", "welcome"]
    assert where_is(engine, leads["lead2"])[:2] == ("done", "done")


def test_branch_takes_the_first_path_that_holds_else_the_default(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - id: route
    kind: branch
    paths:
      - {when: [{tag: vip}], next: vip}
      - {when: [{concern: acne}], next: acne}
    default: general
  - {id: vip, template: emails/consultation, next: done}
  - {id: acne, template: emails/deep_dive, next: done}
  - {id: general, template: emails/welcome, next: done}
  - {id: done, kind: exit}
""",
    )
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    # lead0 and lead3 have acne; lead3 is also vip (the first path wins)
    assert steps_of(engine, leads["lead0"]) == ["acne"]
    assert steps_of(engine, leads["lead3"]) == ["vip"]
    assert steps_of(engine, leads["lead1"]) == ["general"] and steps_of(engine, leads["lead2"]) == ["general"]


def test_branch_on_an_attribute_and_on_an_event_within_days(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - id: route
    kind: branch
    paths:
      - {when: [{event: purchased, within: 30d}], next: buyer}
      - {when: [{field: skin_type, equals: Oily}], next: oily}
    default: done
  - {id: buyer, template: emails/consultation, next: done}
  - {id: oily, template: emails/deep_dive, next: done}
  - {id: done, kind: exit}
""",
    )
    engine = store(ws)
    leads = lead_ids(engine)
    record_event(engine, leads["lead0"], "purchased", NOW - timedelta(days=3), "p0")
    record_event(engine, leads["lead1"], "purchased", NOW - timedelta(days=40), "p1")  # too long ago
    with engine.begin() as conn:
        conn.execute(update(contacts).where(contacts.c.id == leads["lead1"]).values(attributes={"skin_type": "oily"}))
    sweep(ws, engine, NOW)
    assert steps_of(engine, leads["lead0"]) == ["buyer"]
    assert steps_of(engine, leads["lead1"]) == ["oily"]
    assert steps_of(engine, leads["lead2"]) == []
    assert where_is(engine, leads["lead2"])[:2] == ("done", "done")


def test_split_sends_each_person_down_the_same_stable_path(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - id: ab
    kind: split
    paths: [{percent: 50, next: a}, {percent: 50, next: b}]
  - {id: a, template: emails/welcome, next: done}
  - {id: b, template: emails/deep_dive, next: done}
  - {id: done, kind: exit}
""",
    )
    engine = store(ws)
    sweep(ws, engine, NOW)
    first = dict((c, s) for s, c in ledger_rows(engine))
    assert set(first.values()) <= {"a", "b"} and len(first) == 6
    from needlecast.campaign.journeys.sweeper import _split_point

    assert all((_split_point("j", "ab", c) < 50) == (s == "a") for c, s in first.items())


def test_goto_goes_round_through_a_wait_and_a_node_sends_once_per_entry(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - {id: hello, template: emails/welcome}
  - {id: pause, kind: wait, delay: 1d}
  - {id: again, kind: goto, next: hello}
""",
    )
    engine = store(ws)
    leads = lead_ids(engine)
    for day in range(4):
        sweep(ws, engine, NOW + timedelta(days=day))
    assert steps_of(engine, leads["lead0"]) == ["hello"]  # round and round, but one email per entry
    assert where_is(engine, leads["lead0"])[:2] == ("pause", "active")


def test_a_goto_cycle_without_a_wait_is_refused_naming_the_node_and_the_fix(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - {id: hello, template: emails/welcome}
  - {id: check, kind: branch, paths: [{when: [{tag: vip}], next: hello}], default: again}
  - {id: again, kind: goto, next: hello}
""",
    )
    problems = CampaignContext.load(ws).problems
    assert len(problems) == 1
    error = problems[0]
    assert isinstance(error, CampaignFileError)
    assert error.field in ("steps[1].paths[0].next", "steps[2].next")
    assert "no wait" in error.problem and "wait" in error.fix
    assert str(ws.campaigns_dir / "j.yaml") in str(error)


def test_time_of_day_wait_ends_at_the_local_hour_across_the_clocks_going_forward(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - {id: morning, kind: wait, until_time: "09:00"}
  - {id: hello, template: emails/welcome}
""",
    )
    engine = store(ws)
    saturday = datetime(2026, 3, 28, 10, 0, tzinfo=UTC)  # London changes to BST on Sunday 29 March at 01:00
    sweep(ws, engine, saturday)
    due = {row["due_at"] for row in positions(engine).values()}
    sunday_nine_bst = datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    assert {_aware(d) for d in due} == {sunday_nine_bst}
    assert sweep(ws, engine, sunday_nine_bst - timedelta(minutes=1)).enqueued == 0
    assert sweep(ws, engine, sunday_nine_bst).enqueued == 6


def test_date_wait_waits_until_the_attribute_minus_the_offset_in_the_persons_zone(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - {id: before-birthday, kind: wait, until_date: birthday, offset: -7d, at: "10:00", yearly: true}
  - {id: hello, template: emails/welcome}
""",
    )
    engine = store(ws)
    leads = lead_ids(engine)
    with engine.begin() as conn:
        conn.execute(update(contacts).values(attributes={"birthday": "1990-12-10"}, time_zone="America/New_York"))
        conn.execute(update(contacts).where(contacts.c.id == leads["lead5"]).values(attributes={}))
    report = sweep(ws, engine, NOW)
    assert report.left == Counter({"no date in birthday": 1})  # never guessed, never stranded: said why
    due = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # 3 December 10:00 in New York
    assert sweep(ws, engine, due - timedelta(minutes=1)).enqueued == 0
    assert sweep(ws, engine, due).enqueued == 5


def test_the_readmes_example_journey_loads(ws: Workspace) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("# campaigns/anti-wrinkle-recall.yaml\n", 1)[1].split("```", 1)[0]
    (ws.campaigns_dir / "anti-wrinkle-recall.yaml").write_text(block)
    ctx = CampaignContext.load(ws)
    assert not ctx.problems, ctx.problems
    journey = ctx.campaign("anti-wrinkle-recall").journey
    assert journey is not None and journey.goal == "booked" and journey.entry.unless_appointment
    assert [n.kind for n in journey.nodes.values()] == [
        "wait",
        "send",
        "wait_until",
        "branch",
        "split",
        "send",
        "send",
        "wait",
        "exit",
    ]


def test_plan_names_the_people_at_each_node_of_a_journey(ws: Workspace) -> None:
    from needlecast.campaign.plan.preview import build_plans

    write_journey(ws, "steps:\n  - {id: hello, template: emails/welcome}\n  - {id: pause, kind: wait, delay: 3d}\n")
    engine = store(ws)
    sweep(ws, engine, NOW)
    plans = build_plans(ws, engine, "j", 2, NOW).plans
    assert len(plans) == 1 and plans[0].emails.empty
    assert "pause (wait): 6 waiting, 0 due by 2026-11-26" in plans[0].notes
    assert "6 waiting, 6 due" in " ".join(build_plans(ws, engine, "j", 30, NOW).plans[0].notes)


def _engagement(
    engine: Engine, campaign_id: str, step_id: str, contact_id: int, kind: str, detail: str, at: datetime
) -> None:
    from sqlalchemy import select

    from needlecast.store.schema import deliveries, events

    with engine.begin() as conn:
        delivery = conn.execute(
            select(deliveries.c.id).where(
                deliveries.c.campaign_id == campaign_id,
                deliveries.c.step_id == step_id,
                deliveries.c.contact_id == contact_id,
            )
        ).scalar_one()
        conn.execute(
            insert(events).values(
                provider_event_id=f"ev-{delivery}-{kind}-{detail}",
                kind=kind,
                delivery_id=delivery,
                campaign_id=campaign_id,
                step_id=step_id,
                message_id="m",
                email_hash="",
                occurred_at=at,
                received_at=at,
                detail=detail,
                raw={},
            )
        )


def test_wait_until_a_click_on_a_named_link_of_an_earlier_send(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - {id: hello, template: emails/welcome}
  - id: clicked-book
    kind: wait_until
    engagement: {node: hello, action: clicked, link: /book}
    timeout: 3d
    next: thanks
    on_timeout: nudge
  - {id: nudge, template: emails/consultation, next: done}
  - {id: thanks, template: emails/deep_dive, next: done}
  - {id: done, kind: exit}
""",
    )
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    soon = NOW + timedelta(hours=1)
    _engagement(engine, "j", "hello", leads["lead0"], "clicked", "https://clinic.example/book?x=1", soon)
    _engagement(engine, "j", "hello", leads["lead1"], "clicked", "https://clinic.example/prices", soon)
    _engagement(engine, "j", "hello", leads["lead2"], "opened", "machine", soon)
    sweep(ws, engine, NOW + timedelta(hours=2))
    assert steps_of(engine, leads["lead0"]) == ["hello", "thanks"]
    assert steps_of(engine, leads["lead1"]) == ["hello"]  # another link: still waiting
    sweep(ws, engine, NOW + timedelta(days=3))
    assert steps_of(engine, leads["lead1"]) == ["hello", "nudge"]
    assert steps_of(engine, leads["lead2"]) == ["hello", "nudge"]  # a machine open is no click either
    from needlecast.store.journeys import engagements

    with engine.connect() as conn:
        assert (leads["lead2"], 1) not in engagements(conn, "j", "hello", "opened")  # machine opens never count


def test_one_scheduler_job_sweeps_every_journey_and_exists_only_while_a_journey_does(ws: Workspace) -> None:
    from needlecast.schedule import SchedulerRuntime, desired_jobs, run_journeys_job

    engine = store(ws)
    with engine.begin() as conn:
        assert "journeys" not in {job.id for job in desired_jobs(ws, conn, NOW)[0]}
    write_journey(ws, "steps:\n  - {id: hello, template: emails/welcome}\n  - {id: pause, kind: wait, delay: 3d}\n")
    with engine.begin() as conn:
        jobs = [job for job in desired_jobs(ws, conn, NOW)[0] if job.id == "journeys"]
    assert len(jobs) == 1 and jobs[0].args == [str(ws.root)]  # ids only
    run_journeys_job(str(ws.root), runtime=SchedulerRuntime(engine))
    assert len(positions(engine)) == 6 and len(ledger_rows(engine)) == 6


def test_a_paused_journey_moves_nobody_until_it_is_resumed(ws: Workspace) -> None:
    from needlecast.accounts.roles import Actor
    from needlecast.actions.campaigns import set_campaign_status

    admin = Actor("user", "admin@example.com", 1, "admin")
    write_journey(ws, "steps:\n  - {id: hello, template: emails/welcome}\n  - {id: pause, kind: wait, delay: 1d}\n")
    engine = store(ws)
    sweep(ws, engine, NOW)
    set_campaign_status(engine, ws, admin, "j", "paused")
    report = sweep(ws, engine, NOW + timedelta(days=2))
    assert report.blocked == "the journey is paused" and report.moved == 0
    assert {where_is(engine, c)[:2] for c in lead_ids(engine).values()} == {("pause", "active")}
    set_campaign_status(engine, ws, admin, "j", "active")
    assert sweep(ws, engine, NOW + timedelta(days=2)).left == Counter({"end of the journey": 6})
