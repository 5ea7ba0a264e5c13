"""Warm-up, on SQLite and PostgreSQL: a new sender's broadcast to the loopback SendGrid sink, sent by three
workers (threads) on a frozen clock stepped hour by hour across three days, never goes over the day's or the
hour's cap, mails every lead exactly once, and the most engaged first."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert, select, update

from needlecast.audience.contacts import get_contact
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.plan.preview import build_plans, summary_rows
from needlecast.campaign.send.report import RunReport
from needlecast.campaign.send.runner import Runner
from needlecast.campaign.send.warmup import SENDGRID_HOURLY, WAITING, Caps, caps_on, next_window
from needlecast.config import Workspace, open_workspace
from needlecast.config.deliverability import WarmupSettings
from needlecast.delivery.base import RetryPolicy
from needlecast.delivery.sendgrid import SendGridBackend
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.readmodels.campaigns import campaign_page
from needlecast.store import sendcaps
from needlecast.store.delivery import delivery_store
from needlecast.store.schema import contacts, deliveries, events
from needlecast.wording import for_people
from tests.cli_runner import run
from tests.sending import leads_workspace, store_with_leads
from tests.test_runner import API_KEY, BROADCAST, NOW, Clock

LEADS = 140
DAY0 = NOW.replace(hour=0)
# first_day = 30, growth = 1.5, hours = 3: 30 (10 an hour), 45 (15 an hour), 68 (23 an hour): 140 take 3 days
CAPS = {DAY0.date() + timedelta(days=d): caps for d, caps in enumerate([Caps(30, 10), Caps(45, 15), Caps(68, 23)])}


def _clicks(lead: int) -> int:
    """How engaged lead N is: its human clicks in the last weeks (half the leads have none)."""
    return 0 if lead % 2 else 1 + (lead * 7) % 5


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    rows = "".join(f"lead{i}@example.com,Lead{i},acne,yes,yes,2026-11-01,no\n" for i in range(LEADS))
    leads_workspace(
        workspace_dir,
        store_url,
        monkeypatch,
        "Email,First Name,Concern,Marketing consent,Concern consent,Signed up,Booked\n" + rows,
    )
    (workspace_dir / "campaigns" / "c.yaml").write_text(BROADCAST.format(segment="all-leads"))
    with (workspace_dir / "needlecast.toml").open("a") as config:
        config.write('\n[deliverability]\nwarmup = {start = "2026-11-24", first_day = 30, growth = 1.5, hours = 3}\n')
    return open_workspace(workspace_dir)


def _engagement(engine: Engine) -> None:
    """An earlier campaign's emails and the clicks on them (what warm-up ranks people by)."""
    sent_at = NOW - timedelta(days=6)
    with engine.begin() as conn:
        for lead in range(LEADS):
            if not _clicks(lead):
                continue
            contact = int(get_contact(conn, f"lead{lead}@example.com")["id"])
            row = conn.execute(
                insert(deliveries).values(
                    campaign_id="autumn",
                    step_id="news",
                    contact_id=contact,
                    segment="all-leads",
                    variant="acne",
                    arm="",
                    status="sent",
                    due_at=sent_at,
                    claim_token="",
                    sent_at=sent_at,
                    message_id="m",
                    error="",
                    attempts=1,
                    created_at=sent_at,
                    updated_at=sent_at,
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(events),
                [
                    {
                        "provider_event_id": f"click-{lead}-{n}",
                        "kind": "clicked",
                        "delivery_id": row,
                        "campaign_id": "autumn",
                        "step_id": "news",
                        "message_id": "m",
                        "email_hash": "",
                        "occurred_at": sent_at + timedelta(hours=n + 1),
                        "received_at": sent_at + timedelta(hours=n + 1),
                        "detail": "https://clinic.example/",
                        "raw": {},
                    }
                    for n in range(_clicks(lead))
                ],
            )


def _runner(
    ws: Workspace, engine: Engine, sink: SendGridSink, clock: Clock, stop: threading.Event | None = None
) -> Runner:
    settings = dataclasses.replace(
        ws.settings,
        delivery=dataclasses.replace(ws.settings.delivery, api_host=sink.url, batch_size=5, max_in_flight=1),
    )
    backends = partial(SendGridBackend, settings, api_key=API_KEY, retry=RetryPolicy(1, 0.01, 0.02))
    return Runner(dataclasses.replace(ws, settings=settings), engine, backends, clock=clock, stop=stop, claim_size=4)


def test_the_caps_follow_the_curve_and_sendgrids_published_schedule() -> None:
    own = WarmupSettings(start=date(2027, 1, 10), first_day=50, growth=1.4, hours=8, days=10)
    assert caps_on(own, date(2027, 1, 9)) == Caps(50, 7)  # before the start: day 0
    assert caps_on(own, date(2027, 1, 12)) == Caps(98, 13)  # 50 x 1.4 x 1.4
    assert caps_on(own, date(2027, 1, 20)) is None  # after `days`: no cap
    sendgrid = WarmupSettings(start=date(2027, 1, 10))
    assert caps_on(sendgrid, date(2027, 1, 10)) == Caps(24 * 20, 20)
    assert caps_on(sendgrid, date(2027, 1, 11)) == Caps(24 * 28, 28)
    assert len(SENDGRID_HOURLY) == 42 and caps_on(sendgrid, date(2027, 1, 10) + timedelta(days=42)) is None
    assert caps_on(None, date(2027, 1, 10)) is None


def test_three_workers_keep_the_warm_up_caps_over_three_days_and_mail_the_most_engaged_first(
    ws: Workspace, sink: SendGridSink
) -> None:
    engine = store_with_leads(ws)
    _engagement(engine)
    # `plan` shows the days the send takes, and the emails of each.
    plan = build_plans(ws, engine, "winter", 30, NOW).plans[0]
    assert any(
        "takes 3 day(s)" in note and "30 on 2026-11-24, 45 on 2026-11-25, 65 on 2026-11-26" in note
        for note in plan.notes
    )
    assert summary_rows(plan).groupby("day")["recipients"].sum().to_dict() == {
        "2026-11-24": 30,
        "2026-11-25": 45,
        "2026-11-26": 65,
    }
    clock = Clock(DAY0)
    stopped = threading.Event()
    stopped.set()  # plan and enqueue only: the workers send
    assert _runner(ws, engine, sink, Clock(NOW), stopped).run_broadcast("winter").enqueued == LEADS
    workers = [_runner(ws, engine, sink, clock) for _ in range(3)]
    ctx = CampaignContext.load(workers[0].workspace)
    campaign = ctx.campaign("winter")
    sent_in: dict[datetime, list[str]] = defaultdict(list)  # the hour -> addresses sent in it
    for hour in range(72):
        clock.now = DAY0 + timedelta(hours=hour)
        before = len(sink.accepted)
        threads = [threading.Thread(target=w.dispatch, args=(ctx, campaign, RunReport("winter"))) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        sent_in[clock.now] = [email for a in sink.accepted[before:] for email, _ in a.recipients]
        if clock.now == NOW:  # the first hour that sends: the rest of the day's share waits in the ledger
            with engine.connect() as conn:
                waiting = conn.execute(
                    select(deliveries.c.id).where(deliveries.c.campaign_id == "winter", deliveries.c.error == WAITING)
                ).all()
            assert len(sent_in[NOW]) == 10 and len(waiting) == 20
    by_day: dict[date, list[str]] = defaultdict(list)
    for moment, sent in sent_in.items():
        assert len(sent) <= CAPS[moment.date()].hour, f"{len(sent)} sent at {moment:%d %H:%M}"
        by_day[moment.date()] += sent
    assert [len(by_day[day]) for day in sorted(CAPS)] == [30, 45, LEADS - 75]  # each day's cap binds
    ids = sink.accepted_delivery_ids()
    with engine.connect() as conn:
        every = {
            str(i) for i in conn.execute(select(deliveries.c.id).where(deliveries.c.campaign_id == "winter")).scalars()
        }
        assert delivery_store(conn).counts(conn, "winter")["sent"] == LEADS
    assert len(ids) == len(set(ids)) == LEADS and set(ids) == every  # every lead exactly once
    clicks = {f"lead{i}@example.com": _clicks(i) for i in range(LEADS)}
    days = sorted(by_day)
    for earlier, later in itertools.pairwise(days):
        assert min(clicks[e] for e in by_day[earlier]) >= max(clicks[e] for e in by_day[later])
    assert Counter(clicks[e] for e in by_day[days[0]]).most_common(1)[0][0] == 5  # day 0: the most engaged


def test_a_booking_takes_the_least_room_of_its_windows_and_gives_the_rest_back(engine: Engine) -> None:
    day, hour = ("warmup:2027-01-10", 30), ("warmup:2027-01-10T09", 10)
    with engine.begin() as conn:
        assert sendcaps.book(conn, [day, hour], 12) == (10, [20, 0])  # the hour is the narrower window
        assert sendcaps.book(conn, [day, hour], 5) == (0, [20, 0])  # a full hour books nothing anywhere
        later = ("warmup:2027-01-10T10", 10)
        assert sendcaps.book(conn, [day, later], 10) == (10, [10, 0])
        assert sendcaps.book(conn, [day, ("warmup:2027-01-10T11", 10)], 25) == (10, [0, 0])
        assert sendcaps.book(conn, [day, ("warmup:2027-01-10T12", 10)], 1) == (0, [0, 10])  # the day is full


def test_needlecast_plan_says_how_many_days_the_send_takes_and_lists_them(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_with_leads(ws).dispose()
    start = datetime.now(UTC).date() + timedelta(days=2)
    config = ws.root / "needlecast.toml"
    config.write_text(config.read_text().replace('start = "2026-11-24"', f'start = "{start}"'))
    campaign = BROADCAST.replace('send_at: "2026-11-24 12:00"', f'send_at: "{start} 12:00"')
    (ws.campaigns_dir / "c.yaml").write_text(campaign.format(segment="all-leads"))
    shown = run(
        monkeypatch,
        ws.root,
        "plan",
        "winter",
        "--days",
        "10",
        NEEDLECAST_DATABASE_URL=ws.database_url,
        NEEDLECAST_SECRET="s" * 40,
    )
    assert shown.code == 0, shown.stderr
    said = " ".join(shown.stdout.split())
    days = [start + timedelta(days=d) for d in range(3)]
    assert f"takes 3 day(s), the most engaged people first: 30 on {days[0]}, 45 on {days[1]}, 65 on {days[2]}" in said


EVENING = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)  # 20:00 in London: the last hour before quiet hours (21-08)
NEW_YORK = "America/New_York"  # 20:00 UTC is 15:00 there: the next hour is not quiet


def _in_quiet_hours(moment: datetime, zone: str) -> bool:
    clock = moment.astimezone(ZoneInfo(zone)).time()
    return clock >= time(21) or clock < time(8)


def test_an_email_the_cap_holds_back_waits_for_a_window_outside_its_quiet_hours_and_goes_once(
    ws: Workspace, sink: SendGridSink
) -> None:
    """The hour's cap (10) holds back 20 of day 0's 30 emails at 20:00: a Londoner's wait until 08:00 (the next
    hour, 21:00, is quiet in London), a New Yorker's until 21:00 UTC (16:00 there). Stepped hour by hour over
    four days, no email goes in its recipient's quiet hours, no hour passes its cap, every lead gets one."""
    (ws.campaigns_dir / "c.yaml").write_text(
        BROADCAST.replace('send_at: "2026-11-24 12:00"', 'send_at: "2026-11-24 20:00"').format(segment="all-leads")
    )
    engine = store_with_leads(ws)
    zones = {f"lead{i}@example.com": NEW_YORK if i % 3 == 0 else "Europe/London" for i in range(LEADS)}
    with engine.begin() as conn:
        conn.execute(
            update(contacts).where(contacts.c.email.in_([e for e, z in zones.items() if z == NEW_YORK])),
            {"time_zone": NEW_YORK},
        )
    clock = Clock(DAY0)
    stopped = threading.Event()
    stopped.set()  # plan and enqueue only
    assert _runner(ws, engine, sink, Clock(NOW), stopped).run_broadcast("winter").enqueued == LEADS
    worker = _runner(ws, engine, sink, clock)
    ctx = CampaignContext.load(worker.workspace)
    campaign = ctx.campaign("winter")
    sent_in: dict[datetime, list[str]] = {}
    for hour in range(4 * 24):
        clock.now = DAY0 + timedelta(hours=hour)
        before = len(sink.accepted)
        worker.dispatch(ctx, campaign, RunReport("winter"))
        sent_in[clock.now] = [email for a in sink.accepted[before:] for email, _ in a.recipients]
        if clock.now == EVENING:
            with engine.connect() as conn:
                waiting = conn.execute(
                    select(contacts.c.email, deliveries.c.due_at)
                    .join(contacts, contacts.c.id == deliveries.c.contact_id)
                    .where(deliveries.c.campaign_id == "winter", deliveries.c.error == WAITING)
                ).all()
            assert len(sent_in[EVENING]) == 10 and len(waiting) == 20
            due = {zones[email]: set() for email, _ in waiting}
            for email, at in waiting:
                due[zones[email]].add(at)
            assert due == {
                "Europe/London": {datetime(2026, 11, 25, 8, 0, tzinfo=UTC)},
                NEW_YORK: {EVENING + timedelta(hours=1)},
            }
    for moment, sent in sent_in.items():
        assert len(sent) <= CAPS.get(moment.date(), Caps(LEADS, LEADS)).hour, f"{len(sent)} sent at {moment}"
        loud = [email for email in sent if _in_quiet_hours(moment, zones[email])]
        assert not loud, f"{len(loud)} sent in their quiet hours at {moment:%d %H:%M}"
    ids = sink.accepted_delivery_ids()
    with engine.connect() as conn:
        every = {
            str(i) for i in conn.execute(select(deliveries.c.id).where(deliveries.c.campaign_id == "winter")).scalars()
        }
        assert delivery_store(conn).counts(conn, "winter")["sent"] == LEADS
    assert len(ids) == len(set(ids)) == LEADS and set(ids) == every  # one ledger row each, sent exactly once


def test_the_next_window_skips_quiet_hours_and_full_windows(engine: Engine) -> None:
    warm = WarmupSettings(start=date(2026, 11, 24), first_day=30, growth=1.5, hours=3)
    quiet = (time(21), time(8))
    late = datetime(2026, 11, 24, 23, 10, tzinfo=UTC)
    with engine.begin() as conn:
        # the day used up at 23:10: the next day starts at 00:00 UTC, quiet in London until 08:00
        assert next_window(conn, warm, late, True, "Europe/London", quiet) == datetime(2026, 11, 25, 8, tzinfo=UTC)
        # ... and 08:00 in Kolkata is 02:30 UTC: a window that starts mid-hour
        assert next_window(conn, warm, late, True, "Asia/Kolkata", quiet) == datetime(2026, 11, 25, 2, 30, tzinfo=UTC)
        # 08:00's hour already holds its 15: the next hour with room
        sendcaps.book(conn, [("warmup:2026-11-25", 45), ("warmup:2026-11-25T08", 15)], 15)
        assert next_window(conn, warm, late, True, "Europe/London", quiet) == datetime(2026, 11, 25, 9, tzinfo=UTC)
        # the whole of 25 November used up: the 26th, after its quiet hours
        sendcaps.book(conn, [("warmup:2026-11-25", 45), ("warmup:2026-11-25T09", 45)], 30)
        assert next_window(conn, warm, late, True, "Europe/London", quiet) == datetime(2026, 11, 26, 8, tzinfo=UTC)
        # without quiet hours, the next hour
        assert next_window(conn, warm, late.replace(hour=12), False, "Europe/London", None) == datetime(
            2026, 11, 24, 13, tzinfo=UTC
        )


def test_the_warm_up_days_are_the_clinics_dates_across_midnight(ws: Workspace) -> None:
    """A clinic in Auckland (13 hours ahead of UTC in November) sends at 09:00 its time: 20:00 UTC the day
    before. The plan, the campaign page and the calendar list the warm-up's days as Auckland's dates."""
    config = ws.root / "needlecast.toml"
    config.write_text(config.read_text().replace('time_zone = "Europe/London"', 'time_zone = "Pacific/Auckland"'))
    campaign = BROADCAST.replace("time_zone: Europe/London", "time_zone: Pacific/Auckland").replace(
        'send_at: "2026-11-24 12:00"', 'send_at: "2026-11-25 09:00"'
    )
    (ws.campaigns_dir / "c.yaml").write_text(campaign.format(segment="all-leads"))
    auckland = open_workspace(ws.root)
    assert auckland.settings.clinic.time_zone == "Pacific/Auckland"
    engine = store_with_leads(auckland)
    local_days = "30 on 2026-11-25, 45 on 2026-11-26, 65 on 2026-11-27"  # UTC: the 24th, 25th and 26th
    plan = build_plans(auckland, engine, "winter", 30, NOW).plans[0]
    [note] = [n for n in plan.notes if "takes 3 day(s)" in n]
    assert local_days in for_people(note) and "days in" not in for_people(note)
    assert local_days in note and "(days in Pacific/Auckland)" in note  # the command line names the zone
    page = campaign_page(engine, auckland, "winter", 30)
    notes = [for_people(n) for n in page.plan.notes]
    assert any(local_days in n for n in notes), notes
    assert {r["day"]: r["recipients"] for r in page.plan.emails} == {
        "2026-11-25": 30,
        "2026-11-26": 45,
        "2026-11-27": 65,
    }
    engine.dispose()


def test_bookings_racing_from_many_senders_never_pass_the_cap(engine: Engine) -> None:
    """Six senders (each its own connection and transaction) book the same day's and hour's windows at once,
    a few emails at a time, until refused: together they get exactly the narrower cap, never more."""
    day, hour = ("warmup:2027-01-10", 100), ("warmup:2027-01-10T09", 37)
    start = threading.Barrier(6)
    granted: list[int] = []
    lock = threading.Lock()

    def sender() -> None:
        start.wait(30)
        while True:
            with engine.begin() as conn:
                got, _ = sendcaps.book(conn, [day, hour], 3)
            if not got:
                return
            with lock:
                granted.append(got)

    threads = [threading.Thread(target=sender) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(granted) == 37
    with engine.connect() as conn:
        assert sendcaps.booked(conn, [day[0], hour[0]]) == {day[0]: 37, hour[0]: 37}
