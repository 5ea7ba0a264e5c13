"""Send-time optimisation: synthetic histories with known preferred hours (per person, per audience, none) on
a frozen clock; DST inside the window; the holdout; machine opens; a broadcast planned, reported and sent
exactly once through the sink on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, select

from needlecast.campaign.definition.model import Optimise
from needlecast.campaign.plan.send_time import (
    AUDIENCE,
    CAMPAIGN,
    HOLDOUT,
    OWN,
    Engagement,
    choose_send_times,
)
from needlecast.config import Workspace, open_workspace
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.reports.data import load_report
from needlecast.store.delivery import delivery_store
from needlecast.store.schema import contacts, deliveries
from needlecast.tracking.events import Event, normalise
from needlecast.tracking.webhook import ingest
from tests.cli_runner import run
from tests.sending import acne_leads_csv, leads_workspace, store_with_leads
from tests.test_runner import SECRET, Clock, _runner

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo")


def _history(preferred: dict[int, tuple[str, int]], per_person: int, seed: int = 7) -> pd.DataFrame:
    """Events for each person at their preferred local hour on past days (minutes random), plus one stray
    event at another hour for every four."""
    rng = np.random.default_rng(seed)
    rows = []
    for contact, (zone, hour) in preferred.items():
        for n in range(per_person):
            day = (NOW - timedelta(days=int(rng.integers(1, 120)))).astimezone(ZoneInfo(zone)).date()
            wanted = hour if n % 4 else int(rng.integers(0, 24))
            local = datetime(day.year, day.month, day.day, wanted, int(rng.integers(0, 60)), tzinfo=ZoneInfo(zone))
            rows.append((contact, int(local.timestamp())))
    return pd.DataFrame(rows, columns=["contact_id", "at"]).astype("int64")


def _members(preferred: dict[int, tuple[str, int]]) -> pd.DataFrame:
    return pd.DataFrame({"id": list(preferred), "zone": [zone for zone, _hour in preferred.values()]})


def _local_hour(moment: pd.Timestamp, zone: str) -> int:
    return int(moment.tz_convert(zone).hour)


def test_people_with_enough_history_get_their_own_hour() -> None:
    rng = np.random.default_rng(1)
    preferred = {c: (ZONES[c % 3], int(rng.integers(0, 24))) for c in range(1, 1501)}
    members = _members(preferred)
    plain = pd.Series(pd.Timestamp("2026-11-25 09:00", tz="UTC"), index=members.index)
    optimise = Optimise(timedelta(hours=24), holdout=0.1, min_events=5)
    due, rule = choose_send_times("c", "s", members, plain, optimise, Engagement.of(_history(preferred, 8), NOW))
    assert set(rule) == {OWN, HOLDOUT}
    near = []
    for contact, moment in zip(members["id"][rule == OWN], due[rule == OWN], strict=True):
        zone, hour = preferred[int(contact)]
        off = abs(_local_hour(moment, zone) - hour)
        near.append(min(off, 24 - off) <= 1)
    assert len(near) > 1200 and sum(near) / len(near) >= 0.9
    window_end = plain.iloc[0] + timedelta(hours=24)
    assert ((due >= plain) & (due < window_end)).all()  # within the window, on the hour
    assert (pd.DatetimeIndex(due).minute == 0).all()


def test_too_little_history_takes_the_audiences_hour_and_none_the_campaigns_time() -> None:
    crowd = {c: ("Europe/London", 19) for c in range(1, 201)}  # the audience reads at 19:00
    newcomers = {c: ("Europe/London", 7) for c in range(1001, 1101)}  # two events each: not enough
    strangers = {c: ("Europe/London", 7) for c in range(2001, 2051)}  # no history at all
    history = pd.concat([_history(crowd, 6), _history(newcomers, 2)], ignore_index=True)
    members = _members({**crowd, **newcomers, **strangers})
    plain = pd.Series(pd.Timestamp("2026-11-25 09:00", tz="UTC"), index=members.index)
    optimise = Optimise(timedelta(hours=24), holdout=0.0, min_events=5)
    due, rule = choose_send_times("c", "s", members, plain, optimise, Engagement.of(history, NOW))
    by_id = dict(zip(members["id"], zip(rule, due, strict=True), strict=True))
    assert {by_id[c][0] for c in newcomers} == {AUDIENCE} == {by_id[c][0] for c in strangers}
    assert {_local_hour(by_id[c][1], "Europe/London") for c in newcomers} == {19}
    nobody = Engagement.of(history.iloc[0:0], NOW)
    due, rule = choose_send_times("c", "s", members, plain, optimise, nobody)
    assert set(rule) == {CAMPAIGN} and (due == plain).all()


def test_recent_behaviour_outweighs_old_habits() -> None:
    old = _history({1: ("Europe/London", 7)}, 12)
    old["at"] -= 200 * 86400  # a year-ago habit of 07:00...
    recent = _history({1: ("Europe/London", 20)}, 6)  # ...and the last months at 20:00
    members = _members({1: ("Europe/London", 0)})
    plain = pd.Series([pd.Timestamp("2026-11-25 00:00", tz="UTC")])
    due, rule = choose_send_times(
        "c", "s", members, plain, Optimise(holdout=0.0), Engagement.of(pd.concat([old, recent]), NOW)
    )
    assert rule.iloc[0] == OWN and _local_hour(due.iloc[0], "Europe/London") == 20


def test_the_window_is_read_on_the_wall_clock_across_a_dst_change() -> None:
    # London leaves summer time at 02:00 on 25 October 2026: 09:00 local is 08:00 UTC before, 09:00 after.
    person = {1: ("Europe/London", 9)}
    members = _members(person)
    plain = pd.Series([pd.Timestamp("2026-10-24 12:00", tz="UTC")])
    history = _history(person, 10)
    due, rule = choose_send_times(
        "c", "s", members, plain, Optimise(timedelta(hours=48), holdout=0.0), Engagement.of(history, NOW)
    )
    assert rule.iloc[0] == OWN and _local_hour(due.iloc[0], "Europe/London") == 9
    assert due.iloc[0] == pd.Timestamp("2026-10-25 09:00", tz="UTC")  # the first 09:00 in the window, after DST


def test_the_holdout_is_stable_across_runs_and_goes_at_the_plain_time() -> None:
    people = {c: ("Europe/London", 20) for c in range(1, 5001)}
    members = _members(people)
    plain = pd.Series(pd.Timestamp("2026-11-25 09:00", tz="UTC"), index=members.index)
    engagement = Engagement.of(_history(people, 6), NOW)
    first = choose_send_times("camp", "guide", members, plain, Optimise(holdout=0.1), engagement)
    again = choose_send_times("camp", "guide", members, plain, Optimise(holdout=0.1), engagement)
    held = first[1] == HOLDOUT
    assert (held == (again[1] == HOLDOUT)).all() and 420 < held.sum() < 580
    assert (first[0][held] == plain[held]).all() and (first[0][~held] != plain[~held]).all()
    other_step = choose_send_times("camp", "follow-up", members, plain, Optimise(holdout=0.1), engagement)
    assert (held != (other_step[1] == HOLDOUT)).any()  # each send draws its own holdout


# -- through the store and the sink ---------------------------------------------------------------------------

OPTIMISED = """
id: autumn
kind: broadcast
segment: all-leads
time_zone: Europe/London
steps:
  - {id: guide, template: emails/broadcast}
schedule: {send_at: "2026-11-24 12:00", optimise: true, window: 24h, holdout: 0.2, min_events: 3}
signoff: {reviewer: QA, date: 2026-11-24, note: test content}
"""
LEADS = 60


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    return leads_workspace(workspace_dir, store_url, monkeypatch, acne_leads_csv(LEADS))


_store = store_with_leads


def _history_through_the_webhook(engine: Engine, hour_of: dict[int, int]) -> None:
    """An earlier campaign's rows for everyone, and opens at each person's hour (UTC) on past days; plus, for
    everyone, machine opens at 03:00 (marked, or two seconds after sending) that must count for nothing."""
    from needlecast import ledger

    earlier = NOW - timedelta(days=20)
    with engine.begin() as conn:
        ledger.enqueue_columns(
            delivery_store(conn),
            conn,
            {
                "campaign_id": "earlier",
                "step_id": "s",
                "contact_id": list(hour_of),
                "segment": "all-leads",
                "variant": "acne",
                "arm": "",
                "due_at": earlier,
                "status": "sent",
                "error": "",
            },
        )
        rows = conn.execute(
            select(deliveries.c.id, deliveries.c.contact_id).where(deliveries.c.campaign_id == "earlier")
        )
        delivery_of = {int(c): int(d) for d, c in rows}
        conn.execute(
            deliveries.update().where(deliveries.c.campaign_id == "earlier").values(sent_at=earlier.replace(hour=3))
        )
    raws: list[dict[str, object]] = []
    for contact, hour in hour_of.items():
        d = delivery_of[contact]
        for day in range(1, 5):
            at = (earlier + timedelta(days=day)).replace(hour=hour, minute=10)
            raws.append(
                {"event": "open", "timestamp": int(at.timestamp()), "delivery_id": str(d), "sg_event_id": f"h{d}-{day}"}
            )
        for day in range(0, 6):
            at = (earlier + timedelta(days=day)).replace(hour=3, minute=0, second=2)
            raws.append(
                {
                    "event": "open",
                    "timestamp": int(at.timestamp()),
                    "delivery_id": str(d),
                    "sg_event_id": f"m{d}-{day}",
                    "sg_machine_open": day > 0,
                }
            )
    events = [e for e in map(normalise, raws) if isinstance(e, Event)]
    assert len(events) == len(raws)
    ingest(engine, events)


def test_an_optimised_broadcast_is_planned_sent_at_each_persons_hour_once_and_reported(
    ws: Workspace, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ws.campaigns_dir / "autumn.yaml").write_text(OPTIMISED)
    engine = _store(ws)
    with engine.connect() as conn:
        ids = sorted(int(c) for c in conn.execute(select(contacts.c.id)).scalars())
    hour_of = {c: (15, 20)[c % 2] for c in ids[:40]}  # the other 20 have no history
    _history_through_the_webhook(engine, hour_of)

    planned = run(
        monkeypatch,
        ws.root,
        "plan",
        "autumn",
        "--days",
        "3",
        "--csv",
        str(ws.root / "plan.csv"),
        "--format",
        "json",
        NEEDLECAST_DATABASE_URL=ws.database_url,
        NEEDLECAST_SECRET=SECRET,
        NEEDLECAST_QUIET_HOURS="off",
    )
    notes = json.loads(planned.stdout)["campaigns"][0]["notes"]
    assert any(n.startswith("send-time optimisation: own history ") for n in notes), notes
    csv = pd.read_csv(ws.root / "plan.csv")
    assert set(csv["timing"]) == {OWN, AUDIENCE, HOLDOUT}

    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)
    first = runner.run_broadcast("autumn")
    with engine.connect() as conn:
        rows = pd.DataFrame(
            conn.execute(
                select(deliveries.c.contact_id, deliveries.c.due_at, deliveries.c.timing).where(
                    deliveries.c.campaign_id == "autumn"
                )
            ).all(),
            columns=["contact_id", "due_at", "timing"],
        )
    assert len(rows) == LEADS
    own = rows[rows["timing"] == OWN]
    assert len(own) > 20
    for contact, due in zip(own["contact_id"], pd.to_datetime(own["due_at"], utc=True), strict=True):
        assert due.hour == hour_of[int(contact)]  # never 03:00: the machine opens counted for nothing
    assert (pd.to_datetime(rows.loc[rows["timing"] == HOLDOUT, "due_at"], utc=True) == NOW).all()
    assert first.sent == int((pd.to_datetime(rows["due_at"], utc=True) <= NOW).sum())

    for hours in range(1, 25):  # the scheduler's sweeps through the window
        clock.now = NOW + timedelta(hours=hours)
        runner.sweep()
    accepted = sink.accepted_delivery_ids()
    assert len(accepted) == len(set(accepted)) == LEADS

    with engine.connect() as conn:
        sent = conn.execute(select(deliveries.c.id).where(deliveries.c.campaign_id == "autumn")).scalars().all()
    later = int((NOW + timedelta(days=2)).timestamp())
    raws = [{"event": "delivered", "timestamp": later, "delivery_id": str(d), "sg_event_id": f"d{d}"} for d in sent]
    raws += [
        {"event": "open", "timestamp": later + 600, "delivery_id": str(d), "sg_event_id": f"o{d}"} for d in sent[::3]
    ]
    ingest(engine, [e for e in map(normalise, raws) if isinstance(e, Event)])
    report = load_report(engine, "autumn").tables()["send_time"]
    assert list(report["group"]) == ["holdout", "optimised"]
    assert (report["open_low"] <= report["open_rate"]).all() and (report["open_rate"] <= report["open_high"]).all()


def test_quiet_hours_still_apply_to_an_optimised_time(
    ws: Workspace, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "21:00-08:00")
    ws = open_workspace(ws.root)  # the settings read the environment when the workspace is opened
    (ws.campaigns_dir / "autumn.yaml").write_text(OPTIMISED.replace("holdout: 0.2", "holdout: 0.0"))
    engine = _store(ws)
    with engine.connect() as conn:
        ids = sorted(int(c) for c in conn.execute(select(contacts.c.id)).scalars())
    _history_through_the_webhook(engine, dict.fromkeys(ids, 22))  # everyone reads at 22:00, in quiet hours
    report = _runner(ws, engine, sink, Clock(NOW)).run_broadcast("autumn")
    assert report.deferred["deferred by quiet hours"] == LEADS
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.due_at, deliveries.c.timing).where(deliveries.c.campaign_id == "autumn")
        )
        chosen = {(pd.Timestamp(due).tz_convert("UTC").strftime("%d %H:%M"), timing) for due, timing in rows}
    assert chosen == {("25 08:00", OWN)}  # 22:00 on the 24th moved to the end of the quiet hours


SEQUENCE = """
id: drip
kind: sequence
segment: all-leads
time_zone: Europe/London
steps:
  - {id: welcome, template: emails/welcome, delay: 0d}
  - {id: follow-up, template: emails/deep_dive, delay: 1d, optimise: true, holdout: 0.0, min_events: 3}
enrol: {joined_after: "2026-01-01"}
signoff: {reviewer: QA, date: 2026-11-24, note: test content}
"""


def test_an_optimised_sequence_step_goes_at_each_persons_hour_after_its_delay(
    ws: Workspace, sink: SendGridSink
) -> None:
    (ws.campaigns_dir / "drip.yaml").write_text(SEQUENCE)
    engine = _store(ws)
    with engine.connect() as conn:
        ids = sorted(int(c) for c in conn.execute(select(contacts.c.id)).scalars())
    hour_of = {c: (7, 18)[c % 2] for c in ids}
    _history_through_the_webhook(engine, hour_of)
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)
    runner.run_sequence("drip")  # enrols everyone at 12:00; the welcome goes at once
    clock.now = NOW + timedelta(days=2)  # past the follow-up's window (24h after its 1d delay)
    runner.run_sequence("drip")
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.contact_id, deliveries.c.due_at, deliveries.c.timing).where(
                deliveries.c.campaign_id == "drip", deliveries.c.step_id == "follow-up"
            )
        ).all()
    assert len(rows) == LEADS and {timing for _c, _d, timing in rows} == {OWN}
    for contact, due, _timing in rows:
        due = pd.Timestamp(due).tz_convert("UTC")
        assert due.hour == hour_of[int(contact)]
        assert NOW + timedelta(days=1) <= due < NOW + timedelta(days=2)  # within the window after the delay
    accepted = sink.accepted_delivery_ids()
    assert len(accepted) == len(set(accepted)) == 2 * LEADS
