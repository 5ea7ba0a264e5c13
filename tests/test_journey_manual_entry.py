"""People put into a journey by hand (issue 30, item 2: "the API and the console, for one person or a
selection"): `POST /api/v1/journeys/{id}/entries` with contact ids, and the contact list's bulk action "Put into
the journey", both through `actions.journeys.enter` (its re-entry rule, its permission and its audit entry).
Over real HTTP on loopback, on SQLite (the action's SQL is the journey engine's, tested on both databases)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from needlecast.accounts.audit import entries
from needlecast.store.schema import contacts, journey_positions
from tests.console_site import ConsoleSite, csrf_of, sqlite_site

pytestmark = pytest.mark.database_independent

WELCOME = """id: concierge
name: Concierge welcome
kind: journey
segment: all-leads
time_zone: Europe/London
entry: {manual: true}
steps:
  - {id: hello, template: emails/welcome}
  - {id: done, kind: exit}
signoff: {reviewer: QA, date: 2026-11-24, note: test content}
"""


@pytest.fixture()
def web(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    (workspace_dir / "campaigns" / "concierge.yaml").write_text(WELCOME)
    with sqlite_site(workspace_dir, tmp_path, monkeypatch) as running:
        yield running


def _ids(web: ConsoleSite, n: int) -> list[int]:
    with web.engine.connect() as conn:
        return list(conn.execute(select(contacts.c.id).order_by(contacts.c.id).limit(n)).scalars())


def _in_journey(web: ConsoleSite) -> set[int]:
    with web.engine.connect() as conn:
        query = select(journey_positions.c.contact_id).where(journey_positions.c.campaign_id == "concierge")
        return set(conn.execute(query).scalars())


def test_the_api_puts_people_into_a_journey_once_and_names_the_unknown(web: ConsoleSite) -> None:
    first, second = _ids(web, 2)
    api = web.api(web.key("campaigns:write"))
    answer = api.post("/journeys/concierge/entries", json={"contact_ids": [first, 99_999_999]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"entered": [first], "not_entered": [], "unknown": [99_999_999]}
    again = api.post("/journeys/concierge/entries", json={"contact_ids": [first, second]})
    assert again.json() == {"entered": [second], "not_entered": [first], "unknown": []}  # re-entry: never
    assert _in_journey(web) == {first, second}
    with web.engine.connect() as conn:
        audited = entries(conn, action="journey.entered")
    assert [(e["actor_kind"], e["detail"]["entered"]) for e in audited] == [("api_key", 1), ("api_key", 1)]
    # Refusals name the problem, and change nothing.
    broadcast = api.post("/journeys/spring-guide/entries", json={"contact_ids": [first]})
    assert broadcast.status_code == 404 and "journey" in broadcast.text  # no journey has that id
    assert api.post("/journeys/nowhere/entries", json={"contact_ids": [first]}).status_code == 404
    empty = api.post("/journeys/concierge/entries", json={"contact_ids": []})
    assert empty.status_code == 422 and "contact_ids" in empty.text
    reader = web.api(web.key("campaigns:read"))
    assert reader.post("/journeys/concierge/entries", json={"contact_ids": [first]}).status_code == 403
    assert _in_journey(web) == {first, second}


def test_a_marketer_puts_the_ticked_contacts_into_a_journey_after_confirming_the_count(web: ConsoleSite) -> None:
    chosen = _ids(web, 3)
    marketer = web.login("marketer")
    listing = marketer.get("/console/contacts").text
    assert 'id="bulk-journey"' in listing and '<option value="concierge">Concierge welcome</option>' in listing
    token = csrf_of(listing)
    form = {"csrf": token, "scope": "chosen", "journey": "concierge"}
    asked = marketer.post("/console/contacts/bulk/journey", data={**form, "ids": [str(i) for i in chosen]})
    assert asked.status_code == 200
    assert "Put 3 contacts into the journey “Concierge welcome”?" in asked.text
    assert _in_journey(web) == set()  # asking changes nothing
    expected = re.search(r'name="expected" value="(\d+)"', asked.text)
    assert expected and expected.group(1) == "3"
    done = marketer.post(
        "/console/contacts/bulk/journey", data={**form, "ids": [str(i) for i in chosen], "expected": "3"}
    )
    assert done.status_code == 200 and "Put 3 contacts into the journey “Concierge welcome”" in done.text
    assert _in_journey(web) == set(chosen)
    again = marketer.post(
        "/console/contacts/bulk/journey", data={**form, "ids": [str(i) for i in chosen], "expected": "3"}
    )
    assert "Put 0 contacts" in again.text and "3 contacts were not put in" in again.text
    with web.engine.connect() as conn:
        audited = entries(conn, action="journey.entered")
    assert [e["detail"]["entered"] for e in audited] == [0, 3]  # newest first


def test_an_analyst_has_no_journey_action_and_the_server_refuses_it(web: ConsoleSite) -> None:
    analyst = web.login("analyst")
    listing = analyst.get("/console/contacts").text
    assert 'id="bulk-journey"' not in listing
    refused = analyst.post(
        "/console/contacts/bulk/journey",
        data={"csrf": csrf_of(listing), "scope": "all", "journey": "concierge", "expected": "1"},
    )
    assert refused.status_code == 403
    assert _in_journey(web) == set()


def test_a_journey_that_is_not_offered_is_refused_in_words(web: ConsoleSite) -> None:
    marketer = web.login("marketer")
    token = csrf_of(marketer.get("/console/contacts").text)
    answer = marketer.post(
        "/console/contacts/bulk/journey", data={"csrf": token, "scope": "all", "journey": "spring-guide"}
    )
    assert answer.status_code == 200 and "Choose the journey to put them into." in answer.text
    assert _in_journey(web) == set()
