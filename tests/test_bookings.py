"""Booking hooks over real HTTP on loopback: Calendly, Acuity (with a loopback stub of its API) and a generic
system, signed, forged and replayed, on both databases."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, select

from needlecast.accounts import audit
from needlecast.audience.contacts import get_contact
from needlecast.audience.importer import import_file
from needlecast.audience.suppression import erase
from needlecast.bookings.record import next_appointment
from needlecast.config import load_settings, open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import ConfigurationError
from needlecast.store.engine import open_store
from needlecast.store.schema import appointments, contact_events
from needlecast.web.app import create_app
from needlecast.web.local import loopback_socket
from tests.waiting import serving, wait_until

CALENDLY_KEY = "calendly-signing-key-for-tests"
ACUITY_KEY = "acuity-api-key-for-tests"
GENERIC_SECRET = "generic-secret-for-tests"
MICRONEEDLING = "https://api.calendly.com/event_types/MICRO"
SOON = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
LATER = SOON + timedelta(days=7)

BOOKINGS_TOML = """
[bookings]
providers = ["calendly", "acuity", "generic"]
acuity_base_url = "{acuity}"
acuity_user_id = "4242"
generic_signature_header = "X-Signature"

[bookings.treatments]
"{micro}" = "microneedling"
"7001" = "microneedling"
"Peel" = "chemical_peel"

[bookings.generic]
items = "appointments"
id = "event_id"
email = "client.email"
kind = "status"
occurred_at = "changed_at"
starts_at = "start"
appointment_id = "appointment_id"
appointment_type = "service"

[bookings.generic.kinds]
Booked = "booked"
Cancelled = "cancelled_booking"
Arrived = "attended"
DNA = "no_show"
"""


@dataclass
class AcuityStub:
    """Acuity's GET /appointments/{id} on loopback: answers from `appointments`, or `status` when set."""

    url: str = ""
    appointments: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: int = 200
    seen: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization header)


def _acuity_handler(stub: AcuityStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the stdlib's name for the GET handler
            stub.seen.append((self.path, self.headers.get("Authorization", "")))
            appointment = stub.appointments.get(self.path.rsplit("/", 1)[-1])
            status = stub.status if stub.status != 200 else (200 if appointment else 404)
            body = json.dumps(appointment if status == 200 else {"error": "not_found"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture()
def acuity() -> Iterator[AcuityStub]:
    stub = AcuityStub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _acuity_handler(stub))
    stub.url = f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    with serving(server):
        yield stub


@dataclass
class Site:
    url: str
    engine: Engine
    client: httpx.Client

    def post(self, provider: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(f"{self.url}/hooks/bookings/{provider}", content=body, headers=headers)

    def calendly(self, body: bytes, *, key: str = CALENDLY_KEY, stamp: int | None = None) -> httpx.Response:
        t = str(int(time.time()) if stamp is None else stamp)
        signature = hmac.new(key.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        headers = {"Calendly-Webhook-Signature": f"t={t},v1={signature}", "Content-Type": "application/json"}
        return self.post("calendly", body, headers)

    def acuity(self, form: dict[str, str], *, key: str = ACUITY_KEY) -> httpx.Response:
        body = urlencode(form).encode()
        signature = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
        headers = {"X-Acuity-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
        return self.post("acuity", body, headers)

    def generic(self, items: list[dict[str, Any]], *, secret: str = GENERIC_SECRET) -> httpx.Response:
        body = json.dumps({"appointments": items}).encode()
        signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return self.post("generic", body, {"X-Signature": signature, "Content-Type": "application/json"})

    def events(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(contact_events).order_by(contact_events.c.id)).mappings()
            return [dict(r) for r in rows]

    def contact_id(self, email: str) -> int:
        with self.engine.connect() as conn:
            return int(get_contact(conn, email)["id"])

    def next_of(self, email: str) -> tuple[datetime, str] | None:
        with self.engine.connect() as conn:
            return next_appointment(conn, self.contact_id(email), datetime.now(UTC))

    def attributes(self, email: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(get_contact(conn, email)["attributes"] or {})

    def audited(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return audit.entries(conn, action="bookings.")


@pytest.fixture()
def site(workspace_dir: Path, store_url: str, acuity: AcuityStub, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("CALENDLY_WEBHOOK_SIGNING_KEY", CALENDLY_KEY)
    monkeypatch.setenv("ACUITY_API_KEY", ACUITY_KEY)
    monkeypatch.setenv("NEEDLECAST_BOOKINGS_SECRET", GENERIC_SECRET)
    config = workspace_dir / "needlecast.toml"
    config.write_text(config.read_text() + BOOKINGS_TOML.format(acuity=acuity.url, micro=MICRONEEDLING))
    (workspace_dir / "audiences" / "few.csv").write_text(
        "Email,First Name,Concern,Marketing consent,Concern consent\n"
        "ana@example.com,Ana,acne,yes,yes\nben@example.com,Ben,ageing,yes,yes\n"
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
        yield Site(f"http://127.0.0.1:{port}", engine, client)
    server.should_exit = True
    thread.join(10)
    engine.dispose()


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def calendly_body(
    event: str,
    invitee: str,
    *,
    email: str = "ana@example.com",
    starts: datetime = SOON,
    event_type: str = MICRONEEDLING,
    rescheduled: bool = False,
    old_invitee: str | None = None,
    at: datetime | None = None,
) -> bytes:
    """A delivery in Calendly's documented shape (invitee.created / invitee.canceled)."""
    created = at or datetime.now(UTC)
    payload = {
        "created_at": _stamp(created),
        "created_by": "https://api.calendly.com/users/HOST",
        "event": event,
        "payload": {
            "uri": f"https://api.calendly.com/scheduled_events/EV/invitees/{invitee}",
            "email": email,
            "name": "Ana Example",
            "status": "canceled" if event == "invitee.canceled" else "active",
            "rescheduled": rescheduled,
            "old_invitee": old_invitee,
            "new_invitee": None,
            "created_at": _stamp(created),
            "updated_at": _stamp(created),
            "scheduled_event": {
                "uri": "https://api.calendly.com/scheduled_events/EV",
                "name": "Microneedling (60 min)",
                "start_time": _stamp(starts),
                "end_time": _stamp(starts + timedelta(hours=1)),
                "event_type": event_type,
            },
        },
    }
    return json.dumps(payload).encode()


@pytest.mark.database_independent
def test_a_signed_calendly_booking_is_stored_with_its_treatment_and_next_appointment(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = site.calendly(calendly_body("invitee.created", "INV1"))
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 1
    (event,) = site.events()
    assert event["type"] == "booked"
    assert event["treatment"] == "microneedling"
    assert event["appointment_at"] == SOON
    assert event["contact_id"] == site.contact_id("ana@example.com")
    assert site.next_of("ana@example.com") == (SOON, "microneedling")
    assert site.attributes("ana@example.com")["next_appointment_at"] == SOON.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert site.attributes("ana@example.com")["next_appointment_treatment"] == "microneedling"
    (entry,) = site.audited()
    assert entry["actor"] == "bookings:calendly" and entry["detail"]["stored"] == 1
    assert "ana@example.com" not in caplog.text and "Ana" not in caplog.text
    assert "ana@example.com" not in json.dumps(entry["detail"])


@pytest.mark.database_independent
def test_a_forged_tampered_or_stale_calendly_delivery_is_401_and_stores_nothing(site: Site) -> None:
    body = calendly_body("invitee.created", "INV1")
    assert site.calendly(body, key="someone-else").status_code == 401
    t = str(int(time.time()))
    signature = hmac.new(CALENDLY_KEY.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    tampered = body.replace(b"ana@example.com", b"ben@example.com")
    headers = {"Calendly-Webhook-Signature": f"t={t},v1={signature}"}
    assert site.post("calendly", tampered, headers).status_code == 401
    assert site.calendly(body, stamp=int(time.time()) - 600).status_code == 401  # outside the 180 s window
    assert site.post("calendly", body, {}).status_code == 401
    assert site.events() == []
    assert site.next_of("ana@example.com") is None
    assert site.audited() == []


def test_a_replayed_delivery_stores_nothing_twice_and_cannot_reopen_a_cancelled_appointment(site: Site) -> None:
    booked = calendly_body("invitee.created", "INV1", at=datetime.now(UTC) - timedelta(minutes=2))
    assert site.calendly(booked).json()["stored"] == 1
    assert site.calendly(calendly_body("invitee.canceled", "INV1")).json()["stored"] == 1
    replay = site.calendly(booked)  # the same delivery again, freshly signed: a retry or a replay
    assert replay.status_code == 200
    assert replay.json()["stored"] == 0 and replay.json()["duplicates"] == 1
    assert [e["type"] for e in site.events()] == ["booked", "cancelled_booking"]
    assert site.next_of("ana@example.com") is None


@pytest.mark.database_independent
def test_a_cancellation_clears_the_future_appointment(site: Site) -> None:
    first = calendly_body("invitee.created", "INV1", at=datetime.now(UTC) - timedelta(minutes=1))
    assert site.calendly(first).status_code == 200
    assert site.next_of("ana@example.com") == (SOON, "microneedling")
    response = site.calendly(calendly_body("invitee.canceled", "INV1"))
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert site.events()[-1]["type"] == "cancelled_booking"
    assert site.next_of("ana@example.com") is None
    assert "next_appointment_at" not in site.attributes("ana@example.com")


@pytest.mark.database_independent
def test_a_calendly_reschedule_moves_the_next_appointment_without_a_cancellation(site: Site) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    site.calendly(calendly_body("invitee.created", "OLD", at=before))
    site.calendly(calendly_body("invitee.canceled", "OLD", rescheduled=True))
    new = calendly_body(
        "invitee.created", "NEW", starts=LATER, old_invitee="https://api.calendly.com/scheduled_events/EV/invitees/OLD"
    )
    assert site.calendly(new).json()["stored"] == 1
    assert [e["type"] for e in site.events()] == ["booked", "rescheduled"]
    assert site.next_of("ana@example.com") == (LATER, "microneedling")


@pytest.mark.database_independent
def test_an_unknown_appointment_type_is_kept_and_reported(site: Site) -> None:
    other = "https://api.calendly.com/event_types/UNMAPPED"
    response = site.calendly(calendly_body("invitee.created", "INV9", event_type=other))
    assert response.status_code == 200
    assert response.json()["stored"] == 1
    assert response.json()["unknown_types"] == [other]
    (event,) = site.events()
    assert event["type"] == "booked" and event["treatment"] == ""
    assert site.next_of("ana@example.com") == (SOON, "")
    assert site.audited()[0]["detail"]["unknown_types"] == [other]


def _acuity_appointment(appointment_id: int, **changes: Any) -> dict[str, Any]:
    """An appointment in the shape of Acuity's GET /appointments/{id}."""
    return {
        "id": appointment_id,
        "firstName": "Ben",
        "lastName": "Example",
        "email": "ben@example.com",
        "datetime": SOON.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "type": "Microneedling",
        "appointmentTypeID": 7001,
        "calendarID": 1,
        "canceled": False,
        **changes,
    }


@pytest.mark.database_independent
def test_an_acuity_notice_is_verified_then_its_appointment_fetched_from_the_api(site: Site, acuity: AcuityStub) -> None:
    acuity.appointments["501"] = _acuity_appointment(501)
    notice = {"action": "scheduled", "id": "501", "calendarID": "1", "appointmentTypeID": "7001"}
    assert site.acuity(notice, key="not-the-api-key").status_code == 401
    assert acuity.seen == []  # a forged notice never reaches Acuity's API
    response = site.acuity(notice)
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 1
    expected_auth = "Basic " + base64.b64encode(f"4242:{ACUITY_KEY}".encode()).decode()
    assert acuity.seen == [("/api/v1/appointments/501", expected_auth)]
    (event,) = site.events()
    assert (event["type"], event["treatment"], event["appointment_at"]) == ("booked", "microneedling", SOON)
    assert site.next_of("ben@example.com") == (SOON, "microneedling")
    assert site.acuity(notice).json()["duplicates"] == 1  # a replay stores nothing twice
    acuity.appointments["501"] = _acuity_appointment(501, datetime=LATER.strftime("%Y-%m-%dT%H:%M:%S+0000"))
    assert site.acuity({**notice, "action": "rescheduled"}).json()["stored"] == 1
    assert site.next_of("ben@example.com") == (LATER, "microneedling")
    acuity.appointments["501"] = _acuity_appointment(501, canceled=True)
    assert site.acuity({**notice, "action": "canceled"}).json()["stored"] == 1
    assert [e["type"] for e in site.events()] == ["booked", "rescheduled", "cancelled_booking"]
    assert site.next_of("ben@example.com") is None


@pytest.mark.database_independent
def test_acuity_api_failure_stores_nothing_and_the_retry_stores_it(site: Site, acuity: AcuityStub) -> None:
    acuity.appointments["502"] = _acuity_appointment(502)
    notice = {"action": "scheduled", "id": "502", "appointmentTypeID": "7001"}
    acuity.status = 500
    assert site.acuity(notice).status_code == 503
    assert site.events() == []
    acuity.status = 200
    assert site.acuity(notice).json()["stored"] == 1
    missing = site.acuity({"action": "scheduled", "id": "999", "appointmentTypeID": "7001"})
    assert missing.status_code == 200
    assert missing.json()["rejected"] == [
        {"index": 0, "field": "id", "message": "Acuity has no appointment with this id"}
    ]
    assert site.acuity({"action": "changed", "id": "502"}).json()["ignored"] == 1
    assert len(site.events()) == 1


@pytest.mark.database_independent
def test_a_generic_system_is_mapped_and_one_bad_item_never_costs_the_rest(site: Site) -> None:
    now = datetime.now(UTC)
    ben, ana = {"email": "ben@example.com"}, {"email": "ana@example.com"}
    earlier = _stamp(now - timedelta(minutes=3))
    items = [
        {"event_id": "e1", "status": "Booked", "appointment_id": "A1", "service": "Peel",
         "changed_at": earlier, "start": _stamp(SOON), "client": ben},
        {"event_id": "e2", "status": "Rebooked?", "appointment_id": "A2", "service": "Peel",
         "changed_at": _stamp(now), "start": _stamp(SOON), "client": ana},
        {"event_id": "e3", "status": "Booked", "appointment_id": "A3", "service": "Peel",
         "changed_at": _stamp(now), "start": "next tuesday", "client": ana},
    ]  # fmt: skip
    assert site.generic(items, secret="wrong").status_code == 401
    assert site.events() == []
    response = site.generic(items)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stored"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "status"), (2, "start")]
    assert site.next_of("ben@example.com") == (SOON, "chemical_peel")
    arrived = {**items[0], "event_id": "e4", "status": "Arrived", "changed_at": _stamp(now)}
    assert site.generic([arrived]).json()["stored"] == 1
    assert [e["type"] for e in site.events()] == ["booked", "attended"]
    assert site.next_of("ben@example.com") is None  # the appointment happened: nothing ahead any more
    assert site.generic([arrived]).json()["duplicates"] == 1


def test_a_late_older_change_never_undoes_a_newer_one(site: Site) -> None:
    now = datetime.now(UTC)
    base = {"appointment_id": "A7", "service": "Peel", "start": _stamp(SOON), "client": {"email": "ben@example.com"}}
    cancelled = {**base, "event_id": "c7", "status": "Cancelled", "changed_at": _stamp(now)}
    booked = {**base, "event_id": "b7", "status": "Booked", "changed_at": _stamp(now - timedelta(hours=1))}
    assert site.generic([cancelled]).json()["stored"] == 1
    assert site.generic([booked]).json()["stored"] == 1  # arrives late: stored, but the appointment stays cancelled
    assert site.next_of("ben@example.com") is None


@pytest.mark.database_independent
def test_a_booking_hook_that_is_not_switched_on_is_404_and_erasure_removes_appointments(site: Site) -> None:
    assert site.post("mindbody", b"{}", {}).status_code == 404
    site.calendly(calendly_body("invitee.created", "INV1"))
    with site.engine.begin() as conn:
        erase(conn, "ana@example.com")
    with site.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(appointments)).scalar() == 0
    assert site.calendly(calendly_body("invitee.created", "INV2")).json()["dropped"] == 1
    assert site.events() == []


def test_a_hook_that_is_on_without_its_secret_stops_the_app_naming_the_variable(
    workspace_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CALENDLY_WEBHOOK_SIGNING_KEY", raising=False)
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    config = workspace_dir / "needlecast.toml"
    config.write_text(config.read_text() + '\n[bookings]\nproviders = ["calendly"]\n')
    workspace = open_workspace(workspace_dir)
    engine = open_store(workspace.database_url)
    try:
        with pytest.raises(ConfigurationError, match="CALENDLY_WEBHOOK_SIGNING_KEY is not set"):
            create_app(workspace, engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('providers = ["calendly", "mindbody"]', "providers names 'mindbody'"),
        (
            'providers = ["acuity"]\nacuity_user_id = "4242"\nacuity_base_url = "http://acuity.example.com"',
            "acuity_base_url",
        ),
        ('providers = ["acuity"]', "acuity_user_id"),
        ('providers = ["generic"]\n[bookings.generic]\nid = "id"', "generic.email is needed"),
        ('providers = ["generic"]\n[bookings.generic.kinds]\nBooked = "reserved"', "generic.kinds.Booked"),
        ('calendly_signing_key_env = "my key"', "calendly_signing_key_env must name an environment variable"),
        ('calendly_tolerance_seconds = "soon"', "calendly_tolerance_seconds must be a whole number"),
        ("signing_key = 'x'", "has an unknown key 'signing_key'"),
        ('[bookings.treatments]\n"7001" = "Micro Needling"', "treatments.7001"),
    ],
)
def test_a_bad_booking_setting_is_a_configuration_error_naming_the_field(
    workspace_dir: Path, extra: str, named: str
) -> None:
    config = workspace_dir / "needlecast.toml"
    config.write_text(config.read_text() + f"\n[bookings]\n{extra}\n")
    with pytest.raises(ConfigurationError, match="\\[bookings\\] " + named.replace("[", "\\[").replace(".", "\\.")):
        load_settings(workspace_dir)


@pytest.mark.database_independent
def test_a_signed_body_in_the_wrong_format_is_400_and_an_oversized_one_413(site: Site) -> None:
    assert site.calendly(b"not json").status_code == 400
    assert site.calendly(b'{"event": "invitee.created"}').status_code == 400
    assert site.acuity({"action": "scheduled", "id": "../../admin"}).status_code == 400
    huge = b"[" + b" " * 1_100_000 + b"]"
    assert site.post("generic", huge, {"X-Signature": "0" * 64}).status_code == 413
    assert site.events() == []


def test_concurrent_copies_of_one_delivery_store_it_once(site: Site) -> None:
    item = {
        "event_id": "same",
        "status": "Booked",
        "appointment_id": "A9",
        "service": "Peel",
        "changed_at": _stamp(datetime.now(UTC)),
        "start": _stamp(SOON),
        "client": {"email": "ana@example.com"},
    }
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: site.generic([item]), range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert sum(a.json()["stored"] for a in answers) == 1
    assert sum(a.json()["duplicates"] for a in answers) == 5
    assert len(site.events()) == 1
    assert site.next_of("ana@example.com") == (SOON, "chemical_peel")
