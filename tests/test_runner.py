"""The runner and the ledger, on SQLite and PostgreSQL, sending to the loopback SendGrid sink over HTTP."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, cast

import pytest
from sqlalchemy import Connection, Engine, insert, select

from needlecast import ledger, signing
from needlecast.audience.membership import load_frame
from needlecast.audience.suppression import suppress
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.plan import planner as planner_module
from needlecast.campaign.plan.rules import LedgerKeys, load_ledger_view, plan_broadcast
from needlecast.campaign.send.runner import Runner, RunReport
from needlecast.campaign.send.state import get_state
from needlecast.config import Workspace, open_workspace
from needlecast.delivery.base import Batch, RetryPolicy
from needlecast.delivery.outbox import render_request
from needlecast.delivery.sendgrid import SendGridBackend
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.errors import CampaignBlocked, SenderFenced
from needlecast.store.delivery import delivery_store
from needlecast.store.schema import contacts, deliveries, enrolments, events
from tests.sending import SECRET, leads_workspace, store_with_leads


def _claim(conn: Connection, campaign_id: str, now: datetime, limit: int, token: str) -> list[Claimed]:
    """The store's claim, each row as a `Claimed` (its first five fields)."""
    return [Claimed(*row[:5]) for row in delivery_store(conn).claim(conn, campaign_id, now, limit, token)]


class Claimed(NamedTuple):
    id: int
    contact_id: int
    step_id: str
    variant: str
    arm: str


API_KEY = "SG.runner-test"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # 12:00 in London: outside quiet hours

BROADCAST = """
id: winter
kind: broadcast
segment: {segment}
time_zone: Europe/London
steps:
  - id: guide
    template: emails/broadcast
schedule:
  send_at: "2026-11-24 12:00"
signoff: {{reviewer: QA, date: 2026-11-24, note: test content}}
"""

SEQUENCE = """
id: drip
kind: sequence
segment: all-leads
time_zone: Europe/London
steps:
  - {{id: welcome, template: emails/welcome, delay: 0d}}
  - {{id: follow-up, template: emails/deep_dive, delay: 3d}}
enrol: {{joined_after: "2026-01-01"}}
exits: [{{field: booked, equals: "yes"}}]
{signoff}
"""
SIGNOFF = "signoff: {reviewer: QA, date: 2026-11-24, note: test content}"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return leads_workspace(
        workspace_dir,
        store_url,
        monkeypatch,
        "Email,First Name,Concern,Marketing consent,Concern consent,Signed up,Booked\n"
        + "".join(
            f"lead{i}@example.com,Lead{i},{['acne', 'ageing', 'melasma', ''][i % 4]},yes,"
            f"{'yes' if i % 5 else 'no'},2026-11-0{1 + i % 9},no\n"
            for i in range(40)
        ),
    )


_store = store_with_leads


def _runner(
    ws: Workspace,
    engine: Engine,
    sink: SendGridSink,
    clock: Clock,
    *,
    more_coming: Callable[[], bool] = lambda: False,
    **delivery: object,
) -> Runner:
    settings = dataclasses.replace(
        ws.settings, delivery=dataclasses.replace(ws.settings.delivery, api_host=sink.url, **delivery)
    )
    backends = partial(SendGridBackend, settings, api_key=API_KEY, retry=RetryPolicy(2, 0.01, 0.02))
    return Runner(dataclasses.replace(ws, settings=settings), engine, backends, clock=clock, more_coming=more_coming)


def _campaign(ws: Workspace, text: str) -> None:
    (ws.campaigns_dir / "c.yaml").write_text(text)


def test_broadcast_sends_each_member_once_even_when_the_job_fires_twice(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    runner = _runner(ws, engine, sink, Clock(NOW))
    first = runner.run_broadcast("winter")
    second = runner.run_broadcast("winter")
    assert first.enqueued == 40 and first.sent == 40
    assert second.enqueued == 0 and second.sent == 0
    ids = sink.accepted_delivery_ids()
    assert len(ids) == 40 and len(set(ids)) == 40
    variants = Counter(v for (_s, _g, v, _a) in first.sent_by.elements())
    assert variants == Counter({"acne": 8, "ageing": 8, "pigmentation": 8, "general": 16})
    with engine.connect() as conn:
        assert delivery_store(conn).counts(conn, "winter")["sent"] == 40


def test_a_broadcast_planned_part_by_part_enqueues_what_planning_the_whole_audience_gives(
    ws: Workspace, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    with engine.begin() as conn:
        suppress(conn, "lead6@example.com", "unsubscribed", source="test")
        suppress(conn, "lead31@example.com", "complaint", source="test")
    runner = _runner(ws, engine, sink, Clock(NOW))
    ctx = CampaignContext.load(runner.workspace)
    campaign = ctx.campaign("winter")
    with engine.connect() as conn:
        whole = plan_broadcast(
            ctx,
            campaign,
            load_frame(conn, ctx.segments["all-leads"]),
            LedgerKeys(),
            load_ledger_view(conn, "winter", NOW).history,
            NOW,
        )
    monkeypatch.setattr(planner_module, "AUDIENCE_PART", 7)  # 40 contacts in 6 parts
    assert len(list(runner.planner._audience_parts())) == 6
    report = runner.run_broadcast("winter")
    with engine.connect() as conn:
        enqueued = {
            (int(c), v, a)
            for c, v, a in conn.execute(select(deliveries.c.contact_id, deliveries.c.variant, deliveries.c.arm))
        }
    assert enqueued == {
        (int(c), v, a) for c, v, a in whole.emails[["contact_id", "variant", "arm"]].itertuples(index=False)
    }
    assert len(enqueued) == report.enqueued == report.sent == 38
    assert report.excluded == whole.excluded == Counter({"suppressed: unsubscribed": 1, "suppressed: complaint": 1})


def test_one_rendering_per_variant_with_1000_recipients_per_request(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    _runner(ws, engine, sink, Clock(NOW)).run_broadcast("winter")
    requests = sink.accepted
    assert len(requests) == 4  # one per variant: 40 recipients fit in one request each
    subjects = {r.payload["subject"] for r in requests}
    assert subjects == {"What microneedling can do for your skin"}
    for request in requests:
        assert "concern" not in str(request.payload["categories"]).lower()
        for item in request.payload["personalizations"]:
            assert "@" not in item["headers"]["List-Unsubscribe"].split(",")[0]  # no address in the URL


def test_each_copy_links_to_its_own_signed_pages_while_a_request_carries_the_token_once(
    ws: Workspace, sink: SendGridSink
) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    _runner(ws, engine, sink, Clock(NOW)).run_broadcast("winter")
    base = ws.settings.tracking.public_base_url.rstrip("/")
    with engine.connect() as conn:
        contact_of = {int(d): int(c) for d, c in conn.execute(select(deliveries.c.id, deliveries.c.contact_id))}
    checked = 0
    for request in sink.accepted:
        entry = {"request": request.payload}
        for item in request.payload["personalizations"]:
            token = item["substitutions"]["%%manage%%"]
            assert not any(base in value for value in item["substitutions"].values())  # the token, not URLs
            assert (
                signing.verify(SECRET.encode(), signing.MANAGE, token).contact_id
                == contact_of[int(item["custom_args"]["delivery_id"])]
            )
            _subject, html = render_request(entry, item["to"][0]["email"])  # the copy as its recipient sees it
            assert f'href="{base}/u/{token}"' in html and f'href="{base}/p/{token}"' in html
            assert "%%" not in html
            assert item["headers"]["List-Unsubscribe"].startswith(f"<{base}/u/{token}>")
            checked += 1
    assert checked == 40


def test_unsubscribe_between_plan_and_send_wins(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    clock = Clock(NOW - timedelta(hours=2))  # before send_at: enqueued, nothing due yet
    runner = _runner(ws, engine, sink, clock)
    assert runner.run_broadcast("winter").sent == 0
    with engine.begin() as conn:
        suppress(conn, "lead3@example.com", "unsubscribed", source="test")
    clock.now = NOW
    report = runner.run_broadcast("winter")
    assert report.sent == 39 and report.skipped == Counter({"suppressed: unsubscribed": 1})
    assert all(email != "lead3@example.com" for a in sink.accepted for email, _ in a.recipients)
    with engine.connect() as conn:
        row = conn.execute(select(deliveries.c.error).where(deliveries.c.status == "skipped")).one()
    assert row.error == "suppressed: unsubscribed"


def test_crash_between_claim_and_send_leaves_unknown_never_a_duplicate(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    runner = _runner(ws, engine, sink, Clock(NOW))
    runner.stop.set()  # a stopped runner plans into the ledger but sends nothing
    runner.run_broadcast("winter")
    runner.stop.clear()  # then a sender claims ten rows and "crashes" before the API call
    with engine.begin() as conn:
        claimed = _claim(conn, "winter", NOW, 10, "crashed-run")
    with engine.begin() as conn:
        assert (
            delivery_store(conn).mark_stale_unknown(conn, None) == 10
        )  # what the next scheduler does on start, holding the lock
    report = runner.run_broadcast("winter")
    assert report.sent == 30
    with engine.connect() as conn:
        assert delivery_store(conn).counts(conn, "winter")["unknown"] == 10
    assert not {str(c.id) for c in claimed} & set(sink.accepted_delivery_ids())
    # Provider events prove four of them were accepted: reconcile settles those; the rest are resent on request.
    with engine.begin() as conn:
        conn.execute(
            insert(events),
            [
                {
                    "provider_event_id": f"ev{c.id}",
                    "kind": "processed",
                    "delivery_id": c.id,
                    "campaign_id": "winter",
                    "step_id": "guide",
                    "message_id": "m1",
                    "email_hash": "",
                    "occurred_at": NOW,
                    "received_at": NOW,
                    "detail": "",
                    "raw": {},
                }
                for c in claimed[:4]
            ],
        )
        assert delivery_store(conn).settle_campaign_by_events(conn, "winter") == 4
        assert delivery_store(conn).requeue_unknown(conn, "winter") == 6
    assert runner.run_broadcast("winter").sent == 6
    ids = sink.accepted_delivery_ids()
    assert len(ids) == len(set(ids)) == 36  # the four settled ones were never sent twice


def test_two_runners_never_claim_the_same_row(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    runner = _runner(ws, engine, sink, Clock(NOW - timedelta(hours=2)))
    runner.run_broadcast("winter")
    with engine.begin() as conn:
        conn.execute(deliveries.update().values(due_at=NOW - timedelta(minutes=1)))
    with engine.begin() as a:
        first = _claim(a, "winter", NOW, 25, "a")
    with engine.begin() as b:
        second = _claim(b, "winter", NOW, 25, "b")
    assert len(first) == 25 and len(second) == 15
    assert not {c.id for c in first} & {c.id for c in second}


def test_a_large_send_is_shared_with_helper_processes_and_each_member_gets_one_email(
    ws: Workspace, sink: SendGridSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Helpers read the workspace and environment afresh: the settings go into the files and variables.
    config = ws.root / "needlecast.toml"
    config.write_text(
        config.read_text().replace(
            "max_in_flight = 4", "max_in_flight = 1\nbatch_size = 2\nsender_processes = 3\nparallel_from = 10"
        )
    )
    monkeypatch.setenv("NEEDLECAST_BACKEND", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    monkeypatch.setenv("NEEDLECAST_SENDGRID_HOST", sink.url)
    ws = open_workspace(ws.root)
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    runner = _runner(ws, engine, sink, Clock(NOW))
    report = runner.run_broadcast("winter")
    ids = sink.accepted_delivery_ids()
    # Each member exactly once, whichever process sent it, and every helper reported back: how the rows
    # were shared depends on how fast each process started, which the contract leaves open.
    assert report.sent == len(ids) == len(set(ids)) == 40
    assert report.helpers == 2
    with engine.connect() as conn:
        counts = delivery_store(conn).counts(conn, "winter")
    assert counts["sent"] == 40 and counts["sending"] == counts["queued"] == counts["unknown"] == 0


@pytest.mark.database_independent
def test_helpers_started_for_a_large_audience_are_dismissed_when_the_segment_is_small(
    ws: Workspace, sink: SendGridSink
) -> None:
    """On SQLite alone (conftest's rule): what is decided here, to dismiss the helper process and send
    everything from the parent, is the runner's, from the segment's size; the database's part, helpers and
    the parent claiming the same ledger, is the test above's, on both databases."""
    config = ws.root / "needlecast.toml"
    config.write_text(
        config.read_text().replace(
            "max_in_flight = 4", "max_in_flight = 1\nbatch_size = 2\nsender_processes = 2\nparallel_from = 30"
        )
    )
    ws = open_workspace(ws.root)
    _campaign(ws, BROADCAST.format(segment="acne"))
    engine = _store(ws)
    runner = _runner(ws, engine, sink, Clock(NOW))
    assert runner.planner.audience_size() >= 30  # so the helper is started before segmenting...
    report = runner.run_broadcast("winter")
    assert 0 < report.sent < 30  # ...and sent home without sending: the parent sent everything
    assert report.sent == len(sink.accepted_delivery_ids())
    assert report.helpers == 0  # no helper reported counts: none dispatched


def test_a_sender_waits_at_an_empty_queue_while_rows_are_still_being_enqueued(
    ws: Workspace, sink: SendGridSink
) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    asked: list[int] = []

    def more_coming() -> bool:  # what a helper asks while its parent enqueues: here the rows arrive late
        asked.append(1)
        if len(asked) == 1:
            with engine.begin() as conn:
                ids = list(conn.execute(select(contacts.c.id)).scalars())
                ledger.enqueue_columns(
                    delivery_store(conn),
                    conn,
                    {
                        "campaign_id": "winter",
                        "step_id": "guide",
                        "contact_id": ids,
                        "segment": "all-leads",
                        "variant": "general",
                        "arm": "",
                        "due_at": NOW - timedelta(minutes=1),
                        "status": "queued",
                        "error": "",
                    },
                )
            return True
        return False

    runner = _runner(ws, engine, sink, Clock(NOW), more_coming=more_coming)
    ctx = CampaignContext.load(runner.workspace)
    report = RunReport("winter")
    assert runner.may_send(ctx, ctx.campaign("winter"), report)
    runner.dispatch(ctx, ctx.campaign("winter"), report)
    assert report.sent == len(sink.accepted_delivery_ids()) == 40
    assert len(asked) == 2  # asked at the empty queue, waited, sent, asked again and stopped


def test_too_many_failures_in_a_row_pause_the_campaign(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    sink.fail(*[{"status": 500}] * 50)
    report = _runner(ws, engine, sink, Clock(NOW), max_in_flight=1).run_broadcast("winter")
    assert report.paused and report.sent == 0
    with engine.connect() as conn:
        state = get_state(conn, "winter")
        counts = delivery_store(conn).counts(conn, "winter")
    assert state["status"] == "paused" and "failed batches in a row" in state["note"]
    assert counts["queued"] == 40 and counts["sending"] == 0  # nothing burnt, nothing lost
    assert sink.state.requests < 50


def test_successes_waiting_to_be_recorded_are_kept_when_later_batches_fail_and_pause_the_campaign(
    ws: Workspace, sink: SendGridSink
) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    runner = _runner(ws, engine, sink, Clock(NOW), max_in_flight=1, batch_size=2)  # 20 requests of 2
    sink.fail_after(3, *[{"status": 500}] * 200)  # SendGrid goes down once three requests went through
    report = runner.run_broadcast("winter")
    accepted = sink.accepted_delivery_ids()
    with engine.connect() as conn:
        counts = delivery_store(conn).counts(conn, "winter")
        sent = {str(i) for i in conn.execute(select(deliveries.c.id).where(deliveries.c.status == "sent")).scalars()}
    assert report.paused and len(sink.accepted) == 3 and 3 <= len(accepted) <= 6  # three requests of 1 or 2
    # every accepted email is recorded as sent (none went back to the queue to be sent again), the rest is
    # queued for a resume, and nothing is left in between
    assert sent == set(accepted) and report.sent == len(accepted)
    assert counts["queued"] == 40 - len(accepted) and counts["sending"] == 0 and counts["unknown"] == 0


def test_campaign_with_lint_errors_needs_a_signoff(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(
        ws,
        BROADCAST.format(segment="all-leads").replace(
            "signoff: {reviewer: QA, date: 2026-11-24, note: test content}", ""
        ),
    )
    engine = _store(ws)
    with pytest.raises(CampaignBlocked, match=r"claim-.*signoff"):
        _runner(ws, engine, sink, Clock(NOW)).run_broadcast("winter")
    assert sink.accepted == []


def test_sequence_enrols_sends_day_zero_then_day_three_and_exits(ws: Workspace, sink: SendGridSink) -> None:
    _campaign(ws, SEQUENCE.format(signoff=SIGNOFF))
    engine = _store(ws)
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)
    report = next(r for r in runner.sweep() if r.campaign_id == "drip")
    assert report.enrolled == 40 and report.sent == 40
    with engine.begin() as conn:  # one lead books, one unsubscribes
        conn.execute(
            contacts.update().where(contacts.c.email == "lead1@example.com").values(attributes={"booked": "yes"})
        )
        suppress(conn, "lead2@example.com", "unsubscribed")
    clock.now = NOW + timedelta(days=1)
    assert next(r for r in runner.sweep() if r.campaign_id == "drip").sent == 0  # day 3 not due yet
    clock.now = NOW + timedelta(days=3, minutes=1)
    report = next(r for r in runner.sweep() if r.campaign_id == "drip")
    assert report.sent == 38 and report.exited == 0  # both already left at the previous sweep
    with engine.connect() as conn:
        reasons = dict(
            conn.execute(
                select(enrolments.c.contact_id, enrolments.c.exit_reason).where(enrolments.c.exit_reason != "")
            ).all()
        )
    assert sorted(reasons.values()) == ["booked = yes", "unsubscribed"]
    per_step = Counter(a.payload["custom_args"]["step"] for a in sink.accepted for _ in a.payload["personalizations"])
    assert per_step == Counter({"welcome": 40, "follow-up": 38})


class _FrozenSendGrid(SendGridBackend):
    """A backend whose limiter and before-post hook cannot change once it is built."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in {"limiter", "before_post", "observer"} and name in self.__dict__:
            raise AttributeError(f"{name} is fixed when the backend is built")
        super().__setattr__(name, value)


def test_each_dispatch_builds_its_backend_with_the_fleet_limiter_and_its_intent_writer(
    ws: Workspace, sink: SendGridSink
) -> None:
    _campaign(ws, BROADCAST.format(segment="all-leads"))
    engine = _store(ws)
    settings = dataclasses.replace(
        ws.settings, delivery=dataclasses.replace(ws.settings.delivery, api_host=sink.url, requests_per_second=1000)
    )
    built: list[_FrozenSendGrid] = []

    def backends(**hooks: Any) -> _FrozenSendGrid:
        backend = _FrozenSendGrid(settings, api_key=API_KEY, retry=RetryPolicy(2, 0.01, 0.02), **hooks)
        built.append(backend)
        return backend

    runner = Runner(dataclasses.replace(ws, settings=settings), engine, backends, clock=Clock(NOW))
    report = runner.run_broadcast("winter")
    assert report.sent == 40 and len(set(sink.accepted_delivery_ids())) == 40
    probe, *dispatched = built
    assert len(dispatched) == 1  # one backend per dispatch, besides the one that checks the configuration
    limiter = runner.dispatcher.limiter
    assert type(limiter).__name__ == "FleetRateLimiter"  # the fleet's limits, in the database
    assert all(backend.limiter is limiter for backend in built)
    writer = getattr(dispatched[0].before_post, "__self__", None)
    assert type(writer).__name__ == "IntentWriter" and writer.campaign_id == "winter"
    assert probe.before_post is not None
    with pytest.raises(SenderFenced):  # the backend that checks the configuration never posts
        probe.before_post(cast(Batch, None))
