"""The REST API over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL: keys and scopes, the rate limit,
every resource, one error shape, idempotent retries, and the whole surface fuzzed against its own OpenAPI
document with Schemathesis."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select, update

from needlecast.accounts.roles import SCOPE_ACTIONS, SCOPES, cli_actor
from needlecast.actions import campaigns as campaigns_actions
from needlecast.actions.keys import revoke_key
from needlecast.store.schema import (
    api_keys,
    audit_log,
    consent_events,
    contact_events,
    contacts,
    idempotency_keys,
)
from tests.console_site import ConsoleSite, site

# What an API answer must never say: its notes are for people (an app's screen), not for the command line.
COMMAND_LINE = [
    (re.compile(r"(?<![\w-])--[a-z][a-z-]+"), "a command-line option"),
    (re.compile(r"needlecast [a-z]"), "a command"),
]


def _command_line_in(body: str) -> list[str]:
    return [f"{what}: {m.group(0)!r}" for pattern, what in COMMAND_LINE for m in pattern.finditer(body)]


@pytest.fixture()
def api(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    """The site; every answer of every API client a test makes is read, and when the test ends none of them
    may speak the command line (flags, commands): each test's flow doubles as that check."""
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    said: list[str] = []

    def read(response: httpx.Response) -> None:
        response.read()
        said.extend(f"{response.request.url.path}: {found}" for found in _command_line_in(response.text))

    with site(workspace_dir, store_url) as running:
        make_client = running.api

        def watched(key: str) -> httpx.Client:
            client = make_client(key)
            client.event_hooks["response"].append(read)
            return client

        monkeypatch.setattr(running, "api", watched)
        yield running
    assert said == [], "API answers speak the command line:\n" + "\n".join(said)


def test_an_api_answer_that_says_a_flag_or_a_command_is_found() -> None:
    assert _command_line_in('{"notes": ["plan further ahead with --days 86"]}') == ["a command-line option: '--days'"]
    assert _command_line_in('{"note": "run needlecast schedule sync"}') == ["a command: 'needlecast s'"]
    assert _command_line_in('{"note": "its first send is in 85 days", "id": "spring--guide"}') == []


def _error(response: httpx.Response, status: int) -> dict[str, str | None]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def _audited(api: ConsoleSite, action: str) -> int:
    with api.engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(audit_log.c.action == action)).scalar_one())


# (method, path, the action it needs, a body): one of every endpoint
ENDPOINTS: list[tuple[str, str, str, object]] = [
    ("POST", "/contacts", "contacts.write", {"email": "new.lead@example.org"}),
    ("GET", "/contacts", "contacts.view_unmasked", None),
    ("GET", "/contacts/1", "contacts.view_unmasked", None),
    ("POST", "/contacts/lookup", "contacts.view_unmasked", {"email": "quinn.1@example.org"}),
    ("DELETE", "/contacts/1", "contacts.erase", None),
    ("POST", "/suppressions", "contacts.suppress", {"email": "someone@example.org"}),
    ("GET", "/suppressions", "contacts.view", None),
    ("GET", "/segments", "audiences.view", None),
    ("GET", "/campaigns", "campaigns.view", None),
    ("GET", "/campaigns/spring-guide", "campaigns.view", None),
    ("GET", "/campaigns/spring-guide/plan", "campaigns.view", None),
    ("POST", "/campaigns/spring-guide/pause", "campaigns.schedule", None),
    ("POST", "/campaigns/spring-guide/resume", "campaigns.schedule", None),
    ("POST", "/campaigns/spring-guide/cancel", "campaigns.schedule", None),
    (
        "POST",
        "/events",
        "events.write",
        {"events": [{"id": "b1", "email": "a@example.org", "type": "booked", "occurred_at": "2026-12-01T10:00Z"}]},
    ),
    ("GET", "/reports/spring-guide", "reports.view", None),
]


@pytest.mark.database_independent
def test_the_openapi_document_is_3_1_and_describes_every_endpoint_and_the_key(api: ConsoleSite) -> None:
    document = httpx.get(f"{api.url}/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    listed = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    for method, path, _scope, _body in ENDPOINTS:
        templated = path.replace("/1", "/{contact_id}").replace("spring-guide", "{campaign_id}")
        assert (method, templated) in listed, (method, templated)
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `needlecast apikey create`",
    }
    assert document["components"]["schemas"]["ErrorOut"]["properties"]["error"]


@pytest.mark.database_independent
def test_a_missing_or_wrong_or_revoked_key_is_401_and_a_missing_scope_403(api: ConsoleSite) -> None:
    anonymous = httpx.Client(base_url=f"{api.url}/api/v1")
    for method, path, _scope, body in ENDPOINTS:
        response = anonymous.request(method, path, json=body)
        assert _error(response, 401)["code"] == "unauthorized", (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
    assert _error(api.api("nc_not-a-key").get("/campaigns"), 401)["code"] == "unauthorized"
    key = api.key("campaigns:read")
    with api.engine.connect() as conn:
        newest = int(conn.execute(select(func.max(api_keys.c.id))).scalar_one())
    revoke_key(api.engine, cli_actor(), newest)
    assert _error(api.api(key).get("/campaigns"), 401)["code"] == "unauthorized"
    for method, path, action, body in ENDPOINTS:
        lacking = [scope for scope in SCOPES if action not in SCOPE_ACTIONS[scope]]  # every other scope
        error = _error(api.api(api.key(*lacking)).request(method, path, json=body), 403)
        assert error["code"] == "forbidden" and action in str(error["message"]), (method, path, error)


def test_every_key_is_rate_limited_on_its_own_with_retry_after(
    workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'limited.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    with site(workspace_dir, url, settings="\n[api]\nrequests_per_minute = 5\n", import_sample=False) as api:
        busy, quiet = api.api(api.key("campaigns:read")), api.api(api.key("campaigns:read"))
        assert [busy.get("/campaigns").status_code for _ in range(5)] == [200] * 5
        refused = busy.get("/campaigns")
        assert _error(refused, 429)["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert quiet.get("/campaigns").status_code == 200


@pytest.mark.database_independent
def test_contacts_are_upserted_with_consent_evidence_read_listed_by_cursor_and_erased(api: ConsoleSite) -> None:
    client = api.api(api.key("contacts:read", "contacts:write"))
    body = {
        "email": "New.Lead@Example.org",
        "first_name": "Nia",
        "concerns": ["acne"],
        "time_zone": "Europe/London",
        "lists": ["website"],
        "marketing_consent": {"granted": True, "source": "form:website", "wording_version": "marketing-v1"},
        "concern_consent": {"granted": True, "source": "form:website", "wording_version": "concern-v1"},
    }
    created = client.post("/contacts", json=body)
    assert created.status_code == 200, created.text
    contact = created.json()
    assert (contact["email"], contact["first_name"], contact["concerns"]) == ("new.lead@example.org", "Nia", ["acne"])
    assert contact["marketing_consent"] and contact["concern_consent"] and contact["lists"] == ["website"]
    updated = client.post("/contacts", json={"email": "new.lead@example.org", "first_name": "Nia B"}).json()
    assert updated["id"] == contact["id"] and updated["first_name"] == "Nia B" and updated["concerns"] == ["acne"]
    with api.engine.connect() as conn:
        evidence = conn.execute(
            select(consent_events.c.source, consent_events.c.wording_version).where(
                consent_events.c.contact_id == contact["id"]
            )
        ).all()
    assert sorted(evidence) == [("form:website", "concern-v1"), ("form:website", "marketing-v1")]
    assert client.get(f"/contacts/{contact['id']}").json() == updated
    assert client.post("/contacts/lookup", json={"email": "NEW.lead@example.org"}).json()["id"] == contact["id"]

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = client.get("/contacts", params={"limit": 70, **({"cursor": cursor} if cursor else {})}).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    with api.engine.connect() as conn:
        every = sorted(int(i) for i in conn.execute(select(contacts.c.id)).scalars())
    assert seen == every and pages == -(-len(every) // 70)

    erased = client.delete(f"/contacts/{contact['id']}")
    assert erased.json() == {"erased": True}
    assert _error(client.get(f"/contacts/{contact['id']}"), 404)["code"] == "not_found"
    assert _error(client.post("/contacts", json={"email": "new.lead@example.org"}), 409)["field"] == "email"
    reasons = [item["reason"] for item in client.get("/suppressions", params={"limit": 500}).json()["items"]]
    assert "erased" in reasons
    assert _audited(api, "contact.upserted") == 2


@pytest.mark.database_independent
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email"),
        ({"email": "not an address"}, "email"),
        ({"email": "a@example.org", "concerns": ["warts"]}, "concerns"),
        ({"email": "a@example.org", "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"email": "a@example.org", "favourite_colour": "teal"}, "favourite_colour"),
        (
            {"email": "a@example.org", "marketing_consent": {"granted": "perhaps", "source": "x"}},
            "marketing_consent.granted",
        ),
        (
            {"email": "a@example.org", "marketing_consent": {"granted": True, "source": "x", "at": "2026-12-01T10:00"}},
            "marketing_consent.at",
        ),
        # a NUL cannot be stored in PostgreSQL's text: refused by the schema (which says so), never a 500
        ({"email": "a@example.org", "tags": ["ok", "a\x00b"]}, "tags.1"),
        ({"email": "a@example.org", "first_name": "\x00"}, "first_name"),
        ({"email": "a@example.org", "attributes": {"plan": "gold\x00"}}, "attributes.plan"),
        ({"email": "a@example.org", "attributes": {"pl\x00an": "gold"}}, "attributes"),
        ([1, 2, 3], None),
    ],
)
def test_a_body_that_is_not_what_the_schema_says_is_422_naming_the_field(
    api: ConsoleSite, body: object, field: str | None
) -> None:
    error = _error(api.api(api.key("contacts:write")).post("/contacts", json=body), 422)
    assert error["code"] == "invalid" and error["field"] == field, error


@pytest.mark.database_independent
def test_oversized_deep_and_unreadable_bodies_are_refused_before_they_are_parsed(api: ConsoleSite) -> None:
    client = api.api(api.key())
    assert _error(client.post("/events", content=b"[" * 100 + b"]" * 100), 400)["code"] == "too_deep"
    assert _error(client.post("/events", content=b"x" * 2_000_001), 413)["code"] == "too_large"
    assert _error(client.post("/events", content=b"{not json"), 422)["code"] == "invalid"
    assert _error(client.get("/contacts", params={"cursor": "!!"}), 422)["field"] == "cursor"
    assert _error(client.get("/no-such-thing"), 404)["code"] == "not_found"
    assert _error(client.get("/campaigns/no-such-campaign"), 404)["code"] == "not_found"


def test_a_retried_write_with_the_same_idempotency_key_is_done_once_and_answered_the_same(api: ConsoleSite) -> None:
    client = api.api(api.key())
    body = {"email": "retry@example.org", "first_name": "Rae"}
    first = client.post("/contacts", json=body, headers={"Idempotency-Key": "order-77"})
    again = client.post("/contacts", json=body, headers={"Idempotency-Key": "order-77"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert _audited(api, "contact.upserted") == 1
    other = client.post("/contacts", json={**body, "first_name": "Ray"}, headers={"Idempotency-Key": "order-77"})
    assert _error(other, 422)["field"] == "Idempotency-Key"
    assert client.post("/contacts", json=body, headers={"Idempotency-Key": "order-78"}).status_code == 200
    assert _audited(api, "contact.upserted") == 2  # a new key is new work
    # A key belongs to its API key: another caller's identical retry key does its own work.
    assert (
        api.api(api.key())
        .post("/contacts", json=body, headers={"Idempotency-Key": "order-77"})
        .headers.get("idempotent-replayed")
        is None
    )


def test_a_twin_sent_while_the_first_is_being_done_is_409_and_a_dead_reservation_is_taken_over(
    api: ConsoleSite,
) -> None:
    key = api.key()
    client = api.api(key)
    body = {"email": "twin@example.org"}
    request_hash = hashlib.sha256(b"POST /api/v1/contacts\n" + json.dumps(body).encode()).hexdigest()
    actor = hashlib.sha256(f"Bearer {key}".encode()).hexdigest()
    reserved = {"actor": actor, "key": "twin-1", "request_hash": request_hash, "status": 0, "body": ""}
    with api.engine.begin() as conn:  # the first request is still being done (reserved just now)
        conn.execute(insert(idempotency_keys), {**reserved, "created_at": datetime.now(UTC)})
    twin = client.post(
        "/contacts", content=json.dumps(body), headers={"Idempotency-Key": "twin-1", "Content-Type": "application/json"}
    )
    assert _error(twin, 409)["field"] == "Idempotency-Key" and twin.headers["retry-after"]
    assert _audited(api, "contact.upserted") == 0
    with api.engine.begin() as conn:  # ... or it died unanswered an hour ago: the key is taken over
        conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.key == "twin-1")
            .values(created_at=datetime.now(UTC) - timedelta(hours=1))
        )
    taken = client.post(
        "/contacts", content=json.dumps(body), headers={"Idempotency-Key": "twin-1", "Content-Type": "application/json"}
    )
    assert taken.status_code == 200 and "idempotent-replayed" not in taken.headers
    assert _audited(api, "contact.upserted") == 1
    # A failed write frees its key: the corrected retry with the same key is done, not refused.
    bad = client.post("/contacts", json={"email": "not an address"}, headers={"Idempotency-Key": "twin-2"})
    assert bad.status_code == 422
    assert (
        client.post("/contacts", json={"email": "not an address"}, headers={"Idempotency-Key": "twin-2"}).status_code
        == 422
    )
    with api.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(idempotency_keys.c.key == "twin-2")).scalar_one() == 0


def test_events_are_stored_once_per_id_and_a_bad_one_costs_the_batch_nothing(api: ConsoleSite) -> None:
    client = api.api(api.key("events:write"))
    batch = [
        {
            "id": "bk-1",
            "email": "quinn.1@example.org",
            "type": "booked",
            "occurred_at": "2026-12-01T10:00:00Z",
            "value": 180.0,
            "currency": "GBP",
        },
        {"id": "bk-2", "email": "quinn.2@example.org", "type": "booked", "occurred_at": "tomorrow"},
        {"id": "bk-3", "email": "stranger@example.org", "type": "enquired", "occurred_at": "2026-12-01T11:00:00+01:00"},
    ]
    answer = client.post("/events", json={"events": batch}).json()
    assert answer["stored"] == 2 and answer["duplicates"] == 0
    assert [(p["index"], p["field"]) for p in answer["rejected"]] == [(1, "occurred_at")]
    assert client.post("/events", json={"events": batch}).json()["duplicates"] == 2
    with api.engine.connect() as conn:
        assert sorted(conn.execute(select(contact_events.c.source_id)).scalars()) == ["bk-1", "bk-3"]
    too_many = [{**batch[0], "id": f"x{i}"} for i in range(1001)]
    assert _error(client.post("/events", json={"events": too_many}), 422)["field"] == "events"


@pytest.mark.database_independent
def test_campaigns_are_listed_read_planned_paused_resumed_and_cancelled(api: ConsoleSite) -> None:
    campaigns_actions.schedule(api.engine, api.workspace, cli_actor(), "spring-guide")
    client = api.api(api.key("campaigns:read", "campaigns:write"))
    listed = {c["id"]: c for c in client.get("/campaigns").json()}
    assert set(listed) == {"spring-guide", "new-lead-nurture"}
    assert listed["spring-guide"]["state"] == "active" and listed["new-lead-nurture"]["kind"] == "sequence"
    plan = client.get("/campaigns/spring-guide/plan", params={"days": 3650}).json()
    assert sum(row["recipients"] for row in plan["emails"]) > 0 and set(plan["excluded"])
    assert plan["forecast"] == []  # a broadcast's plan is its emails
    # a sequence's plan is the journey engine's forecast: emails per day at each of its send nodes
    nurture = client.get("/campaigns/new-lead-nurture/plan", params={"days": 30}).json()
    assert nurture["forecast"] and sum(row["emails"] for row in nurture["forecast"]) > 0, nurture
    assert {row["node"] for row in nurture["forecast"]} <= {"welcome", "deep-dive", "consultation"}, nurture
    short = client.get("/campaigns/spring-guide/plan", params={"days": 1}).json()
    assert short["notes"] and not any(_command_line_in(note) for note in short["notes"]), short["notes"]
    assert client.post("/campaigns/spring-guide/pause").json()["state"] == "paused"
    assert client.post("/campaigns/spring-guide/resume").json()["state"] == "active"
    assert client.post("/campaigns/spring-guide/cancel").json()["state"] == "cancelled"
    with api.engine.connect() as conn:
        actors = conn.execute(
            select(audit_log.c.actor_kind, audit_log.c.actor).where(
                audit_log.c.action.in_(["campaign.paused", "campaign.resumed", "campaign.cancelled"])
            )
        ).all()
    assert [tuple(a) for a in actors] == [("api_key", "tests")] * 3


@pytest.mark.database_independent
def test_a_report_is_json_with_its_funnel_ab_test_health_and_conversions(api: ConsoleSite) -> None:
    report = api.api(api.key("reports:read")).get("/reports/spring-guide")
    assert report.status_code == 200, report.text
    body = report.json()
    assert set(body) == {"campaign", "funnel", "ab_test", "health", "conversions", "journey_funnel", "journey_paths"}
    assert body["journey_funnel"] == body["journey_paths"] == []  # a broadcast has no steps to walk
    assert json.dumps(body)  # plain JSON all the way down
