"""A/B winner tests on SQLite and PostgreSQL, sending to the loopback SendGrid sink: a test slice, a decision
taken once at its time from human behaviour, the rest sent the winner, exactly once, whatever crashes."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.overview import campaign_overview
from needlecast.campaign.plan.planner import Planner
from needlecast.campaign.plan.winner import load_decisions
from needlecast.config import Workspace, open_workspace
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.reports.data import load_report
from needlecast.schedule import desired_jobs
from needlecast.store.schema import ab_decisions, deliveries
from needlecast.tracking.events import Event, normalise
from needlecast.tracking.webhook import ingest
from tests.sending import acne_leads_csv, leads_workspace, store_with_leads
from tests.test_runner import NOW, SECRET, Clock, _runner

LEADS = 400

WINNER = """
id: spring
kind: broadcast
segment: all-leads
time_zone: Europe/London
steps:
  - id: guide
    template: emails/broadcast
    ab:
      subjects: ["First subject", "Second subject"]
      test_fraction: 0.5
      decide_after: 4h
      metric: {metric}
      fallback: {fallback}
schedule:
  send_at: "2026-11-24 12:00"
signoff: {{reviewer: QA, date: 2026-11-24, note: test content}}
"""


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return leads_workspace(workspace_dir, store_url, monkeypatch, acne_leads_csv(LEADS))


_store = store_with_leads


def _campaign(ws: Workspace, metric: str = "clicks", fallback: str = "A") -> None:
    (ws.campaigns_dir / "spring.yaml").write_text(WINNER.format(metric=metric, fallback=fallback))


def _rows(engine: Engine) -> list[tuple[int, int, str]]:
    """(id, contact, arm) of every ledger row, in the order they were enqueued (by id: without ORDER BY,
    PostgreSQL returns rows in their physical order, which updates in place can change)."""
    with engine.connect() as conn:
        return [
            (int(i), int(c), str(a))
            for i, c, a in conn.execute(
                select(deliveries.c.id, deliveries.c.contact_id, deliveries.c.arm).order_by(deliveries.c.id)
            )
        ]


def _events(engine: Engine, raws: list[dict[str, object]]) -> None:
    parsed = [normalise(raw) for raw in raws]
    events = [e for e in parsed if isinstance(e, Event)]
    assert len(events) == len(raws)
    ingest(engine, events)


def _raw(kind: str, delivery_id: int, at: float, n: int, **extra: object) -> dict[str, object]:
    return {
        "event": kind,
        "email": f"x{delivery_id}@example.com",
        "timestamp": int(NOW.timestamp() + at),
        "delivery_id": str(delivery_id),
        "campaign": "spring",
        "step": "guide",
        "sg_event_id": f"{kind}-{delivery_id}-{n}",
        **extra,
    }


def _behave(engine: Engine, rates: dict[str, float], kind: str = "click", **extra: object) -> None:
    """Every test row is delivered a minute after noon; the first `rates[arm]` share of each arm's rows
    `kind`s an hour later."""
    rows = _rows(engine)
    raws = [_raw("delivered", d, 60, 0) for d, _c, _a in rows]
    for arm, rate in rates.items():
        mine = sorted(d for d, _c, a in rows if a == arm)
        raws += [_raw(kind, d, 3600, 1, **extra) for d in mine[: round(rate * len(mine))]]
    _events(engine, raws)


def test_the_test_slice_goes_first_and_the_rest_gets_the_significant_winner_exactly_once(
    ws: Workspace, sink: SendGridSink
) -> None:
    _campaign(ws, metric="clicks")
    engine = _store(ws)
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)
    first = runner.run_broadcast("spring")
    test_rows = _rows(engine)
    arms = Counter(a for _d, _c, a in test_rows)
    assert 150 < len(test_rows) < 250 and set(arms) == {"A", "B"} and min(arms.values()) > 60
    assert first.sent == len(test_rows) and first.deferred["waiting for the A/B winner"] == LEADS - len(test_rows)
    assert runner.run_broadcast("spring").enqueued == 0  # before the decision time nothing more goes

    _behave(engine, {"A": 0.05, "B": 0.40})
    clock.now = NOW + timedelta(hours=4, minutes=1)
    second = runner.sweep()[0]  # the sweeper finds the decision due
    assert [d.winner for d in second.decisions] == ["B"] and second.decisions[0].rule == "significant"
    assert second.sent == LEADS - len(test_rows)
    rows = _rows(engine)
    contacts = [c for _d, c, _a in rows]
    assert len(contacts) == len(set(contacts)) == LEADS  # everyone once: in the test or in the rest
    rest = {c for _d, c, a in rows} - {c for _d, c, _a in test_rows}
    assert {a for _d, c, a in rows if c in rest} == {"B"}
    accepted = sink.accepted_delivery_ids()
    assert len(accepted) == len(set(accepted)) == LEADS
    with engine.connect() as conn:
        decision = load_decisions(conn, "spring")["guide"]
    assert decision.figures["arms"]["B"]["successes"] > decision.figures["arms"]["A"]["successes"]
    assert decision.figures["p_value"] < 0.05 and decision.decided_at == clock.now
    assert runner.run_broadcast("spring").enqueued == 0 and len(sink.accepted_delivery_ids()) == LEADS
    shown = load_report(engine, "spring").tables()["ab_decisions"]
    assert list(shown["winner"]) == ["", "yes"] and shown["rule"].iloc[0].startswith("significant (p = 0.0")
    with engine.connect() as conn:
        [line] = campaign_overview(CampaignContext.load(runner.workspace), conn, "spring", clock.now).ab_tests
    assert line.startswith("step guide: arm B won on clicks (significant, p = ")


def test_the_test_slice_is_stable_and_split_between_the_arms_by_the_split(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws)
    engine = _store(ws)
    ctx = CampaignContext.load(open_workspace(ws.root))
    from needlecast.campaign.plan.winner import in_test_slice

    ids = list(range(1, 10_001))
    once = in_test_slice("spring", "guide", ids, 0.2)
    assert once == in_test_slice("spring", "guide", ids, 0.2)  # the same people on every run
    assert 1900 < sum(once) < 2100
    assert ctx.campaign("spring").steps[0].winner_test is not None
    _runner(ws, engine, sink, Clock(NOW)).run_broadcast("spring")
    before = {c: a for _d, c, a in _rows(engine)}
    assert set(before) == {
        c
        for c, tested in zip(
            range(1, LEADS + 1), in_test_slice("spring", "guide", range(1, LEADS + 1), 0.5), strict=True
        )
        if tested
    }


@pytest.mark.parametrize(
    ("fallback", "winner", "rule"), [("A", "A", "fallback: arm A"), ("better", "B", "fallback: the better rate")]
)
def test_a_difference_that_is_not_significant_falls_back(
    ws: Workspace, sink: SendGridSink, fallback: str, winner: str, rule: str
) -> None:
    _campaign(ws, metric="clicks", fallback=fallback)
    engine = _store(ws)
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)
    runner.run_broadcast("spring")
    _behave(engine, {"A": 0.10, "B": 0.12})
    clock.now = NOW + timedelta(hours=5)
    report = runner.run_broadcast("spring")
    assert [(d.winner, d.rule) for d in report.decisions] == [(winner, rule)]
    assert len(set(sink.accepted_delivery_ids())) == LEADS


def test_a_tie_with_nothing_measured_falls_back_to_arm_a(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws, metric="clicks", fallback="better")
    engine = _store(ws)
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)
    runner.run_broadcast("spring")
    _behave(engine, {"A": 0.0, "B": 0.0})
    clock.now = NOW + timedelta(hours=5)
    assert [d.winner for d in runner.run_broadcast("spring").decisions] == ["A"]


def test_machine_opens_never_count_toward_opens(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws, metric="opens")
    engine = _store(ws)
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)
    runner.run_broadcast("spring")
    rows = _rows(engine)
    a_rows = sorted(d for d, _c, a in rows if a == "A")
    b_rows = sorted(d for d, _c, a in rows if a == "B")
    raws = [_raw("delivered", d, 60, 0) for d, _c, _a in rows]
    # Arm A: every email "opened", by Apple's privacy proxy (marked) or a scanner two seconds after delivery.
    raws += [_raw("open", d, 3600, 1, sg_machine_open=True) for d in a_rows[::2]]
    raws += [_raw("open", d, 62, 1) for d in a_rows[1::2]]
    # Arm B: a third opened by people, an hour later.
    raws += [_raw("open", d, 3600, 1) for d in b_rows[: len(b_rows) // 3]]
    _events(engine, raws)
    clock.now = NOW + timedelta(hours=4, minutes=1)
    [decision] = runner.run_broadcast("spring").decisions
    assert decision.winner == "B" and decision.rule == "significant"
    assert decision.figures["arms"]["A"]["successes"] == 0


def test_a_crash_between_the_decision_and_the_rest_changes_nothing(
    ws: Workspace, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    _campaign(ws)
    engine = _store(ws)
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)
    runner.run_broadcast("spring")
    tested = len(_rows(engine))
    _behave(engine, {"A": 0.05, "B": 0.40})
    clock.now = NOW + timedelta(hours=4, minutes=1)

    real_enqueue = Planner.enqueue

    def crash(*args: object, **kwargs: object) -> None:
        raise SystemExit("killed after the decision was written")

    monkeypatch.setattr(Planner, "enqueue", crash)
    with pytest.raises(SystemExit):
        runner.run_broadcast("spring")
    with engine.connect() as conn:
        first = load_decisions(conn, "spring")["guide"]
    assert len(_rows(engine)) == tested  # decided, nothing of the rest enqueued yet
    # Later events would change the figures; the decision, once written, does not change.
    _behave(engine, {"A": 0.90, "B": 0.0})
    monkeypatch.setattr(Planner, "enqueue", real_enqueue)
    clock.now = NOW + timedelta(hours=6)
    after = runner.run_broadcast("spring")
    assert after.decisions == [] and after.sent == LEADS - tested
    with engine.connect() as conn:
        assert load_decisions(conn, "spring")["guide"] == first
        assert len(conn.execute(select(ab_decisions)).all()) == 1
    assert {a for _d, _c, a in _rows(engine)[tested:]} == {first.winner}
    accepted = sink.accepted_delivery_ids()
    assert len(accepted) == len(set(accepted)) == LEADS


def test_plan_and_the_scheduler_show_the_test_and_the_decision_time(
    ws: Workspace, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cli_runner import run

    _campaign(ws)
    engine = _store(ws)
    with engine.begin() as conn:
        jobs, _problems = desired_jobs(ws, conn, NOW - timedelta(days=1))
    decide = [j for j in jobs if j.id.startswith("decide:spring:guide:")]
    assert len(decide) == 1 and decide[0].trigger.run_date == NOW + timedelta(hours=4)
    planned = run(
        monkeypatch,
        ws.root,
        "plan",
        "spring",
        "--days",
        "400",
        "--format",
        "json",
        NEEDLECAST_DATABASE_URL=ws.database_url,
        NEEDLECAST_SECRET=SECRET,
    )
    data = json.loads(planned.stdout)["campaigns"][0]
    assert data["deferred"]["waiting for the A/B winner"] > 100
    assert any("A/B winner test on step guide: 50% of the audience" in n for n in data["notes"])


def test_a_winner_test_is_checked_when_the_file_is_read(ws: Workspace) -> None:
    from needlecast.campaign.definition.loader import load_campaign

    def problem(text: str) -> str:
        path = ws.campaigns_dir / "x.yaml"
        path.write_text(text)
        with pytest.raises(Exception) as caught:
            load_campaign(path, ("acne", "general"))
        return str(caught.value)

    good = WINNER.format(metric="clicks", fallback="A")
    assert "ab.metric" in problem(good.replace("metric: clicks", "metric: likes"))
    assert "ab.test_fraction" in problem(good.replace("test_fraction: 0.5", "test_fraction: 1.5"))
    assert "ab.decide_after" in problem(good.replace("decide_after: 4h", "decide_after: soon"))
    assert "ab.fallback" in problem(good.replace("fallback: A", "fallback: C"))
    assert "ab.decide_after" in problem(good.replace("      decide_after: 4h\n", ""))


@pytest.mark.database_independent
def test_the_console_shows_a_winner_tests_decision(ws: Workspace, sink: SendGridSink, store_url: str) -> None:
    """A face: what the page says (on SQLite alone, conftest's rule); the decision itself, as stored and
    read on both databases, is the tests' above."""
    from tests.console_site import site

    _campaign(ws)
    engine = _store(ws)
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)
    runner.run_broadcast("spring")
    _behave(engine, {"A": 0.05, "B": 0.40})
    clock.now = NOW + timedelta(hours=5)
    runner.run_broadcast("spring")
    with site(ws.root, store_url, import_sample=False) as running:  # the leads are in
        page = running.login("analyst").get("/console/campaigns/spring")
    assert page.status_code == 200 and "A/B: step guide: arm B won on clicks (significant" in page.text


TWO_STEPS = WINNER.replace(
    "schedule:", "  - {{id: reminder, template: emails/broadcast, variants: [acne]}}\nschedule:"
).format(metric="clicks", fallback="A")


@pytest.mark.database_independent
@pytest.mark.parametrize("decided", [False, True])
def test_the_people_the_ledger_has_are_left_out_before_their_emails_are_built_with_the_same_counts(
    ws: Workspace, decided: bool
) -> None:
    """`plan_broadcast` leaves out the people the ledger already has before building their emails. The plan is
    the one the rule gave when it built every email and took them out afterwards: the same emails (test slice,
    the rest with the winner or waiting for it, a step limited to one variant), the same "already have it" and
    "held back by the cap when it was sent" counts, the same people waiting for the winner."""
    import random

    import numpy as np

    from needlecast.audience.membership import load_frame
    from needlecast.campaign.plan.rules import EXCLUDED_ALREADY, EXCLUDED_CAPPED_EARLIER, LedgerKeys, plan_broadcast
    from needlecast.campaign.plan.winner import Decision

    (ws.campaigns_dir / "spring.yaml").write_text(TWO_STEPS)
    engine = _store(ws)
    ctx = CampaignContext.load(open_workspace(ws.root))
    campaign = ctx.campaign("spring")
    decisions = {"guide": Decision("guide", "B", "significant", "clicks", {}, NOW)} if decided else {}
    with engine.connect() as conn:
        frame = load_frame(conn, ctx.segments["all-leads"])
    frame.loc[frame.index % 3 == 0, "concerns"] = "ageing"  # no variant for the acne-only step
    frame.loc[frame.index % 7 == 0, "concern_consent"] = False  # general: none for that step either
    empty_history = pd.DataFrame({"contact_id": pd.Series(dtype="int64"), "at": pd.Series(dtype="datetime64[ns, UTC]")})
    rng = random.Random(7)
    ids = frame["id"].astype("int64").tolist()
    held = {step: sorted(rng.sample(ids, 150)) for step in ("guide", "reminder")}
    capped = {step: sorted(rng.sample(people, 40)) for step, people in held.items()}
    keys = LedgerKeys(
        {s: np.array(p, dtype="int64") for s, p in held.items()},
        {s: np.array(p, dtype="int64") for s, p in capped.items()},
    )

    def plan(ledger_keys: LedgerKeys):  # type: ignore[no-untyped-def]
        later = NOW + timedelta(hours=5)
        return plan_broadcast(ctx, campaign, frame, ledger_keys, empty_history, later, decisions=decisions)

    fresh, planned = plan(LedgerKeys()), plan(keys)
    pairs = list(zip(fresh.emails["step_id"], fresh.emails["contact_id"].astype(int), strict=True))
    in_ledger = [c in held[s] for s, c in pairs]
    was_capped = sum(c in capped[s] for s, c in pairs)
    kept = fresh.emails[[not h for h in in_ledger]].reset_index(drop=True)
    columns = ["step_id", "contact_id", "variant", "arm", "due_at", "status"]
    assert planned.emails[columns].reset_index(drop=True).equals(kept[columns])
    assert planned.excluded[EXCLUDED_ALREADY] == sum(in_ledger) - was_capped > 0
    assert planned.excluded[EXCLUDED_CAPPED_EARLIER] == was_capped > 0
    assert {k: v for k, v in planned.excluded.items() if k not in (EXCLUDED_ALREADY, EXCLUDED_CAPPED_EARLIER)} == dict(
        fresh.excluded
    )
    assert planned.deferred == fresh.deferred and (decided or fresh.deferred["waiting for the A/B winner"] > 0)
