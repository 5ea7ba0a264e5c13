"""Delivery: the same contract tests on the outbox and on SendGrid over real HTTP (the loopback sink)."""

from __future__ import annotations

import dataclasses
import email
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from needlecast.config import Workspace
from needlecast.delivery.base import (
    DEFERRED,
    FAILED,
    SENT,
    Backend,
    Batch,
    Outcome,
    RateLimiter,
    Recipient,
    RetryPolicy,
)
from needlecast.delivery.outbox import OutboxBackend, read_outbox, render_request
from needlecast.delivery.payload import build_payload
from needlecast.delivery.sendgrid import SendGridBackend
from needlecast.devtools.sendgrid_sink import SendGridSink, validate_mail_send
from needlecast.errors import ConfigurationError, ProviderAuthError
from needlecast.templating.render import RenderedEmail

MESSAGE = RenderedEmail(
    "emails/t",
    "Hi %%first_name%%",
    "",
    '<p>Hi %%first_name.html%%</p><a href="%%unsubscribe_url%%">u</a>',
    "Hi %%first_name%%\nUnsubscribe: %%unsubscribe_url%%",
)
API_KEY = "SG.test-key"


def _recipients(n: int, start: int = 0) -> tuple[Recipient, ...]:
    return tuple(
        Recipient(
            f"d{i}",
            f"person{i}@example.com",
            {"first_name": f"P{i}", "unsubscribe_url": f"https://c.example.com/u/t{i}"},
            f"https://c.example.com/u/t{i}",
        )
        for i in range(start, start + n)
    )


def _batches(workspace: Workspace, n: int, size: int = 1000) -> list[Batch]:
    everyone = _recipients(n)
    clinic = workspace.settings.clinic
    return [
        Batch(
            "spring",
            "welcome",
            "acne",
            MESSAGE,
            clinic.sender_email,
            clinic.sender_name,
            everyone[i : i + size],
            reply_to=clinic.reply_to,
        )
        for i in range(0, n, size)
    ]


class Harness:
    """One backend plus a way to read back what it delivered, so contract tests ignore which it is."""

    def __init__(self, backend: Backend, requests: Any) -> None:
        self.backend = backend
        self.requests = requests

    def send(self, batches: list[Batch]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        self.backend.send_all(batches, lambda _batch, result: outcomes.extend(result))
        return outcomes


def _fast_retry() -> RetryPolicy:
    return RetryPolicy(max_retries=3, base_seconds=0.01, max_seconds=0.05)


@pytest.fixture()
def sink() -> Iterator[SendGridSink]:
    with SendGridSink(api_key=API_KEY) as running:
        yield running


def _sendgrid(workspace: Workspace, sink: SendGridSink, **delivery: Any) -> SendGridBackend:
    settings = dataclasses.replace(
        workspace.settings, delivery=dataclasses.replace(workspace.settings.delivery, api_host=sink.url, **delivery)
    )
    return SendGridBackend(settings, api_key=API_KEY, retry=_fast_retry())


@pytest.fixture(params=["outbox", "sendgrid"])
def harness(request: pytest.FixtureRequest, workspace: Workspace, sink: SendGridSink) -> Harness:
    if request.param == "outbox":
        backend = OutboxBackend(workspace.settings, workspace.outbox_dir, retry=_fast_retry())
        return Harness(backend, lambda: [e["request"] for e in read_outbox(workspace.outbox_dir)])
    return Harness(_sendgrid(workspace, sink), lambda: [a.payload for a in sink.accepted])


def test_2500_recipients_go_out_as_1000_1000_and_500(harness: Harness, workspace: Workspace) -> None:
    outcomes = harness.send(_batches(workspace, 2500))
    assert sorted(len(r["personalizations"]) for r in harness.requests()) == [500, 1000, 1000]
    assert len(outcomes) == 2500 and {o.status for o in outcomes} == {SENT}
    assert all(o.message_id for o in outcomes)
    delivered = [p["custom_args"]["delivery_id"] for r in harness.requests() for p in r["personalizations"]]
    assert sorted(delivered) == sorted(f"d{i}" for i in range(2500))


def test_every_request_satisfies_sendgrids_schema(harness: Harness, workspace: Workspace) -> None:
    harness.send(_batches(workspace, 30, size=10))
    for request in harness.requests():
        assert validate_mail_send(request) == []
        assert [c["type"] for c in request["content"]] == ["text/plain", "text/html"]
        assert request["categories"] == ["spring", "spring/welcome"]  # campaign and step, never a concern
        assert request["custom_args"] == {"campaign": "spring", "step": "welcome"}
        # RFC 8058's POST hint is the same for everyone: once per request, which SendGrid adds to every copy
        assert request["headers"] == {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        for item in request["personalizations"]:
            assert len(item["to"]) == 1 and set(item["to"][0]) == {"email"}
            assert set(item["custom_args"]) == {"delivery_id"}
            assert set(item["headers"]) == {"List-Unsubscribe"}
            assert item["headers"]["List-Unsubscribe"].startswith("<https://c.example.com/u/")
            assert "mailto:unsubscribe@lumen-clinic.example.com" in item["headers"]["List-Unsubscribe"]


def test_tokens_are_escaped_per_part(harness: Harness, workspace: Workspace) -> None:
    clinic = workspace.settings.clinic
    hostile = Recipient("d1", "x@example.com", {"first_name": '<b>"Jo"</b> & {{ 7*7 }}', "unsubscribe_url": "u"}, "u")
    harness.send([Batch("c", "s", "general", MESSAGE, clinic.sender_email, clinic.sender_name, (hostile,))])
    subs = harness.requests()[0]["personalizations"][0]["substitutions"]
    assert subs["%%first_name%%"] == '<b>"Jo"</b> & {{ 7*7 }}'
    assert subs["%%first_name.html%%"] == "&lt;b&gt;&#34;Jo&#34;&lt;/b&gt; &amp; {{ 7*7 }}"


def test_non_string_recipient_values_are_converted(harness: Harness, workspace: Workspace) -> None:
    clinic = workspace.settings.clinic
    odd = Recipient("d9", "n@example.com", {"first_name": 42, "unsubscribe_url": None}, "u")  # type: ignore[dict-item]
    outcomes = harness.send([Batch("c", "s", "general", MESSAGE, clinic.sender_email, "", (odd,))])
    assert outcomes[0].status == SENT
    subs = harness.requests()[0]["personalizations"][0]["substitutions"]
    assert subs["%%first_name%%"] == "42" and subs["%%unsubscribe_url%%"] == ""


def test_429_and_500_storms_end_with_every_recipient_accepted_once(workspace: Workspace, sink: SendGridSink) -> None:
    waits: list[float] = []
    backend = _sendgrid(workspace, sink, max_in_flight=3)
    backend.retry = RetryPolicy(max_retries=6, base_seconds=0.01, max_seconds=0.02, sleep=waits.append)
    sink.fail(*([{"status": 429, "reset_in": 2}] * 6 + [{"status": 500}] * 4 + [{"status": 503}] * 2))
    outcomes = Harness(backend, None).send(_batches(workspace, 2500, size=250))
    assert {o.status for o in outcomes} == {SENT}
    accepted = sink.accepted_delivery_ids()
    assert sorted(accepted) == sorted(f"d{i}" for i in range(2500))  # each exactly once
    assert sink.state.requests == 10 + 12
    assert sum(1 for w in waits if w >= 1.0) == 6  # each 429 waited for the rate-limit reset


def test_400_fails_the_batch_and_keeps_sendgrids_reasons(workspace: Workspace, sink: SendGridSink) -> None:
    backend = _sendgrid(workspace, sink)
    clinic = workspace.settings.clinic
    bad = dataclasses.replace(MESSAGE, subject="")  # SendGrid refuses an empty subject
    outcomes = Harness(backend, None).send([Batch("c", "s", "acne", bad, clinic.sender_email, "", _recipients(3))])
    assert {o.status for o in outcomes} == {FAILED}
    assert "subject: The subject must be a non-empty string." in outcomes[0].error
    assert "HTTP 400" in outcomes[0].error


def test_no_address_reaches_the_log_even_with_the_clients_debug_logging_on(
    workspace: Workspace, sink: SendGridSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # python_http_client logs every request body at DEBUG
    outcomes = Harness(_sendgrid(workspace, sink), None).send(_batches(workspace, 3))
    assert {o.status for o in outcomes} == {SENT} and len(sink.accepted_delivery_ids()) == 3
    payload_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("PAYLOAD")]
    assert payload_lines, "the client no longer logs bodies: this test guards nothing"
    assert all("@" not in line and "bytes of JSON" in line for line in payload_lines)


def test_401_stops_with_a_configuration_error_and_nothing_sent(workspace: Workspace, sink: SendGridSink) -> None:
    settings = dataclasses.replace(
        workspace.settings, delivery=dataclasses.replace(workspace.settings.delivery, api_host=sink.url)
    )
    backend = SendGridBackend(settings, api_key="SG.wrong", retry=_fast_retry())
    outcomes: list[Outcome] = []
    with pytest.raises(ProviderAuthError, match=r"HTTP 401.*Mail Send"):
        backend.send_all(_batches(workspace, 3000), lambda _b, o: outcomes.extend(o))
    assert outcomes == [] and sink.accepted == []


def test_an_error_mid_feed_reports_the_requests_in_flight_before_it_propagates(
    harness: Harness, workspace: Workspace
) -> None:
    batches = _batches(workspace, 3000)

    def feed() -> Iterator[Batch]:  # like a claim failing after two batches were handed over
        yield from batches[:2]
        raise RuntimeError("the database went away")

    reported: list[Batch] = []
    with pytest.raises(RuntimeError, match="went away"):
        harness.backend.send_all(feed(), lambda batch, _outcomes: reported.append(batch))
    # Both requests went out; their outcomes reached the ledger's marking before the error did, so
    # their rows are not released back to the queue and sent twice.
    assert len(harness.requests()) == 2 and reported == batches[:2]


def test_a_request_accepted_after_its_sender_stopped_waiting_is_never_posted_again(
    workspace: Workspace, sink: SendGridSink
) -> None:
    # SendGrid took the request but answered after the timeout: posting it again would mail everyone twice.
    backend = _sendgrid(workspace, sink, timeout_seconds=0.3)
    sink.fail({"slow": 1.0})
    outcomes = Harness(backend, None).send(_batches(workspace, 5))
    assert {(o.status, o.ambiguous) for o in outcomes} == {(DEFERRED, True)}  # unknown until events settle it
    assert sink.state.requests == 1 and sorted(sink.accepted_delivery_ids()) == [f"d{i}" for i in range(5)]


def test_a_request_refused_before_it_was_sent_is_retried(workspace: Workspace, sink: SendGridSink) -> None:
    backend = _sendgrid(workspace, sink, timeout_seconds=0.3)
    sink.fail({"status": 503})  # SendGrid said it did not take it: safe to post again
    outcomes = Harness(backend, None).send(_batches(workspace, 5))
    assert {o.status for o in outcomes} == {SENT}
    assert sink.state.requests == 2 and sorted(sink.accepted_delivery_ids()) == [f"d{i}" for i in range(5)]


def test_persistent_failure_defers_the_rows_for_a_later_resume(workspace: Workspace, sink: SendGridSink) -> None:
    backend = _sendgrid(workspace, sink, timeout_seconds=0.2)
    sink.fail(*[{"status": 500}] * 10)
    outcomes = Harness(backend, None).send(_batches(workspace, 4))
    assert {(o.status, o.ambiguous) for o in outcomes} == {(DEFERRED, False)}  # 5xx: SendGrid did not take it
    assert sink.state.requests == 4  # the first try and three retries
    sink.state.faults.clear()
    sink.fail(*[{"stall": 0.5}] * 10)
    outcomes = Harness(backend, None).send(_batches(workspace, 4))
    assert {(o.status, o.ambiguous) for o in outcomes} == {(DEFERRED, True)}  # may have reached SendGrid


def test_sendgrid_backend_needs_an_api_key_and_a_valid_sender(workspace: Workspace, sink: SendGridSink) -> None:
    with pytest.raises(ConfigurationError, match="SENDGRID_API_KEY"):
        SendGridBackend(workspace.settings, api_key="").check()
    broken = dataclasses.replace(
        workspace.settings, clinic=dataclasses.replace(workspace.settings.clinic, sender_email="not an address")
    )
    with pytest.raises(ConfigurationError, match="sender_email"):
        SendGridBackend(broken, api_key=API_KEY).check()


def test_send_at_more_than_72_hours_ahead_is_refused(workspace: Workspace) -> None:
    batch = dataclasses.replace(_batches(workspace, 1)[0], send_at=datetime.now(UTC) + timedelta(hours=73))
    with pytest.raises(ValueError, match="72 hours"):
        build_payload(batch, workspace.settings)
    soon = dataclasses.replace(batch, send_at=datetime.now(UTC) + timedelta(hours=2), sendgrid_batch_id="b1")
    payload = build_payload(soon, workspace.settings)
    assert isinstance(payload["send_at"], int) and payload["batch_id"] == "b1"


def test_an_address_twice_in_one_request_is_refused(workspace: Workspace) -> None:
    batch = _batches(workspace, 2)[0]
    twice = dataclasses.replace(
        batch, recipients=(batch.recipients[0], batch.recipients[1]._replace(email="PERSON0@example.com"))
    )
    with pytest.raises(ValueError, match="twice"):
        build_payload(twice, workspace.settings)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b["personalizations"].__setitem__(1, b["personalizations"][0]), "personalizations.1.to"),
        (lambda b: b.__setitem__("categories", [f"c{i}" for i in range(11)]), "categories"),
        (lambda b: b["personalizations"][0]["custom_args"].__setitem__("n", 5), "personalizations.0.custom_args"),
        (lambda b: b.__setitem__("send_at", "tomorrow"), "send_at"),
        (lambda b: b.pop("from"), "from.email"),
        (lambda b: b.__setitem__("content", list(reversed(b["content"]))), "content"),
        (lambda b: b.__setitem__("personalizations", b["personalizations"] * 501), "personalizations"),
    ],
)
def test_sink_refuses_what_sendgrid_refuses(workspace: Workspace, change: Any, field: str) -> None:
    body = json.loads(json.dumps(build_payload(_batches(workspace, 2)[0], workspace.settings)))
    assert validate_mail_send(body) == []
    change(body)
    assert field in {e["field"] for e in validate_mail_send(body)}


def test_rate_limiter_spaces_requests_and_caps_emails_per_hour() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)

    limiter = RateLimiter(requests_per_second=4, emails_per_hour=3600, clock=lambda: now[0], sleep=sleep)
    limiter.acquire(1)
    limiter.acquire(1)
    assert slept == [pytest.approx(1.0)]  # the second email waits for the hourly budget (1 per second)
    limiter = RateLimiter(requests_per_second=4, emails_per_hour=0, clock=lambda: now[0], sleep=sleep)
    slept.clear()
    for _ in range(3):
        limiter.acquire(1000)
    assert slept == [pytest.approx(0.25), pytest.approx(0.5)]


def test_reading_the_outbox_while_a_request_is_being_written_leaves_that_request_for_the_next_read(
    workspace: Workspace,
) -> None:
    backend = OutboxBackend(workspace.settings, workspace.outbox_dir)
    Harness(backend, None).send(_batches(workspace, 1500))  # two requests (at most 1,000 recipients each)
    path = workspace.outbox_dir / "requests.jsonl"
    whole = path.read_text(encoding="utf-8")
    first, second = whole.splitlines(keepends=True)
    path.write_text(first + second[: len(second) // 2], encoding="utf-8")  # a sender is half-way through its line
    assert [e["n"] for e in read_outbox(workspace.outbox_dir)] == [1]
    path.write_text(whole, encoding="utf-8")  # and then it finished
    assert [e["n"] for e in read_outbox(workspace.outbox_dir)] == [1, 2]


def test_outbox_show_renders_a_recipients_copy(workspace: Workspace) -> None:
    backend = OutboxBackend(workspace.settings, workspace.outbox_dir)
    Harness(backend, None).send(_batches(workspace, 3))
    entry = next(read_outbox(workspace.outbox_dir))
    subject, html = render_request(entry, "PERSON2@example.com")
    assert subject == "Hi P2" and "Hi P2" in html and "https://c.example.com/u/t2" in html

    from typer.testing import CliRunner

    from needlecast.cli import app

    result = CliRunner().invoke(
        app, ["-w", str(workspace.root), "outbox", "show", "1", "--recipient", "person1@example.com"]
    )
    assert result.exit_code == 0, result.stdout
    assert "subject: Hi P1" in result.stdout
    eml = next(p for p in result.stdout.split() if p.endswith(".eml"))
    message = email.message_from_bytes(Path(eml).read_bytes())
    assert message["To"] == "person1@example.com"
    # the request's own header and the recipient's: the copy has both, as SendGrid sends it
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith("<https://c.example.com/u/t1>")


class _CountingLimiter:
    """A limiter that lets every request go at once and remembers the sizes it was asked for."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def acquire(self, emails: int) -> None:
        self.sizes.append(emails)


class _FrozenHooks(OutboxBackend):
    """An outbox whose limiter, before-post hook and observer cannot change once it is built."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in {"limiter", "before_post", "observer"} and name in self.__dict__:
            raise AttributeError(f"{name} is fixed when the backend is built")
        super().__setattr__(name, value)


def test_a_backend_built_with_a_limiter_and_a_before_post_hook_uses_them(workspace: Workspace) -> None:
    from needlecast.delivery import backend_factory, get_backend

    limiter = _CountingLimiter()
    announced: list[tuple[str, int]] = []

    def before_post(batch: Batch) -> None:  # the request is not in the outbox yet when its intent is written
        announced.append((batch.request_id, sum(1 for _ in read_outbox(workspace.outbox_dir))))
        if batch.recipients[0].delivery_id == "d2000":
            raise ProviderAuthError("refused before posting")  # a refused post sends nothing

    backend = get_backend(workspace, limiter=limiter, before_post=before_post)
    assert backend.limiter is limiter and backend.before_post is before_post
    batches = [dataclasses.replace(b, request_id=f"r{i}") for i, b in enumerate(_batches(workspace, 2500))]
    outcomes: list[Outcome] = []
    with pytest.raises(ProviderAuthError):
        backend.send_all(batches, lambda _batch, result: outcomes.extend(result))
    assert sorted(limiter.sizes) == [500, 1000, 1000]  # every request waited for the limiter, once
    assert sorted(request for request, _ in announced) == ["r0", "r1", "r2"]
    assert all(posted < 3 for _, posted in announced)
    posted = [
        p["custom_args"]["delivery_id"]
        for e in read_outbox(workspace.outbox_dir)
        for p in e["request"]["personalizations"]
    ]
    assert len(posted) == 2000 and "d2000" not in posted and len(outcomes) == 2000

    factory = backend_factory(workspace)
    built = factory(limiter=limiter, before_post=before_post)
    assert built.limiter is limiter and built.before_post is before_post and built.name == "outbox"
    frozen = _FrozenHooks(workspace.settings, workspace.outbox_dir, limiter=limiter, before_post=before_post)
    with pytest.raises(AttributeError):
        frozen.before_post = None
