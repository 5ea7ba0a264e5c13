"""The deliverability guard, on SQLite and PostgreSQL: a campaign sending to the loopback SendGrid sink pauses
itself when SendGrid's signed events (posted to the real web app) bring its window to a threshold, and not
one event below it; nothing is sent while it is paused, and after a person resumes it every lead has had
exactly one email."""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, select

from needlecast.accounts import audit
from needlecast.accounts.roles import cli_actor
from needlecast.actions.campaigns import auto_pause_figures, set_campaign_status
from needlecast.actions.users import add_user
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.overview import campaign_overview
from needlecast.campaign.send.guardrails import Figures, GuardCollector, first_trip
from needlecast.campaign.send.runner import Runner
from needlecast.campaign.send.state import get_state
from needlecast.config import Workspace, open_workspace
from needlecast.config.deliverability import DeliverabilitySettings
from needlecast.delivery.base import Batch, Outcome, RetryPolicy
from needlecast.delivery.sendgrid import SendGridBackend
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.errors import ConfigurationError
from needlecast.store.delivery import delivery_store
from needlecast.store.schema import deliveries
from needlecast.web.app import create_app
from needlecast.web.local import loopback_socket
from tests.cli_runner import Result, run
from tests.console_site import PASSWORD
from tests.sending import leads_workspace, store_with_leads
from tests.test_runner import API_KEY, BROADCAST, NOW, Clock
from tests.waiting import wait_until

LEADS = 700
METRICS_TOKEN = "m" * 32
WINDOW = 400  # 5 % is 20 hard bounces, 0.5 % (the highest complaint threshold the settings take) 2 complaints


@dataclass
class Setup:
    ws: Workspace
    engine: Engine
    sink: SendGridSink
    url: str
    key: ec.EllipticCurvePrivateKey
    client: httpx.Client

    def runner(
        self,
        stop: threading.Event | None = None,
        stop_after: int = 0,
        on_batch: Callable[[Batch, list[Outcome]], None] | None = None,
    ) -> Runner:
        settings = dataclasses.replace(
            self.ws.settings,
            delivery=dataclasses.replace(
                self.ws.settings.delivery, api_host=self.sink.url, batch_size=50, max_in_flight=1
            ),
        )
        control = _Control(stop, stop_after, on_batch)

        def backends(*, limiter: Any = None, before_post: Any = None) -> _StopAfter:
            backend = _StopAfter(
                settings, api_key=API_KEY, retry=RetryPolicy(1, 0.01, 0.02), limiter=limiter, before_post=before_post
            )
            backend.control = control
            return backend

        return Runner(
            dataclasses.replace(self.ws, settings=settings), self.engine, backends, clock=Clock(NOW), stop=stop
        )

    def post_events(self, items: list[dict[str, object]]) -> None:
        """Post SendGrid events, signed with the webhook key, to the app (as SendGrid does: in one call)."""
        body = json.dumps([{"timestamp": int(time.time()), **item} for item in items]).encode()
        stamp = str(int(time.time()))
        signature = base64.b64encode(self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        response = self.client.post(
            f"{self.url}/webhooks/sendgrid",
            content=body,
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": signature,
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                "Content-Type": "application/json",
            },
        )
        assert response.status_code == 200, response.text


@dataclass
class _Control:
    """What the test's backends share across dispatches: `stop`, set once `after` emails have been handed over
    (a worker leaving mid-send), and `on_batch`, called as each batch ends."""

    stop: threading.Event | None = None
    after: int = 0
    on_batch: Callable[[Batch, list[Outcome]], None] | None = None
    handed: int = 0


class _StopAfter(SendGridBackend):
    """The SendGrid backend, obeying a `_Control`: the send stops between batches with some of the campaign
    sent and the rest queued, or the test acts as each batch ends."""

    control: _Control

    def send_all(self, batches: Iterable[Batch], on_outcomes: Callable[[Batch, list[Outcome]], None]) -> None:
        control = self.control

        def counted(batch: Batch, outcomes: list[Outcome]) -> None:
            on_outcomes(batch, outcomes)
            if control.on_batch is not None:
                control.on_batch(batch, outcomes)
            control.handed += len(outcomes)
            if control.stop is not None and control.after and control.handed >= control.after:
                control.stop.set()

        super().send_all(batches, counted)


@pytest.fixture()
def setup(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, sink: SendGridSink) -> Iterator[Setup]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(public).decode())
    monkeypatch.setenv("NEEDLECAST_METRICS_TOKEN", METRICS_TOKEN)
    rows = "".join(f"lead{i}@example.com,Lead{i},acne,yes,yes,2026-11-01,no\n" for i in range(LEADS))
    leads_workspace(
        workspace_dir,
        store_url,
        monkeypatch,
        "Email,First Name,Concern,Marketing consent,Concern consent,Signed up,Booked\n" + rows,
    )
    (workspace_dir / "campaigns" / "c.yaml").write_text(BROADCAST.format(segment="all-leads"))
    with (workspace_dir / "needlecast.toml").open("a") as config:
        config.write(
            f"\n[deliverability]\nwindow = {WINDOW}\nhard_bounce_percent = 5\n"
            "complaint_percent = 0.5\nprovider_errors = 10\n"
        )
    ws = open_workspace(workspace_dir)
    engine = store_with_leads(ws)
    sock = loopback_socket()
    server = uvicorn.Server(uvicorn.Config(create_app(ws, engine), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "uvicorn to start")
    with httpx.Client(timeout=10) as client:
        yield Setup(ws, engine, sink, f"http://127.0.0.1:{sock.getsockname()[1]}", key, client)
    server.should_exit = True
    thread.join(10)
    engine.dispose()


def get_state_status(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(get_state(conn, "winter")["status"])


def _console_login(setup: Setup) -> httpx.Client:
    """A console session of a marketer (who may pause and resume campaigns)."""
    add_user(setup.engine, cli_actor(), "marketer@clinic.example", "marketer", PASSWORD)
    client = httpx.Client(base_url=setup.url, follow_redirects=False, timeout=60)
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, page.text
    done = client.post(
        "/console/login",
        data={"csrf": token.group(1), "email": "marketer@clinic.example", "password": PASSWORD, "next": ""},
    )
    assert done.status_code == 303, done.text
    return client


def _cli(setup: Setup, *args: str) -> Result:
    """`needlecast ARGS` on this workspace and store, as a user runs it (`main()`, in this process: the command
    line itself is tested in a process of its own by tests/test_cli.py). The environment is the test's again
    afterwards: the web app reads its webhook key and metrics token per request."""
    with pytest.MonkeyPatch.context() as patch:
        return run(patch, setup.ws.root, *args, NEEDLECAST_DATABASE_URL=setup.ws.database_url)


def _send_part(setup: Setup) -> list[tuple[int, str]]:
    """Send the broadcast until at least a window's emails were handed over, then stop; the (delivery id,
    address) of the emails sent, newest delivery id first."""
    stop = threading.Event()
    report = setup.runner(stop, stop_after=WINDOW).run_broadcast("winter")
    assert report.enqueued == LEADS and WINDOW <= report.sent < LEADS
    with setup.engine.connect() as conn:
        assert (
            delivery_store(conn).counts(conn, "winter")["queued"] == LEADS - report.sent
        )  # the rest wait in the queue
    address = {int(d): email for a in setup.sink.accepted for email, d in a.recipients}
    return sorted(address.items(), reverse=True)


def _events(kind: str, sent: list[tuple[int, str]], count: int) -> list[dict[str, object]]:
    """`count` events of `kind` for the newest emails sent (inside the window), and `delivered` for the rest."""
    provider = {
        "hard_bounces": ("bounce", "bounce"),
        "complaints": ("spamreport", ""),
        "provider_errors": ("dropped", ""),
    }
    event, subtype = provider[kind]
    items: list[dict[str, object]] = []
    for n, (delivery_id, email) in enumerate(sent):
        bad = n < count
        item: dict[str, object] = {
            "email": email,
            "event": event if bad else "delivered",
            "sg_event_id": f"{kind}-{delivery_id}",
            "delivery_id": str(delivery_id),
            "campaign": "winter",
        }
        if bad and subtype:
            item["type"] = subtype
        items.append(item)
    return items


# threshold -> (its events at the threshold, and the words the pause says): 5 % and 0.5 % of 400, 10 emails
AT = {"hard_bounces": (20, "hard bounces reached 5.00 %"), "complaints": (2, "spam complaints reached 0.50 %"),
      "provider_errors": (10, "10 emails the provider refused or dropped")}  # fmt: skip


# What the database decides here (the pause, written once by whichever check gets there first) is the same for
# every threshold: one runs on both databases, the others on SQLite (conftest's rule). How each threshold's
# events are counted over the window, on both databases, is tests/test_guard_window.py's.
ON_BOTH = "hard_bounces"
ON_SQLITE = sorted(set(AT) - {ON_BOTH})


def test_a_campaign_pauses_itself_at_a_threshold_and_resumes_only_by_a_person(setup: Setup) -> None:
    _pauses_at_the_threshold_and_resumes_only_by_a_person(setup, ON_BOTH)


@pytest.mark.database_independent
@pytest.mark.parametrize("threshold", ON_SQLITE)
def test_a_campaign_pauses_itself_at_each_other_threshold_and_resumes_only_by_a_person(
    setup: Setup, threshold: str
) -> None:
    _pauses_at_the_threshold_and_resumes_only_by_a_person(setup, threshold)


def _pauses_at_the_threshold_and_resumes_only_by_a_person(setup: Setup, threshold: str) -> None:
    sent = _send_part(setup)
    count, words = AT[threshold]
    setup.post_events(_events(threshold, sent, count))
    with setup.engine.connect() as conn:
        state = get_state(conn, "winter")
        queued = delivery_store(conn).counts(conn, "winter")["queued"]
        entries = audit.entries(conn, action="campaign.auto_paused")
    assert state["status"] == "paused" and state["guard_threshold"] == threshold
    assert words in state["note"] and f"the last {WINDOW} emails" in state["note"]
    assert len(entries) == 1 and entries[0]["actor_kind"] == "system"
    assert entries[0]["detail"]["threshold"] == threshold and entries[0]["detail"]["count"] == count
    assert entries[0]["detail"]["emails"] == WINDOW and entries[0]["detail"]["base"] == WINDOW
    # The campaign page and `needlecast campaign status` show the state's note: the threshold and the figures.
    with setup.engine.connect() as conn:
        overview = campaign_overview(CampaignContext.load(setup.ws), conn, "winter", NOW)
    assert overview.state == "paused" and words in overview.note
    registry = CollectorRegistry()
    registry.register(GuardCollector(setup.engine))
    scraped = generate_latest(registry).decode()
    assert f'needlecast_campaign_auto_paused{{campaign="winter",threshold="{threshold}"}} 1.0' in scraped
    assert f'needlecast_campaign_guard_figure{{campaign="winter",figure="count"}} {float(count)}' in scraped
    metrics = setup.client.get(f"{setup.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.status_code == 200  # the web app's /metrics, as Prometheus scrapes it
    assert f'needlecast_campaign_auto_paused{{campaign="winter",threshold="{threshold}"}} 1.0' in metrics.text

    # The next run (a scheduler's job, a worker) sends nothing: the queued rows stay queued.
    accepted = len(setup.sink.accepted_delivery_ids())
    again = setup.runner().run_broadcast("winter")
    assert again.sent == 0 and "paused" in again.inactive
    assert len(setup.sink.accepted_delivery_ids()) == accepted
    with setup.engine.connect() as conn:
        assert delivery_store(conn).counts(conn, "winter")["queued"] == queued

    # A person resumes it, shown the figures first (the console's confirmation, the CLI before it resumes);
    # the emails the pause was about never pause it again.
    marketer = _console_login(setup)
    page = marketer.get("/console/campaigns/winter")
    assert page.status_code == 200 and words in html.unescape(page.text)
    confirm = marketer.get("/console/campaigns/winter/confirm/resume")
    assert confirm.status_code == 200 and words in html.unescape(confirm.text)
    assert get_state_status(setup.engine) == "paused"  # asking is not resuming
    status = _cli(setup, "campaign", "status", "winter")
    assert "winter: paused" in status.stdout and words in status.stdout.replace("\n", " ")
    resumed_by_cli = _cli(setup, "campaign", "resume", "winter")
    assert resumed_by_cli.code == 0, resumed_by_cli.stderr
    said = resumed_by_cli.stdout.replace("\n", " ")
    assert said.index(words) < said.index("winter: active")  # the figures first, then the resume
    assert auto_pause_figures(setup.engine, "winter") == ""
    with setup.engine.connect() as conn:
        resumed = audit.entries(conn, action="campaign.resumed")
    assert resumed[0]["detail"]["auto_paused"]["threshold"] == threshold
    setup.post_events(_events(threshold, sent, count + 5))  # late events of the same emails
    rest = setup.runner().run_broadcast("winter")
    assert rest.sent == queued
    ids = setup.sink.accepted_delivery_ids()
    with setup.engine.connect() as conn:
        every = {
            str(i) for i in conn.execute(select(deliveries.c.id).where(deliveries.c.campaign_id == "winter")).scalars()
        }
        assert get_state(conn, "winter")["status"] == "active"
    assert len(ids) == len(set(ids)) == LEADS and set(ids) == every  # every lead once: none lost, none twice


def test_one_event_below_a_threshold_the_campaign_keeps_sending(setup: Setup) -> None:
    _keeps_sending_one_event_below(setup, ON_BOTH)


@pytest.mark.database_independent
@pytest.mark.parametrize("threshold", ON_SQLITE)
def test_one_event_below_each_other_threshold_the_campaign_keeps_sending(setup: Setup, threshold: str) -> None:
    _keeps_sending_one_event_below(setup, threshold)


def _keeps_sending_one_event_below(setup: Setup, threshold: str) -> None:
    sent = _send_part(setup)
    setup.post_events(_events(threshold, sent, AT[threshold][0] - 1))
    with setup.engine.connect() as conn:
        assert get_state(conn, "winter")["status"] == "active"
        assert audit.entries(conn, action="campaign.auto_paused") == []
    rest = setup.runner().run_broadcast("winter")
    ids = setup.sink.accepted_delivery_ids()
    assert rest.sent == LEADS - len(sent) and len(ids) == len(set(ids)) == LEADS


def test_bounces_that_arrive_mid_send_before_their_emails_are_recorded_pause_the_campaign(setup: Setup) -> None:
    """SendGrid's events can come back before the dispatcher records the emails as sent (it does so with the
    next claim): the webhook's check cannot count them yet, the dispatcher's, when it records them, does."""
    posted: list[int] = []

    def bounce_the_last_batch(batch: Batch, outcomes: list[Outcome]) -> None:
        if posted or setup.sink.state.stats()["accepted_recipients"] < WINDOW:
            return
        items = [_events("hard_bounces", [(int(r.delivery_id), r.email)], 1)[0] for r in batch.recipients]
        setup.post_events(items[:20])  # 20 of the newest 400: 5 %, while these rows are still `sending`
        posted.append(len(batch.recipients))

    report = setup.runner(on_batch=bounce_the_last_batch).run_broadcast("winter")
    with setup.engine.connect() as conn:
        state = get_state(conn, "winter")
        counts = delivery_store(conn).counts(conn, "winter")
    assert posted and state["status"] == "paused" and state["guard_threshold"] == "hard_bounces"
    assert report.paused and "hard bounces reached 5.00 %" in report.paused
    # the batches already handed over when the events came (at most the backend's read-ahead) finish; no more
    assert WINDOW <= report.sent <= WINDOW + 150 and counts["queued"] == LEADS - report.sent
    assert len(setup.sink.accepted_delivery_ids()) == report.sent


def test_refused_sends_pause_the_campaign_at_the_provider_error_threshold(setup: Setup) -> None:
    # One request of 50 refused for good (a 400 is not retried): 50 failed emails, over the limit of 10.
    setup.sink.fail_after(1, {"status": 400})
    report = setup.runner().run_broadcast("winter")
    with setup.engine.connect() as conn:
        state = get_state(conn, "winter")
        counts = delivery_store(conn).counts(conn, "winter")
    assert state["status"] == "paused" and state["guard_threshold"] == "provider_errors"
    assert report.paused and "emails the provider refused or dropped" in report.paused
    assert counts["failed"] == 50 and counts["sent"] == 50 and counts["queued"] == LEADS - 100
    assert len(setup.sink.accepted_delivery_ids()) == 50  # nothing sent after the pause


def test_a_person_who_paused_a_campaign_keeps_it_paused_whatever_the_events(setup: Setup) -> None:
    sent = _send_part(setup)
    set_campaign_status(setup.engine, setup.ws, cli_actor(), "winter", "paused")
    setup.post_events(_events("hard_bounces", sent, 40))
    with setup.engine.connect() as conn:
        state = get_state(conn, "winter")
        assert audit.entries(conn, action="campaign.auto_paused") == []
    assert state["status"] == "paused" and state["guard_threshold"] == "" and "paused by" in state["note"]


def test_the_rates_are_taken_over_at_least_200_emails_while_fewer_have_gone() -> None:
    """Ten hard bounces among a campaign's first twenty emails pause it (10 of 200: 5 %); one among its
    first two does not (1 of 200), and nine among twenty, just below, does not either."""
    settings = DeliverabilitySettings()
    tripped = first_trip(Figures(emails=20, hard_bounces=10, complaints=0, provider_errors=0), settings)
    assert tripped is not None and tripped.threshold == "hard_bounces" and tripped.figures.base == 200
    assert "10 of the last 200 emails" in tripped.sentence()
    assert first_trip(Figures(emails=2, hard_bounces=1, complaints=0, provider_errors=0), settings) is None
    assert first_trip(Figures(emails=20, hard_bounces=9, complaints=0, provider_errors=0), settings) is None
    # beyond 200 the window's own count is the base: 0.1 % of 1,000 is one complaint, exactly
    assert first_trip(Figures(emails=1000, hard_bounces=0, complaints=1, provider_errors=0), settings) is not None
    assert first_trip(Figures(emails=1000, hard_bounces=49, complaints=0, provider_errors=49), settings) is None


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("window = 100", "window"),
        ("hard_bounce_percent = 25", "hard_bounce_percent"),
        ("complaint_percent = 0", "complaint_percent"),
        ("complaint_percent = 2", "complaint_percent"),
        ("provider_errors = 0", "provider_errors"),
        ("window = 300\nprovider_errors = 301", "provider_errors"),
        ('hard_bounce_percent = "5"', "hard_bounce_percent"),
        ('warmup = {start = "soon"}', "warmup.start"),
        ('warmup = {start = "2027-01-10", growth = 10}', "warmup.growth"),
        ("threshold = 3", "unknown key 'threshold'"),
    ],
)
def test_thresholds_beyond_sane_bounds_are_refused_naming_the_field_and_the_fix(
    workspace_dir: Path, line: str, field: str
) -> None:
    with (workspace_dir / "needlecast.toml").open("a") as config:
        config.write(f"\n[deliverability]\n{line}\n")
    with pytest.raises(ConfigurationError) as raised:
        open_workspace(workspace_dir)
    assert field in str(raised.value) and "[deliverability]" in str(raised.value)


def test_the_defaults_are_the_documented_ones() -> None:
    defaults = DeliverabilitySettings()
    assert (defaults.window, defaults.hard_bounce_percent, defaults.complaint_percent, defaults.provider_errors) == (
        1000,
        5.0,
        0.1,
        50,
    )
    assert defaults.warmup is None
