"""Contact events from the clinic's systems: stored once per id with the address hashed, imported from a
booking system's export with rejects that reconcile, and driving sequences (exits and enrolments), on SQLite
and PostgreSQL."""

from __future__ import annotations

import csv
import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from needlecast.audience.events import EventProblem, store_events, validate_event
from needlecast.audience.suppression import erase
from needlecast.campaign.definition.loader import load_campaign
from needlecast.config import Workspace
from needlecast.errors import CampaignFileError
from needlecast.store.schema import audit_log, contact_events, contacts, enrolments
from tests.cli_runner import run
from tests.test_runner import NOW, SIGNOFF, Clock, _campaign, _runner, _store, ws

__all__ = ["ws"]  # the fixture, shared with test_runner (the sink is in conftest)

DRIP = """
id: drip
kind: sequence
segment: all-leads
time_zone: Europe/London
steps:
  - {{id: welcome, template: emails/welcome, delay: 0d}}
  - {{id: follow-up, template: emails/deep_dive, delay: 3d}}
enrol: {enrol}
exits: [{{event: booked}}]
{signoff}
"""


def _event(n: int, email: str, kind: str, at: object, **more: object) -> dict[str, object]:
    return {"id": f"bk-{n}", "email": email, "type": kind, "occurred_at": at, **more}


def _store_raw(engine: Engine, raw: list[dict[str, object]], source: str = "test") -> tuple[int, int]:
    good = [e for e in (validate_event(r, i) for i, r in enumerate(raw)) if not isinstance(e, EventProblem)]
    assert len(good) == len(raw)
    with engine.begin() as conn:
        stored = store_events(conn, good, source, NOW)  # type: ignore[arg-type]
    return stored.stored, stored.duplicates


def _exit_reasons(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(contacts.c.email, enrolments.c.exit_reason)
            .join(contacts, contacts.c.id == enrolments.c.contact_id)
            .where(enrolments.c.exit_reason != "")
        ).all()
    return {email: reason for email, reason in rows}


def test_each_event_is_stored_once_per_id_with_the_address_only_hashed(ws: Workspace) -> None:
    engine = _store(ws)
    batch = [
        _event(1, "Lead1@Example.com", "booked", "2026-11-24T10:00:00Z", value=180, currency="gbp"),
        _event(2, "nobody.yet@example.org", "enquired", "2026-11-24T10:05:00+01:00"),
        _event(1, "lead1@example.com", "booked", "2026-11-24T10:00:00Z"),  # the same id again in the batch
    ]
    assert _store_raw(engine, batch) == (2, 1)
    assert _store_raw(engine, batch[:2]) == (0, 2)  # a retried batch stores nothing twice
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(contact_events).order_by(contact_events.c.id))]
        lead = conn.execute(select(contacts.c.id).where(contacts.c.email == "lead1@example.com")).scalar()
    assert [r["source_id"] for r in rows] == ["bk-1", "bk-2"]
    assert rows[0]["contact_id"] == lead and rows[1]["contact_id"] is None  # not a contact (yet)
    assert str(rows[0]["value"]) == "180.00" and rows[0]["currency"] == "GBP"
    assert rows[1]["occurred_at"].replace(tzinfo=None) == NOW.replace(hour=9, minute=5, tzinfo=None)
    assert not any("example" in str(v) for r in rows for v in r.values())  # no address kept in the clear


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"email": "a@example.com", "type": "booked", "occurred_at": "2026-11-24T10:00:00Z"}, "id"),
        ({"id": "x", "email": "not an address", "type": "booked", "occurred_at": "2026-11-24T10:00:00Z"}, "email"),
        ({"id": "x", "email": "a@example.com", "type": "Booked!", "occurred_at": "2026-11-24T10:00:00Z"}, "type"),
        ({"id": "x", "email": "a@example.com", "type": "booked", "occurred_at": "2026-11-24 10:00"}, "occurred_at"),
        ({"id": "x", "email": "a@example.com", "type": "booked", "occurred_at": "yesterday"}, "occurred_at"),
        (
            {"id": "x", "email": "a@example.com", "type": "booked", "occurred_at": "2026-11-24T10:00Z", "value": -1},
            "value",
        ),
        (
            {"id": "x", "email": "a@example.com", "type": "booked", "occurred_at": "2026-11-24T10:00Z", "value": 9},
            "currency",
        ),
        ("not an object", "(item)"),
    ],
)
def test_a_bad_event_names_its_field(raw: object, field: str) -> None:
    problem = validate_event(raw, 7)
    assert isinstance(problem, EventProblem) and problem.field == field and problem.index == 7
    assert problem.message


def test_a_booking_event_after_enrolment_ends_the_sequence_and_one_before_sign_up_does_not(
    ws: Workspace, sink: object
) -> None:
    _campaign(ws, DRIP.format(enrol='{joined_after: "2026-01-01"}', signoff=SIGNOFF))
    engine = _store(ws)
    # lead3 booked long before they signed up (2026-11-04): an old booking is not a reason to stop nurturing.
    _store_raw(engine, [_event(1, "lead3@example.com", "booked", "2025-06-01T10:00:00Z")])
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)  # type: ignore[arg-type]
    report = next(r for r in runner.sweep() if r.campaign_id == "drip")
    assert report.enrolled == 40 and report.exited == 0
    _store_raw(
        engine,
        [
            _event(2, "lead1@example.com", "booked", (NOW + timedelta(days=1)).isoformat()),
            _event(3, "lead2@example.com", "attended", (NOW + timedelta(days=1)).isoformat()),  # not an exit
            _event(4, "stranger@example.org", "booked", (NOW + timedelta(days=1)).isoformat()),  # not a contact
        ],
    )
    clock.now = NOW + timedelta(days=3, minutes=1)
    report = next(r for r in runner.sweep() if r.campaign_id == "drip")
    assert report.exited == 1 and report.sent == 39
    assert _exit_reasons(engine) == {"lead1@example.com": "event booked"}


def test_a_lead_who_booked_before_the_sequence_reached_them_is_never_enrolled_into_emails(
    ws: Workspace, sink: object
) -> None:
    _campaign(ws, DRIP.format(enrol='{joined_after: "2026-01-01"}', signoff=SIGNOFF))
    engine = _store(ws)
    _store_raw(engine, [_event(1, "lead5@example.com", "booked", "2026-11-20T10:00:00Z")])  # after sign-up
    report = next(r for r in _runner(ws, engine, sink, Clock(NOW)).sweep() if r.campaign_id == "drip")  # type: ignore[arg-type]
    assert report.sent == 39 and report.exited == 1
    assert _exit_reasons(engine) == {"lead5@example.com": "event booked"}


def test_a_sequence_enrols_on_an_event_reported_since_it_started_and_not_before(ws: Workspace, sink: object) -> None:
    _campaign(ws, DRIP.format(enrol="{event: enquired}", signoff=SIGNOFF))
    engine = _store(ws)
    _store_raw(engine, [_event(1, "lead1@example.com", "enquired", "2026-10-01T10:00:00Z")])  # before the start
    clock = Clock(NOW)
    runner = _runner(ws, engine, sink, clock)  # type: ignore[arg-type]
    first = next(r for r in runner.sweep() if r.campaign_id == "drip")
    assert first.enrolled == 0 and first.sent == 0
    clock.now = NOW + timedelta(hours=2)
    _store_raw(
        engine,
        [
            _event(2, "lead2@example.com", "enquired", (NOW + timedelta(hours=1)).isoformat()),
            _event(3, "lead3@example.com", "enquired", (NOW + timedelta(hours=1)).isoformat()),
            _event(4, "lead4@example.com", "booked", (NOW + timedelta(hours=1)).isoformat()),
        ],
    )
    second = next(r for r in runner.sweep() if r.campaign_id == "drip")
    assert second.enrolled == 2 and second.sent == 2
    with engine.connect() as conn:
        enrolled = set(
            conn.execute(select(contacts.c.email).join(enrolments, enrolments.c.contact_id == contacts.c.id)).scalars()
        )
    assert enrolled == {"lead2@example.com", "lead3@example.com"}
    sent_to = sorted(p["to"][0]["email"] for a in sink.accepted for p in a.payload["personalizations"])  # type: ignore[attr-defined]
    assert sent_to == ["lead2@example.com", "lead3@example.com"]


@pytest.mark.parametrize(
    ("exits", "field"),
    [
        ("[{event: Booked}]", "exits[0].event"),
        ("[{event: booked, field: booked, equals: yes}]", "exits[0]"),
        ("[{equals: yes}]", "exits[0]"),
        ("[{evnt: booked}]", "exits[0].evnt"),
    ],
)
def test_a_bad_event_rule_names_the_file_the_field_and_the_fix(ws: Workspace, exits: str, field: str) -> None:
    path = ws.campaigns_dir / "bad.yaml"
    path.write_text(DRIP.format(enrol="{event: enquired}", signoff=SIGNOFF).replace("[{event: booked}]", exits))
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(path, ("acne", "ageing", "pigmentation", "general"))
    assert caught.value.field == field and "bad.yaml" in str(caught.value)


def test_events_import_reports_every_bad_row_with_its_line_and_the_counts_reconcile(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _store(ws)
    export = ws.root / "bookings.csv"
    export.write_text(
        "Booking ID,Client Email,Event,Booked At,Amount,Currency\n"
        "B-1,lead1@example.com,booked,2026-11-24T10:00:00Z,180,GBP\n"
        "B-2,lead2@example.com,booked,2026-11-24 10:00,180,GBP\n"  # line 3: no time zone
        "B-3,not-an-address,booked,2026-11-24T10:00:00Z,,\n"  # line 4
        "B-1,lead1@example.com,booked,2026-11-24T10:00:00Z,180,GBP\n"  # a duplicate of line 2
        "B-4,lead4@example.com,attended,2026-11-25T10:00:00Z,,\n"
    )
    env = {"NEEDLECAST_DATABASE_URL": ws.database_url}
    result = run(monkeypatch, ws.root, "events", "import", str(export), "--format", "json", **env)
    assert result.code == 0, result.stderr
    counts = json.loads(result.stdout)
    assert {k: counts[k] for k in ("read", "stored", "duplicates", "rejected")} == {
        "read": 5,
        "stored": 2,
        "duplicates": 1,
        "rejected": 2,
    }
    with open(counts["rejects_file"], newline="", encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejects] == [("3", "occurred_at"), ("4", "email")]
    again = run(monkeypatch, ws.root, "events", "import", str(export), "--format", "json", **env)
    assert json.loads(again.stdout)["stored"] == 0  # a re-import stores nothing twice
    with engine.connect() as conn:
        assert conn.execute(
            select(contact_events.c.source_id).order_by(contact_events.c.source_id)
        ).scalars().all() == [
            "B-1",
            "B-4",
        ]
        assert conn.execute(select(audit_log.c.action).where(audit_log.c.action == "events.imported")).first()


def test_a_file_without_the_needed_columns_is_refused_naming_them(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(ws)
    export = ws.root / "bookings.csv"
    export.write_text("Client,When\nlead1@example.com,2026-11-24\n")
    result = run(monkeypatch, ws.root, "events", "import", str(export), NEEDLECAST_DATABASE_URL=ws.database_url)
    assert result.code != 0 and "Traceback" not in result.stderr
    assert "no column for id, email, type." in result.stderr and "bookings.csv" in result.stderr


def test_an_import_drops_and_counts_the_events_of_an_erased_address_and_never_stores_them(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _store(ws)
    with engine.begin() as conn:
        erase(conn, "lead1@example.com")
    export = ws.root / "bookings.csv"
    export.write_text(
        "Booking ID,Client Email,Event,Booked At\n"
        "B-1,Lead1@Example.com,booked,2026-11-24T10:00:00Z\n"
        "B-2,lead2@example.com,booked,2026-11-24T10:00:00Z\n"
    )
    env = {"NEEDLECAST_DATABASE_URL": ws.database_url}
    result = run(monkeypatch, ws.root, "events", "import", str(export), "--format", "json", **env)
    assert result.code == 0, result.stderr
    counts = json.loads(result.stdout)
    assert {k: counts[k] for k in ("read", "stored", "duplicates", "dropped", "rejected")} == {
        "read": 2,
        "stored": 1,
        "duplicates": 0,
        "dropped": 1,
        "rejected": 0,
    }
    with engine.connect() as conn:
        assert conn.execute(select(contact_events.c.source_id)).scalars().all() == ["B-2"]


def test_erasing_a_person_deletes_their_events_too(ws: Workspace) -> None:
    engine = _store(ws)
    _store_raw(engine, [_event(1, "lead1@example.com", "booked", "2026-11-24T10:00:00Z")])
    with engine.begin() as conn:
        erase(conn, "lead1@example.com")
    with engine.connect() as conn:
        assert conn.execute(select(contact_events)).first() is None
