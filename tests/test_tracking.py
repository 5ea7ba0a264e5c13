"""The tracking app over real HTTP: uvicorn on loopback, signed webhooks, unsubscribe, preferences, opt-in."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, func, select

from needlecast import signing
from needlecast.audience.consent import start_double_opt_in
from needlecast.audience.contacts import get_contact
from needlecast.audience.importer import import_file
from needlecast.audience.membership import evaluate, load_frame
from needlecast.audience.segments import Segment
from needlecast.audience.suppression import erase, suppression_of
from needlecast.config import open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.store.engine import open_store
from needlecast.store.schema import consent_events, events, rejected_events
from needlecast.web.app import create_app
from needlecast.web.local import loopback_socket
from tests.browser import GuardedBrowser, chromium_path, picture
from tests.waiting import wait_until

SECRET = "t" * 40


@dataclass
class Site:
    url: str
    engine: Engine
    key: ec.EllipticCurvePrivateKey
    client: httpx.Client

    def contact_id(self, email: str) -> int:
        with self.engine.connect() as conn:
            return int(get_contact(conn, email)["id"])

    def token(self, kind: str, email: str, campaign: str = "spring") -> str:
        return signing.sign(SECRET.encode(), kind, self.contact_id(email), campaign)

    def signed_post(self, body: bytes, timestamp: int | None = None, **headers: str) -> httpx.Response:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = base64.b64encode(self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        sent = {
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Content-Type": "application/json",
            **headers,
        }
        return self.client.post(f"{self.url}/webhooks/sendgrid", content=body, headers=sent)

    def members(self, segment: Segment) -> set[str]:
        with self.engine.connect() as conn:
            return set(evaluate(segment, load_frame(conn), datetime.now(UTC)).members["email"])


@pytest.fixture()
def site(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(public).decode())
    monkeypatch.setenv("NEEDLECAST_SECRET", SECRET)
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    (workspace_dir / "audiences" / "few.csv").write_text(
        "Email,First Name,Concern,Marketing consent,Concern consent\n"
        "ana@example.com,Ana,acne,yes,yes\nben@example.com,Ben,ageing,yes,yes\ncai@example.com,Cai,,pending,no\n"
    )
    workspace = open_workspace(workspace_dir)
    engine = open_store(workspace.database_url)
    import_file(engine, workspace_dir / "audiences" / "few.csv", load_vocabulary_for(workspace))
    sock = loopback_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(workspace, engine), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "uvicorn to start")
    with httpx.Client(timeout=10) as client:
        yield Site(f"http://127.0.0.1:{port}", engine, key, client)
    server.should_exit = True
    thread.join(10)
    engine.dispose()


def _events(*items: dict[str, object]) -> bytes:
    return json.dumps([{"timestamp": int(time.time()), **item} for item in items]).encode()


@pytest.mark.database_independent
def test_health(site: Site) -> None:
    response = site.client.get(f"{site.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {  # nobody is sending: no scheduler leads, no worker, an empty queue
        "status": "ok",
        "leader": None,
        "standbys": 0,
        "workers": [],
        "queue": {"queued": 0, "due": 0},
    }
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.database_independent
def test_signed_events_are_accepted_and_tampering_is_refused(site: Site) -> None:
    body = _events({"email": "ana@example.com", "event": "delivered", "sg_event_id": "e1", "delivery_id": "7"})
    assert site.signed_post(body).status_code == 200
    flipped = bytearray(body)
    flipped[10] ^= 0x01
    stamp = int(time.time())
    good = site.signed_post(body, stamp)
    signature = good.request.headers["X-Twilio-Email-Event-Webhook-Signature"]
    attempts = {
        "flipped byte": (bytes(flipped), str(stamp), signature),
        "re-serialised": (json.dumps(json.loads(body), indent=1).encode(), str(stamp), signature),
        "stale": None,
        "missing header": (body, str(stamp), None),
    }
    for name, attempt in attempts.items():
        if attempt is None:
            response = site.signed_post(body, int(time.time()) - 3600)
        else:
            content, ts, sig = attempt
            headers = {"X-Twilio-Email-Event-Webhook-Timestamp": ts, "Content-Type": "application/json"}
            if sig:
                headers["X-Twilio-Email-Event-Webhook-Signature"] = sig
            response = site.client.post(f"{site.url}/webhooks/sendgrid", content=content, headers=headers)
        assert response.status_code == 403, name
    with site.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 1


def test_a_duplicated_event_is_stored_once_and_unknown_kinds_are_kept(site: Site) -> None:
    body = _events(
        {"email": "ana@example.com", "event": "open", "sg_event_id": "o1"},
        {"email": "ana@example.com", "event": "brand_new_kind", "sg_event_id": "n1"},
    )
    assert site.signed_post(body).json() == {"stored": 2, "duplicates": 0, "rejected": 0}
    assert site.signed_post(body).json() == {"stored": 0, "duplicates": 2, "rejected": 0}
    with site.engine.connect() as conn:
        kinds = sorted(conn.execute(select(events.c.kind)).scalars())
        hashes_ = set(conn.execute(select(events.c.email_hash)).scalars())
    assert kinds == ["opened", "unknown:brand_new_kind"]
    assert "ana@example.com" not in str(hashes_)


def test_a_hard_bounce_keeps_the_address_out_of_the_next_campaign(site: Site) -> None:
    everyone = Segment("all")
    assert site.members(everyone) == {"ana@example.com", "ben@example.com"}
    body = _events(
        {
            "email": "ben@example.com",
            "event": "bounce",
            "type": "bounce",
            "sg_event_id": "b1",
            "reason": "550 no such user",
        },
        {"email": "ana@example.com", "event": "bounce", "type": "blocked", "sg_event_id": "b2"},
    )
    assert site.signed_post(body).status_code == 200
    with site.engine.connect() as conn:
        assert suppression_of(conn, "ben@example.com") == "hard_bounce"
        assert suppression_of(conn, "ana@example.com") is None  # a block is a soft bounce
    assert site.members(everyone) == {"ana@example.com"}


def test_a_768_kb_batch_is_stored(site: Site) -> None:
    items = [
        {
            "email": f"user{i}@example.com",
            "event": "delivered",
            "sg_event_id": f"big{i}",
            "sg_message_id": f"m{i}.filter",
            "delivery_id": str(i + 1),
            "campaign": "spring",
            "step": "guide",
            "smtp-id": f"<{i}@example.com>",
            "category": ["spring", "spring/guide"],
            "response": "250 OK " + "x" * 80,
        }
        for i in range(2600)
    ]
    body = json.dumps(items).encode()
    assert len(body) > 768 * 1024
    response = site.signed_post(body)
    assert response.status_code == 200 and response.json()["stored"] == 2600


@pytest.mark.database_independent
def test_one_click_post_unsubscribes_and_a_get_alone_does_not(site: Site) -> None:
    url = f"{site.url}/u/{site.token(signing.UNSUBSCRIBE, 'ana@example.com')}"
    page = site.client.get(url)
    assert page.status_code == 200 and "Do you want to stop receiving" in page.text
    with site.engine.connect() as conn:
        assert suppression_of(conn, "ana@example.com") is None
    done = site.client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert "location" not in done.headers and "set-cookie" not in done.headers
    again = site.client.post(url, files={"List-Unsubscribe": (None, "One-Click")})  # multipart, and idempotent
    assert again.status_code == 200
    with site.engine.connect() as conn:
        assert suppression_of(conn, "ana@example.com") == "unsubscribed"
        withdrawals = conn.execute(
            select(func.count()).select_from(consent_events).where(consent_events.c.action == "withdrawn")
        ).scalar()
    assert withdrawals == 1


@pytest.mark.database_independent
def test_forged_or_truncated_tokens_get_404(site: Site) -> None:
    good = site.token(signing.UNSUBSCRIBE, "ana@example.com")
    forged = signing.sign(b"not-the-secret" * 3, signing.UNSUBSCRIBE, site.contact_id("ana@example.com"), "x")
    confirmation = site.token(signing.CONFIRM, "ana@example.com")  # a valid token of another kind
    for path in (
        f"/u/{good[:-3]}",
        f"/u/{forged}",
        f"/u/{confirmation}",
        "/u/garbage",
        f"/p/{confirmation}",
        f"/p/{good[:-1]}",
    ):
        response = site.client.post(f"{site.url}{path}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 404, path
        assert "ana" not in response.text


@pytest.mark.database_independent
def test_preference_page_pauses_chooses_topics_and_needs_its_csrf_field(site: Site) -> None:
    url = f"{site.url}/p/{site.token(signing.PREFERENCES, 'ben@example.com')}"
    page = site.client.get(url)
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    assert site.client.post(url, data={"action": "pause"}).status_code == 403
    assert (
        site.client.post(
            url, data={"action": "pause", "csrf": csrf}, headers={"Origin": "https://evil.example.net"}
        ).status_code
        == 403
    )
    paused = site.client.post(url, data={"action": "pause", "csrf": csrf})
    assert paused.status_code == 200 and "paused until" in paused.text
    assert site.members(Segment("all")) == {"ana@example.com"}
    chose = site.client.post(url, data={"action": "save", "csrf": csrf, "concern": ["pigmentation", "bogus"]})
    assert chose.status_code == 200
    with site.engine.connect() as conn:
        ben = get_contact(conn, "ben@example.com")
    assert ben["concerns"] == "pigmentation" and ben["concern_consent"] is True
    left = site.client.post(url, data={"action": "leave", "csrf": csrf})
    assert "unsubscribed from everything" in left.text
    with site.engine.connect() as conn:
        assert suppression_of(conn, "ben@example.com") == "unsubscribed"


@pytest.mark.database_independent
def test_confirmation_link_completes_a_pending_double_opt_in(site: Site) -> None:
    with site.engine.begin() as conn:
        token = start_double_opt_in(conn, site.contact_id("cai@example.com"), SECRET.encode(), source="form")
    assert site.members(Segment("all")) == {"ana@example.com", "ben@example.com"}
    bad = site.client.get(f"{site.url}/confirm/{token[:-4]}")
    assert bad.status_code == 404
    shown = site.client.get(f"{site.url}/confirm/{token}")  # what a mail scanner following the link does
    assert shown.status_code == 200 and 'id="confirm"' in shown.text
    assert site.client.head(f"{site.url}/confirm/{token}").status_code == 200
    assert "cai@example.com" not in site.members(Segment("all"))
    csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text)
    assert csrf is not None
    forged = site.client.post(f"{site.url}/confirm/{token}", data={"csrf": "forged"})
    assert forged.status_code == 403 and "cai@example.com" not in site.members(Segment("all"))
    good = site.client.post(f"{site.url}/confirm/{token}", data={"csrf": csrf.group(1)})
    assert good.status_code == 200 and "Thank you" in good.text
    assert "cai@example.com" in site.members(Segment("all"))


@pytest.mark.database_independent
def test_request_size_is_limited(site: Site) -> None:
    response = site.signed_post(b"[" + b" " * 6_000_000 + b"]")
    assert response.status_code == 413


@pytest.mark.database_independent
@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_pages_render_in_headless_chromium(site: Site, browser: GuardedBrowser) -> None:
    """In the session's Chromium (guarded: a console error or CSP violation on these pages fails the test)."""
    with site.engine.begin() as conn:
        confirm_token = start_double_opt_in(conn, site.contact_id("cai@example.com"), SECRET.encode(), source="t")
    pages = {
        "unsubscribe": (f"/u/{site.token(signing.UNSUBSCRIBE, 'ana@example.com')}", "Do you want to stop receiving"),
        "preferences": (f"/p/{site.token(signing.PREFERENCES, 'ben@example.com')}", "Topics I want to hear about"),
        "confirmation": (f"/confirm/{confirm_token}", "Yes, confirm my subscription"),
    }
    page = browser.new_context(viewport={"width": 800, "height": 900}).new_page()
    for name, (path, expected) in pages.items():
        page.goto(f"{site.url}{path}")
        assert expected in page.content()
        shot = picture(page, name, full_page=False)
        assert len(shot) > 5_000 and shot[:4] == b"\x89PNG"
    assert "cai@example.com" not in site.members(Segment("all"))  # opening the link confirmed nobody


def test_one_malformed_event_never_costs_the_valid_events_of_its_batch(site: Site) -> None:
    valid = [
        {"email": "ana@example.com", "event": "unsubscribe", "sg_event_id": "ok-unsub"},
        {"email": "ben@example.com", "event": "bounce", "type": "bounce", "sg_event_id": "ok-bounce"},
        {"email": "cai@example.com", "event": "spamreport", "sg_event_id": "ok-spam"},
    ]
    hostile = (
        '{"email": "x@example.com", "event": "delivered", "sg_event_id": "h1", "delivery_id": "99999999999999999999"}',
        '{"email": "\\ud800@example.com", "event": "open", "sg_event_id": "h2"}',
        '{"email": "y@example.com", "event": "click", "sg_event_id": "h3", "url": "https://x.example/\\u0000"}',
        '{"email": "z@example.com", "event": "open", "sg_event_id": "h4", "score": NaN}',
        '"just a string"',
        '{"email": ["not", "text"], "event": "open", "sg_event_id": "h5"}',
        '{"email": "w@example.com", "event": "open", "sg_event_id": "h6", "timestamp": 1e300}',
    )
    body = (
        "[" + ",".join([json.dumps({"timestamp": int(time.time()), **v}) for v in valid] + list(hostile)) + "]"
    ).encode()
    response = site.signed_post(body)
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 3, "duplicates": 0, "rejected": len(hostile)}
    with site.engine.connect() as conn:
        assert suppression_of(conn, "ana@example.com") == "unsubscribed"
        assert suppression_of(conn, "ben@example.com") == "hard_bounce"
        assert suppression_of(conn, "cai@example.com") == "complaint"
        reasons = sorted(conn.execute(select(rejected_events.c.reason)).scalars())
        raws = list(conn.execute(select(rejected_events.c.raw)).scalars())
    assert any("delivery_id is out of range" in r for r in reasons)
    assert any("lone surrogate" in r for r in reasons) and any("NUL" in r for r in reasons)
    assert any("NaN" in r for r in reasons) and "not an event object" in reasons
    assert any("'email' is not text" in r for r in reasons) and any("timestamp" in r for r in reasons)
    assert all(raw.isascii() and "\x00" not in raw for raw in raws)  # kept, escaped, storable anywhere
    assert site.signed_post(body).json() == {"stored": 0, "duplicates": 3, "rejected": len(hostile)}


@pytest.mark.database_independent
def test_a_deeply_nested_body_is_refused_before_it_is_parsed(site: Site) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    response = site.signed_post(body)
    assert response.status_code == 400 and "nested too deeply" in response.text


@pytest.mark.database_independent
def test_only_a_post_unsubscribes_head_answers_like_get_and_other_methods_are_405(site: Site) -> None:
    url = f"{site.url}/u/{site.token(signing.UNSUBSCRIBE, 'ana@example.com')}"
    head = site.client.head(url)
    assert head.status_code == 200
    for method in ("PUT", "DELETE", "PATCH"):
        assert site.client.request(method, url, data={"List-Unsubscribe": "One-Click"}).status_code == 405
    with site.engine.connect() as conn:
        assert suppression_of(conn, "ana@example.com") is None  # nothing but a POST changed anything


@pytest.mark.database_independent
def test_the_links_of_an_erased_person_are_dead(site: Site) -> None:
    token = site.token(signing.PREFERENCES, "ben@example.com")
    assert site.client.get(f"{site.url}/p/{token}").status_code == 200
    with site.engine.begin() as conn:
        erase(conn, "ben@example.com")
    for path in (f"/p/{token}", f"/u/{token}"):
        response = site.client.get(f"{site.url}{path}")
        assert response.status_code == 404 and "Ben" not in response.text
    assert site.client.post(f"{site.url}/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
