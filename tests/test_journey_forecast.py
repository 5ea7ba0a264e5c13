"""`needlecast plan` for journeys and sequences comes from the journey engine: each send node's expected emails
per day over the next 30 days, from where people are now (frozen clock, hand-counted; SQLite and PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from needlecast.audience.membership import load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import Step
from needlecast.campaign.journeys.forecast import forecast
from needlecast.campaign.journeys.straight import straight_line
from needlecast.campaign.plan.planner import Planner
from needlecast.campaign.send.runner import RunReport
from needlecast.config import Workspace
from needlecast.readmodels.plans import plan_preview
from needlecast.store.delivery import delivery_store
from needlecast.store.journeys import Position
from needlecast.store.schema import deliveries
from tests.journey_helpers import NOW, SIGNOFF, journey_workspace, store, sweep, write_journey

# Six leads enter at 12:00 on Tuesday 24 November; London is on UTC then.
JOURNEY = """goal: {event: booked}
steps:
  - {id: hello, template: emails/welcome}
  - {id: pause, kind: wait, delay: 2d}
  - {id: tip, template: emails/deep_dive}
  - {id: booked-yet, kind: wait_until, event: booked, timeout: 3d, on_timeout: nudge}
  - {id: thanks, kind: exit}
  - {id: nudge, template: emails/consultation}
"""
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
  - {{id: consultation, template: emails/consultation, delay: 40d}}
"""
SPLIT = """steps:
  - id: ab
    kind: split
    paths: [{percent: 50, next: wait-a}, {percent: 50, next: b}]
  - {id: wait-a, kind: wait, delay: 1d, next: a}
  - {id: a, template: emails/welcome, next: done}
  - {id: b, template: emails/deep_dive, next: done}
  - {id: done, kind: exit}
"""


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return journey_workspace(workspace_dir, store_url, monkeypatch)


def _forecast(ws: Workspace, engine: Engine, campaign_id: str, days: int = 30) -> list[tuple[str, str, int, bool]]:
    plan = plan_preview(engine, ws, campaign_id, days, now=NOW, time_zone="Europe/London").campaigns[0]
    assert plan.emails == []  # no list of emails: the forecast stands for it
    return [(r["day"], r["node"], r["emails"], r["at_most"]) for r in plan.forecast]


def test_a_journeys_plan_is_the_expected_emails_per_day_and_node(ws: Workspace) -> None:
    write_journey(ws, JOURNEY)
    engine = store(ws)
    sweep(ws, engine, NOW)  # hello enqueued for all six (due now), everyone waits two days at `pause`
    assert _forecast(ws, engine, "j") == [
        ("2026-11-24", "hello", 6, False),  # already queued
        ("2026-11-26", "tip", 6, False),  # the fixed wait ends on Thursday: exact
        ("2026-11-29", "nudge", 6, True),  # three days on, if nobody books: at most
    ]
    notes = plan_preview(engine, ws, "j", 30, now=NOW).campaigns[0].notes
    assert "pause (wait): 6 waiting, 6 due by 2026-12-24" in notes
    assert "hello: 6 email(s) expected in the next 30 days, 6 of them already queued" in notes
    assert "nudge: at most 6 email(s) expected in the next 30 days" in notes
    assert any(n.startswith("counts marked 'at most' are upper bounds") for n in notes)


def test_the_forecast_stops_at_the_horizon(ws: Workspace) -> None:
    write_journey(ws, JOURNEY)
    engine = store(ws)
    sweep(ws, engine, NOW)
    assert _forecast(ws, engine, "j", days=3) == [("2026-11-24", "hello", 6, False), ("2026-11-26", "tip", 6, False)]


def test_a_sequences_plan_comes_from_the_journey_engine_before_and_after_it_starts(ws: Workspace) -> None:
    (ws.campaigns_dir / "seq.yaml").write_text(SEQUENCE)
    engine = store(ws)
    expected = [
        ("2026-11-24", "welcome", 6, False),
        ("2026-11-24", "evening", 6, False),  # 22:00 in London (quiet hours defer it when it is enqueued)
        ("2026-11-27", "deep-dive", 6, False),
    ]  # consultation (40 days) is beyond the 30
    assert _forecast(ws, engine, "seq") == expected  # the six it would enrol now
    assert plan_preview(engine, ws, "seq", 30, now=NOW).campaigns[0].new_enrolments == 6
    ctx = CampaignContext.load(ws)
    with engine.connect() as conn:
        frame = load_frame(conn)
    Planner(ws, delivery_store(engine)).advance_sequence(ctx, ctx.campaign("seq"), frame, NOW, RunReport("seq"))
    assert _forecast(ws, engine, "seq") == expected  # the same six, now in it (welcome queued)
    assert plan_preview(engine, ws, "seq", 30, now=NOW).campaigns[0].new_enrolments == 0
    assert _forecast(ws, engine, "seq", days=41)[-1] == ("2027-01-03", "consultation", 6, False)


def test_a_splits_forecast_is_the_cohorts_the_sweeper_then_sends(ws: Workspace) -> None:
    write_journey(ws, SPLIT)
    engine = store(ws)
    sweep(ws, engine, NOW - timedelta(minutes=1))  # in at the split; `b` enqueued, `wait-a` waits a day
    forecast = _forecast(ws, engine, "j")
    sweep(ws, engine, NOW + timedelta(days=1))
    with engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.step_id, deliveries.c.due_at)).all()
    days = pd.to_datetime([d for _, d in rows], utc=True).tz_convert("Europe/London").strftime("%Y-%m-%d")
    sent = Counter(zip(days, (s for s, _ in rows), strict=True))
    assert {(day, node): n for day, node, n, _ in forecast} == dict(sent)
    assert sorted(node for _, node, _, _ in forecast) == ["a", "b"] and not any(m for *_, m in forecast)
    assert sum(n for _, _, n, _ in forecast) == 6


def test_every_person_is_walked_however_many_distinct_moments_there_are() -> None:
    steps = [Step("welcome", "t", index=0), Step("deep", "t", delay=timedelta(days=3), index=1)]
    steps.append(Step("consult", "t", delay=timedelta(days=7), index=2))
    entered = [NOW - timedelta(seconds=i) for i in range(30_000)]  # 30,000 walks of several steps each
    waiting = [Position(i, 1, "wait-2", at, at + timedelta(days=3), at) for i, at in enumerate(entered)]
    rows = forecast("seq", straight_line(steps), waiting, [], NOW, NOW + timedelta(days=30))
    assert rows.groupby("node")["emails"].sum().to_dict() == {"deep": 30_000, "consult": 30_000}
    assert not rows["at_most"].any()
