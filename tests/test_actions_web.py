"""The actions the API and the console call, each tested once through the action: a permitted actor's change
is done and writes exactly one audit entry (its actor, action, target and counts, no address); an actor without
the permission gets `PermissionDenied` and nothing changes, audit log included. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from needlecast.accounts.roles import Actor
from needlecast.actions import contacts as contacts_actions
from needlecast.actions import templates as templates_actions
from needlecast.actions.events import record_events
from needlecast.config import Workspace
from needlecast.delivery.outbox import read_outbox
from needlecast.errors import InvalidRequest, PermissionDenied
from needlecast.store.schema import audit_log, consent_events, contact_events, contacts

CRM = Actor("api_key", "crm", id=7, scopes=frozenset({"contacts:write", "events:write"}))
READER = Actor("api_key", "reader", id=8, scopes=frozenset({"contacts:read"}))
MARKETER = Actor("user", "marketer@clinic.example", id=3, role="marketer")
ANALYST = Actor("user", "analyst@clinic.example", id=4, role="analyst")
ADDRESS = "new.lead@example.org"
GRANTED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _audit(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(audit_log).order_by(audit_log.c.id)).mappings()]


def _lead(consent_at: datetime | None = GRANTED) -> contacts_actions.ContactUpdate:
    consent = contacts_actions.ConsentChange(True, "booking form", "v3", consent_at)
    return contacts_actions.ContactUpdate(ADDRESS, first_name="Quinn", tags=("crm",), marketing_consent=consent)


def test_a_contact_upserted_by_a_permitted_key_is_stored_with_its_consent_evidence_and_audited_by_id(
    engine: Engine, workspace: Workspace
) -> None:
    done = contacts_actions.upsert(engine, workspace, CRM, _lead())
    again = contacts_actions.upsert(engine, workspace, CRM, _lead())
    assert done.created and not again.created and again.contact_id == done.contact_id
    with engine.connect() as conn:
        consent = conn.execute(select(consent_events).where(consent_events.c.contact_id == done.contact_id)).first()
    assert consent is not None and consent.source == "booking form"
    first, second = _audit(engine)
    assert (first["actor_kind"], first["actor"], first["action"]) == ("api_key", "crm", "contact.upserted")
    assert first["target"] == f"contact:#{done.contact_id}"
    assert json.loads(first["detail"]) == {"created": True} and json.loads(second["detail"]) == {"created": False}
    assert ADDRESS not in json.dumps([first, second], default=str)  # audited by id, never by address


@pytest.mark.database_independent  # refused before any database work
def test_a_key_without_contacts_write_upserts_nothing_and_audits_nothing(engine: Engine, workspace: Workspace) -> None:
    with pytest.raises(PermissionDenied, match=r"contacts\.write"):
        contacts_actions.upsert(engine, workspace, READER, _lead())
    assert _count(engine, contacts) == 0 and _count(engine, consent_events) == 0 and _audit(engine) == []


def test_consent_evidence_without_a_time_zone_is_refused_naming_the_field_before_anything_changes(
    engine: Engine, workspace: Workspace
) -> None:
    with pytest.raises(InvalidRequest, match=r"^at: "):
        contacts_actions.upsert(engine, workspace, CRM, _lead(consent_at=datetime(2026, 11, 30, 9, 0)))
    assert _count(engine, contacts) == 0 and _audit(engine) == []


EVENTS = [
    {"id": "b-1", "email": ADDRESS, "type": "booking", "occurred_at": "2026-12-01T09:30:00Z"},
    {"id": "b-2", "email": ADDRESS, "type": "booking", "occurred_at": "2026-12-01T09:30:00"},  # no zone
    {"id": "b-1", "email": ADDRESS, "type": "booking", "occurred_at": "2026-12-01T09:30:00Z"},  # a retry
]


def test_events_recorded_by_a_permitted_key_are_stored_once_and_the_batch_is_audited_with_its_counts(
    engine: Engine,
) -> None:
    done = record_events(engine, CRM, EVENTS, source="api:crm")
    assert (done.stored, done.duplicates, done.dropped) == (1, 1, 0)
    assert [(p.index, p.field) for p in done.rejected] == [(1, "occurred_at")]
    assert _count(engine, contact_events) == 1
    [entry] = _audit(engine)
    assert (entry["actor_kind"], entry["actor"], entry["action"], entry["target"]) == (
        "api_key",
        "crm",
        "events.stored",
        "events",
    )
    assert json.loads(entry["detail"]) == {"stored": 1, "duplicates": 1, "dropped": 0, "rejected": 1}


@pytest.mark.database_independent  # refused before any database work
def test_a_key_without_events_write_records_no_event_and_audits_nothing(engine: Engine) -> None:
    with pytest.raises(PermissionDenied, match=r"events\.write"):
        record_events(engine, READER, EVENTS, source="api:reader")
    assert _count(engine, contact_events) == 0 and _audit(engine) == []


SEEDS = ["seed.one@clinic.example", "seed.two@clinic.example"]


@pytest.fixture()
def seeded(workspace: Workspace) -> Workspace:
    """The workspace with two seed addresses for test sends (read from needlecast.toml when asked)."""
    config = workspace.root / "needlecast.toml"
    config.write_text(config.read_text() + f"\n[console]\ntest_recipients = {json.dumps(SEEDS)}\n")
    return workspace


def _sent(outbox: Path) -> list[dict[str, Any]]:
    return [e["request"] for e in read_outbox(outbox)] if outbox.exists() else []


def test_a_test_send_by_a_marketer_goes_to_the_seeds_through_the_configured_backend_and_is_audited(
    engine: Engine, seeded: Workspace
) -> None:
    sent = templates_actions.test_send(seeded, engine, MARKETER, None, "spring-guide", "guide")
    requests = _sent(seeded.outbox_dir)
    assert sent.requests == len(requests) > 0 and set(sent.recipients) == set(SEEDS)
    assert {p["to"][0]["email"] for r in requests for p in r["personalizations"]} == set(SEEDS)
    [entry] = _audit(engine)
    assert (entry["actor_kind"], entry["actor"], entry["action"], entry["target"]) == (
        "user",
        "marketer@clinic.example",
        "campaign.test_sent",
        "campaign:spring-guide",
    )
    assert json.loads(entry["detail"]) == {"step": "guide", "requests": len(requests), "seeds": 2, "failed": 0}


@pytest.mark.database_independent  # refused before any database work
def test_an_analyst_cannot_send_a_test_and_nothing_is_sent_or_audited(engine: Engine, seeded: Workspace) -> None:
    with pytest.raises(PermissionDenied, match=r"campaigns\.test_send"):
        templates_actions.test_send(seeded, engine, ANALYST, None, "spring-guide", "guide")
    assert _sent(seeded.outbox_dir) == [] and _audit(engine) == []
