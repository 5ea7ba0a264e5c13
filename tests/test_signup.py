"""The signup form over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL: double opt-in with the
emailed link, consents stored with their evidence, the same answer for every address, bots and floods refused
with nothing stored, and a confirmed lead enrolled in the nurture sequence like an imported one."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from needlecast.audience.confirmations import process_signups
from needlecast.audience.signup import take_received
from needlecast.audience.suppression import suppress, suppression_of
from needlecast.campaign.send.runner import Runner
from needlecast.config import signing_secret
from needlecast.delivery import backend_factory, get_backend
from needlecast.delivery.base import Backend, Batch
from needlecast.delivery.outbox import read_outbox
from needlecast.errors import PayloadError
from needlecast.schedule import SchedulerRuntime, run_confirmations_job
from needlecast.store.delivery import delivery_store
from needlecast.store.helpers import utcnow
from needlecast.store.schema import consent_events, contacts, deliveries, signup_intake, signup_requests
from needlecast.templating.recipient import link_base
from tests.cli_runner import run
from tests.console_site import ConsoleSite, csrf_of, site

GOOD = {"email": "Nia.Lead@Example.org", "first_name": "Nia", "marketing_consent": "yes", "form": "website"}


@pytest.fixture()
def web(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, store_url, import_sample=False) as running:
        yield running


def send_confirmations(web: ConsoleSite) -> dict[str, int]:
    """Store the received submissions and send their confirmations, as the scheduler's `confirmations` job
    does."""
    return process_signups(web.engine, web.workspace, signing_secret(required=False))


def confirmation_links(web: ConsoleSite, address: str) -> list[str]:
    """The confirmation links emailed to `address` once the queued ones are sent (the outbox keeps each
    request as SendGrid would get it), pointed at the local server: they name the clinic's public address,
    which a test never calls."""
    send_confirmations(web)
    links = []
    for entry in read_outbox(web.workspace.outbox_dir):
        for person in entry["request"]["personalizations"]:
            if person["to"][0]["email"] == address:
                links += [v for v in person.get("substitutions", {}).values() if "/confirm/" in v]
    public = link_base(web.workspace.settings)
    assert all(link.startswith(f"{public}/confirm/") for link in links), links
    return [web.url + link[len(public) :] for link in links]


def confirm(link: str) -> httpx.Response:
    """What a person does: open the link, then press the page's button."""
    page = httpx.get(link)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and csrf, page.text
    return httpx.post(link, data={"csrf": csrf.group(1)})


def contact_row(web: ConsoleSite, address: str) -> dict[str, Any] | None:
    with web.engine.connect() as conn:
        row = conn.execute(select(contacts).where(contacts.c.email == address)).mappings().first()
    return dict(row) if row else None


def stored_counts(web: ConsoleSite) -> tuple[int, int]:
    """Contacts and signup requests, once the received submissions are processed."""
    send_confirmations(web)
    with web.engine.connect() as conn:
        return (
            int(conn.execute(select(func.count()).select_from(contacts)).scalar_one()),
            int(conn.execute(select(func.count()).select_from(signup_requests)).scalar_one()),
        )


@pytest.mark.database_independent
def test_the_hosted_form_shows_both_consents_unticked_with_the_configured_wording(web: ConsoleSite) -> None:
    page = httpx.get(f"{web.url}/subscribe").text
    signup = web.workspace.settings.signup
    for wording, name in ((signup.marketing_wording, "marketing_consent"), (signup.concern_wording, "concern_consent")):
        assert wording in page.replace("&#39;", "'")
        box = re.search(rf'<input type="checkbox" id="{name}"[^>]*>', page)
        assert box and "checked" not in box.group(0)
    for concern in ("acne", "ageing", "pigmentation"):
        assert f'value="{concern}"' in page


@pytest.mark.database_independent
@pytest.mark.parametrize("as_json", [False, True])
def test_a_lead_is_pending_until_the_emailed_link_is_followed_and_then_has_its_consents_with_evidence(
    web: ConsoleSite, as_json: bool
) -> None:
    body = {**GOOD, "concerns": ["acne", "pigmentation"], "concern_consent": "yes"}
    answer = httpx.post(f"{web.url}/subscribe", **({"json": body} if as_json else {"data": body}))  # type: ignore[arg-type]
    assert answer.status_code == 200, answer.text
    send_confirmations(web)  # the scheduler's job
    pending = contact_row(web, "nia.lead@example.org")
    assert pending is not None and pending["status"] == "pending"
    assert not pending["marketing_consent"] and not pending["concern_consent"] and pending["concerns"] == ""
    (link,) = confirmation_links(web, "nia.lead@example.org")
    confirmed = confirm(link)
    assert confirmed.status_code == 200 and "confirmed" in confirmed.text.lower()
    lead = contact_row(web, "nia.lead@example.org")
    assert lead is not None
    assert (lead["status"], lead["marketing_consent"], lead["concern_consent"]) == ("active", True, True)
    assert (lead["first_name"], lead["concerns"]) == ("Nia", "acne;pigmentation")
    with web.engine.connect() as conn:
        evidence = conn.execute(
            select(
                consent_events.c.purpose,
                consent_events.c.action,
                consent_events.c.source,
                consent_events.c.wording_version,
                consent_events.c.address_hash,
            ).where(consent_events.c.contact_id == lead["id"], consent_events.c.action == "granted")
        ).all()
    assert sorted((p, a, s, w) for p, a, s, w, _h in evidence) == [
        ("concern", "granted", "form:website", "concern-v1"),
        ("marketing", "granted", "form:website", "marketing-v1"),
    ]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for *_rest, h in evidence)  # the request's address, hashed
    assert "127.0.0.1" not in str(evidence)


@pytest.mark.database_independent
def test_without_the_health_data_consent_the_lead_gets_general_content(web: ConsoleSite) -> None:
    httpx.post(f"{web.url}/subscribe", data={**GOOD, "concerns": "acne"})  # the health-data box left unticked
    confirm(confirmation_links(web, "nia.lead@example.org")[0])
    lead = contact_row(web, "nia.lead@example.org")
    assert lead is not None and lead["status"] == "active" and not lead["concern_consent"]
    report = Runner(web.workspace, web.engine, backend_factory(web.workspace)).run_sequence("new-lead-nurture")
    assert report.enrolled == 1 and report.sent == 1
    with web.engine.connect() as conn:
        variant = conn.execute(select(deliveries.c.variant).where(deliveries.c.contact_id == lead["id"])).scalar()
    assert variant == "general"


def test_a_confirmed_lead_enrols_in_the_nurture_sequence_in_their_concerns_variant(web: ConsoleSite) -> None:
    httpx.post(f"{web.url}/subscribe", data={**GOOD, "concerns": "acne", "concern_consent": "yes"})
    runner = Runner(web.workspace, web.engine, backend_factory(web.workspace))
    assert runner.run_sequence("new-lead-nurture").enrolled == 0  # pending: not yet
    confirm(confirmation_links(web, "nia.lead@example.org")[0])
    report = runner.run_sequence("new-lead-nurture")
    assert report.enrolled == 1 and report.sent == 1
    with web.engine.connect() as conn:
        rows = conn.execute(select(deliveries.c.step_id, deliveries.c.variant, deliveries.c.status)).all()
        assert delivery_store(conn).counts(conn, "new-lead-nurture")["sent"] == 1
    assert [tuple(r) for r in rows] == [("welcome", "acne", "sent")]


def queued(web: ConsoleSite) -> dict[str, list[str]]:
    """Each address's signup requests' confirmation states."""
    with web.engine.connect() as conn:
        rows = conn.execute(
            select(contacts.c.email, signup_requests.c.confirmation)
            .join(contacts, contacts.c.id == signup_requests.c.contact_id)
            .order_by(signup_requests.c.id)
        ).all()
    found: dict[str, list[str]] = {}
    for email, state in rows:
        found.setdefault(email, []).append(state)
    return found


@pytest.mark.database_independent
def test_a_new_a_known_and_a_suppressed_address_take_the_same_path_and_nothing_is_sent_in_the_request(
    web: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    with web.engine.begin() as conn:
        suppress(conn, "gone@example.org", "unsubscribed")
    assert httpx.post(f"{web.url}/subscribe", data={**GOOD, "email": "known@example.org"}).status_code == 200
    confirm(confirmation_links(web, "known@example.org")[0])  # a known, subscribed contact
    sends: list[str] = []
    answers = []
    with monkeypatch.context() as patched:
        patched.setattr(Backend, "send_all", lambda _self, *_args: sends.append("send_all"))
        patched.setattr(Backend, "send_one", lambda _self, *_args: sends.append("send_one"))
        for address in ("new@example.org", "gone@example.org", "known@example.org"):
            response = httpx.post(f"{web.url}/subscribe", data={**GOOD, "email": address})
            answers.append((response.status_code, response.headers.get("content-type"), response.text))
    assert answers[0] == answers[1] == answers[2] and answers[0][0] == 200
    assert sends == []  # no backend was called in any request
    with web.engine.connect() as conn:  # each answer stored its submission, as it came, and nothing else
        received = conn.execute(select(signup_intake.c.email).order_by(signup_intake.c.id)).scalars().all()
    assert received == ["new@example.org", "gone@example.org", "known@example.org"]
    assert queued(web) == {"known@example.org": ["sent"]}
    send_confirmations(web)  # the scheduler's job decides what each one is
    assert queued(web) == {"new@example.org": ["sent"], "known@example.org": ["sent", "sent"]}
    assert confirmation_links(web, "gone@example.org") == []
    assert contact_row(web, "gone@example.org") is None
    with web.engine.connect() as conn:
        assert suppression_of(conn, "gone@example.org") == "unsubscribed"


def test_a_queued_confirmation_is_sent_exactly_once_by_the_scheduler_job_however_many_run(web: ConsoleSite) -> None:
    assert httpx.post(f"{web.url}/subscribe", data=GOOD).status_code == 200
    assert list(read_outbox(web.workspace.outbox_dir)) == []  # nothing is sent by the web request
    runtime = SchedulerRuntime(web.engine)
    barrier = threading.Barrier(3)

    def job() -> None:
        barrier.wait()
        run_confirmations_job(str(web.workspace.root), runtime=runtime)

    threads = [threading.Thread(target=job) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run_confirmations_job(str(web.workspace.root), runtime=runtime)  # and once more, later
    requests = [e["request"] for e in read_outbox(web.workspace.outbox_dir)]
    assert [p["to"][0]["email"] for r in requests for p in r["personalizations"]] == ["nia.lead@example.org"]
    assert queued(web) == {"nia.lead@example.org": ["sent"]}


@pytest.mark.database_independent
def test_a_confirmation_queued_before_the_address_was_suppressed_is_not_sent(web: ConsoleSite) -> None:
    assert httpx.post(f"{web.url}/subscribe", data=GOOD).status_code == 200
    with web.engine.begin() as conn:
        take_received(conn, web.workspace.settings.signup, utcnow(), 10)  # stored and queued...
        suppress(conn, "nia.lead@example.org", "complaint")  # ...and then the address is suppressed
    assert send_confirmations(web) == {"skipped": 1}
    assert list(read_outbox(web.workspace.outbox_dir)) == []


@pytest.mark.database_independent
def test_a_confirmation_the_provider_would_refuse_fails_alone_and_never_blocks_the_queue(
    web: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    for address in ("first@example.org", "refused@example.org", "last@example.org"):
        assert httpx.post(f"{web.url}/subscribe", data={**GOOD, "email": address}).status_code == 200
    backend_class = type(get_backend(web.workspace))
    prepare = backend_class.prepare

    def refusing(self: Backend, batch: Batch) -> Any:
        if batch.recipients[0].email == "refused@example.org":
            raise PayloadError("the provider would refuse this one")
        return prepare(self, batch)

    monkeypatch.setattr(backend_class, "prepare", refusing)
    assert send_confirmations(web) == {"sent": 2, "failed": 1}
    assert send_confirmations(web) == {}  # nothing comes back to be tried again
    requests = [entry["request"] for entry in read_outbox(web.workspace.outbox_dir)]
    sent = sorted(p["to"][0]["email"] for request in requests for p in request["personalizations"])
    assert sent == ["first@example.org", "last@example.org"]


@pytest.mark.database_independent
def test_opening_the_confirm_link_confirms_nobody_and_only_the_pages_button_does(web: ConsoleSite) -> None:
    httpx.post(f"{web.url}/subscribe", data={**GOOD, "concerns": "acne", "concern_consent": "yes"})
    (link,) = confirmation_links(web, "nia.lead@example.org")
    for _ in range(2):  # a mail scanner opens the link, maybe twice, maybe with HEAD first
        assert httpx.head(link).status_code == 200
        page = httpx.get(link)
        assert page.status_code == 200 and "Yes, confirm my subscription" in page.text
    assert contact_row(web, "nia.lead@example.org")["status"] == "pending"  # type: ignore[index]
    assert httpx.post(link, data={"csrf": "forged"}).status_code == 403
    cross_site = httpx.post(link, data={"csrf": csrf_of(page.text)}, headers={"Origin": "https://evil.example.net"})
    assert cross_site.status_code == 403
    assert contact_row(web, "nia.lead@example.org")["status"] == "pending"  # type: ignore[index]
    done = httpx.post(link, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "confirmed" in done.text.lower()
    lead = contact_row(web, "nia.lead@example.org")
    assert lead is not None and (lead["status"], lead["marketing_consent"]) == ("active", True)


@pytest.mark.database_independent
def test_an_existing_subscriber_is_unchanged_until_they_confirm(web: ConsoleSite) -> None:
    httpx.post(f"{web.url}/subscribe", data={**GOOD, "concerns": "acne", "concern_consent": "yes"})
    confirm(confirmation_links(web, "nia.lead@example.org")[0])
    before = contact_row(web, "nia.lead@example.org")
    httpx.post(f"{web.url}/subscribe", data={**GOOD, "first_name": "Somebody Else", "concerns": "ageing"})
    send_confirmations(web)
    assert contact_row(web, "nia.lead@example.org") == before  # a stranger cannot change a known contact


@pytest.mark.database_independent
def test_a_bot_filling_the_honeypot_is_refused_with_429_and_nothing_is_stored(web: ConsoleSite) -> None:
    refused = httpx.post(f"{web.url}/subscribe", data={**GOOD, "website": "http://spam.example"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert stored_counts(web) == (0, 0) and list(read_outbox(web.workspace.outbox_dir)) == []


def test_a_flood_for_one_address_is_refused_with_429_and_the_refused_ones_store_nothing(web: ConsoleSite) -> None:
    limit = web.workspace.settings.signup.per_address_per_hour
    statuses = [httpx.post(f"{web.url}/subscribe", data=GOOD).status_code for _ in range(limit + 2)]
    assert statuses == [200] * limit + [429, 429]
    assert stored_counts(web) == (1, limit)
    assert len(confirmation_links(web, "nia.lead@example.org")) == limit


def test_a_flood_from_one_network_address_is_refused_with_429(
    workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'flood.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    with site(workspace_dir, url, import_sample=False, settings="\n[signup]\nper_ip_per_hour = 4\n") as web:
        statuses = [
            httpx.post(f"{web.url}/subscribe", data={**GOOD, "email": f"lead{i}@example.org"}).status_code
            for i in range(6)
        ]
        assert statuses == [200] * 4 + [429, 429]
        assert stored_counts(web) == (4, 4)


@pytest.mark.database_independent
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"concerns": "warts"}, "concerns"),
        ({"marketing_consent": ""}, "marketing_consent"),
        ({"form": "Bad Form!"}, "form"),
    ],
)
def test_a_bad_value_is_a_400_naming_the_field_and_stores_nothing(
    web: ConsoleSite, change: dict[str, str], field: str
) -> None:
    answer = httpx.post(f"{web.url}/subscribe", json={**GOOD, **change})
    assert answer.status_code == 400 and answer.json()["message"].startswith(f"{field}:"), answer.text
    assert stored_counts(web) == (0, 0)


@pytest.mark.database_independent
def test_an_oversized_or_unreadable_body_is_refused(web: ConsoleSite) -> None:
    big = httpx.post(f"{web.url}/subscribe", data={**GOOD, "first_name": "x" * 20_000})
    assert big.status_code == 413
    deep = httpx.post(
        f"{web.url}/subscribe", content=b"[" * 50 + b"]" * 50, headers={"content-type": "application/json"}
    )
    assert deep.status_code == 400
    assert stored_counts(web) == (0, 0)


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.names: set[str] = set()
        self.fields: dict[str, str] = {}  # what a browser posts when no box is ticked

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.action = found.get("action") or ""
        if tag == "input" and found.get("name"):
            self.names.add(str(found["name"]))
            if found.get("type") != "checkbox" or "checked" in found:
                self.fields.setdefault(str(found["name"]), str(found.get("value") or ""))


@pytest.mark.database_independent
def test_the_snippet_is_a_plain_form_that_posts_to_the_hosted_endpoint(
    web: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    printed = run(monkeypatch, web.workspace.root, "form", "snippet", "--form", "spring-fair")
    assert printed.code == 0, printed.stderr
    assert "<script" not in printed.stdout
    form = _Form()
    form.feed(printed.stdout)
    assert form.action.endswith("/subscribe") and form.fields["form"] == "spring-fair"
    assert {"email", "first_name", "concerns", "marketing_consent", "concern_consent", "website"} <= form.names
    assert web.workspace.settings.signup.marketing_wording in printed.stdout
    # What a browser would post from it (action made local: the snippet names the public address).
    answer = httpx.post(
        f"{web.url}/subscribe",
        data={**form.fields, "email": "fair@example.org", "marketing_consent": "yes"},
    )
    assert answer.status_code == 200
    (link,) = confirmation_links(web, "fair@example.org")
    confirm(link)
    with web.engine.connect() as conn:
        sources = (
            conn.execute(select(consent_events.c.source).where(consent_events.c.action == "granted")).scalars().all()
        )
    assert sources == ["form:spring-fair"]
