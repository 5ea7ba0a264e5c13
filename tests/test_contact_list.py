"""The console's contact list over real HTTP (issue 28 item 2): search by a part of a name or an address,
filters (concern, segment, consent, source, suppression, last activity) counted in SQL, names and addresses
masked for analysts, bulk actions confirmed with their count and audited, every new route refused to
anonymous requests and to roles without its action, and no search in a URL."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select

from needlecast.accounts.audit import entries
from needlecast.audience.contact_filter import ContactFilter
from needlecast.audience.membership import evaluate, load_frame
from needlecast.audience.segments import get_segment, load_segments
from needlecast.audience.sources import source_words
from needlecast.content.loader import load_vocabulary_for
from needlecast.readmodels.contact_list import PAGE_SIZE, contact_list
from needlecast.store.schema import consent_events, contacts, events, suppressions
from tests.console_site import ConsoleSite, csrf_of, site

pytestmark = pytest.mark.database_independent


@pytest.fixture()
def console(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, store_url) as running:
        yield running


def _people(console: ConsoleSite) -> list[dict[str, object]]:
    with console.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(contacts)).mappings()]


def _ids_on(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'name="ids" value="(\d+)"', page)]


def _count_on(page: str) -> str:
    found = re.search(r'<p id="count"[^>]*>(.*?)</p>', page, re.S)
    assert found, page[:500]
    return " ".join(found.group(1).split())


def _search(client: httpx.Client, **fields: str) -> httpx.Response:
    token = csrf_of(client.get("/console/contacts").text)
    return client.post("/console/contacts", data={"csrf": token, **fields})


def test_a_part_of_a_name_or_an_address_finds_every_contact_that_has_it_in_any_case(console: ConsoleSite) -> None:
    people = _people(console)
    marketer = console.login("marketer")
    for text in ("müll", "NGUY", "@example.net", "kaia mü"):
        wanted = {
            int(p["id"])  # type: ignore[call-overload]
            for p in people
            if text.lower() in f"{p['first_name']} {p['last_name']}".lower() or text.lower() in str(p["email"])
        }
        assert wanted, text
        page = _search(marketer, q=text)
        assert page.status_code == 200
        assert _count_on(page.text).startswith(f"{len(wanted):,} of {len(people):,} contacts match"), text
        assert set(_ids_on(page.text)) <= wanted and len(_ids_on(page.text)) == min(len(wanted), PAGE_SIZE)


def test_an_analyst_sees_names_and_addresses_masked_and_finds_only_by_a_whole_address(console: ConsoleSite) -> None:
    analyst = console.login("analyst")
    listed = analyst.get("/console/contacts").text
    assert "@example.com" not in listed and "Müller" not in listed and "K***" in listed
    assert _count_on(_search(analyst, q="müll").text).startswith("0 of")  # no guessing a name letter by letter
    found = _search(analyst, q="quinn.1@example.org")
    assert found.status_code == 303 and re.search(r"/console/contacts/\d+$", found.headers["location"])
    person = analyst.get(found.headers["location"]).text
    assert "Quinn" not in person and "Nguyen" not in person and "Q*** N***" in person


def test_filters_match_what_the_store_and_the_segment_hold(console: ConsoleSite) -> None:
    people = _people(console)
    marketer = console.login("marketer")
    acne = [p for p in people if "acne" in str(p["concerns"]).split(";")]
    assert _count_on(_search(marketer, concern="acne").text).startswith(f"{len(acne):,} of")
    refused = [p for p in people if not p["marketing_consent"] and p["status"] != "pending"]
    assert _count_on(_search(marketer, consent="none").text).startswith(f"{len(refused):,} of")
    with console.engine.connect() as conn:
        vocabulary = load_vocabulary_for(console.workspace)
        segment = get_segment(
            load_segments(console.workspace.audiences_dir / "segments.yaml", vocabulary.names), "acne"
        )
        members = evaluate(segment, load_frame(conn), datetime.now(UTC)).size
    assert members > 0
    assert _count_on(_search(marketer, segment="acne").text).startswith(f"{members:,} of")
    # A filter that names no one works from a link too (the list links to it, and so may other pages).
    assert _count_on(marketer.get("/console/contacts?concern=acne").text).startswith(f"{len(acne):,} of")
    assert "Imported from sample.csv" in marketer.get("/console/contacts").text
    with console.engine.connect() as conn:  # the source of a contact is their first consent's
        imported = conn.execute(select(func.count(func.distinct(consent_events.c.contact_id)))).scalar()
    assert _count_on(_search(marketer, source="import:sample.csv").text).startswith(f"{imported:,} of")


def test_last_activity_counts_opens_and_clicks_and_suppression_is_a_filter(console: ConsoleSite) -> None:
    people = sorted(_people(console), key=lambda p: int(p["id"]))  # type: ignore[call-overload]
    recent = datetime.now(UTC) - timedelta(days=2)
    with console.engine.begin() as conn:
        for n, person in enumerate(people[:3]):
            conn.execute(
                insert(events).values(
                    provider_event_id=f"e{n}",
                    kind="opened",
                    delivery_id=None,
                    campaign_id="spring-guide",
                    step_id="s",
                    message_id="m",
                    email_hash=person["email_hash"],
                    occurred_at=recent,
                    received_at=recent,
                    detail="",
                    raw={},
                )
            )
        conn.execute(
            insert(suppressions).values(
                email_hash=people[5]["email_hash"], reason="hard_bounce", source="test", created_at=recent
            )
        )
    marketer = console.login("marketer")
    active = _search(marketer, activity="7").text
    week_ago = datetime.now(UTC) - timedelta(days=7)
    lately = {int(p["id"]) for p in people if p["signed_up_at"] >= week_ago}  # type: ignore[call-overload,operator]
    opened = {int(p["id"]) for p in people[:3]}  # type: ignore[call-overload]
    assert _count_on(active).startswith(f"{len(opened | lately):,} of")
    assert opened <= set(_ids_on(active))
    suppressed = _search(marketer, suppressed="yes").text
    assert _ids_on(suppressed) == [int(people[5]["id"])]  # type: ignore[call-overload]
    assert "Address bounced" in suppressed


def _bulk(client: httpx.Client, action: str, **fields: object) -> httpx.Response:
    token = csrf_of(client.get("/console/contacts").text)
    return client.post(f"/console/contacts/bulk/{action}", data={"csrf": token, **fields})  # type: ignore[dict-item]


def test_tagging_every_match_asks_with_the_count_then_tags_exactly_those_and_audits_it(console: ConsoleSite) -> None:
    people = _people(console)
    acne = {int(p["id"]) for p in people if "acne" in str(p["concerns"]).split(";")}  # type: ignore[call-overload]
    marketer = console.login("marketer")
    asked = _bulk(marketer, "tag", concern="acne", scope="all", tag="spring offer")
    assert asked.status_code == 200
    assert f"Add the tag “spring offer” to {len(acne):,} contacts?" in asked.text
    assert "spring offer" not in str([p["tags"] for p in _people(console)])  # nothing happens before the yes
    # The count confirmed no longer holds: nothing is tagged, the new count is asked for.
    stale = _bulk(marketer, "tag", concern="acne", scope="all", tag="spring offer", expected=len(acne) + 1)
    assert "The selection changed" in stale.text and f"to {len(acne):,} contacts?" in stale.text
    done = _bulk(marketer, "tag", concern="acne", scope="all", tag="spring offer", expected=len(acne))
    assert f"Added the tag “spring offer” to {len(acne):,} contacts." in done.text
    tagged = {int(p["id"]) for p in _people(console) if "spring offer" in str(p["tags"]).split(";")}  # type: ignore[call-overload]
    assert tagged == acne
    with console.engine.connect() as conn:
        (entry,) = [e for e in entries(conn, 50) if e["action"] == "contacts.tagged"]
    assert entry["actor"] == "marketer@clinic.example" and entry["detail"]["selected"] == len(acne)
    again = _bulk(marketer, "tag", concern="acne", scope="all", tag="spring offer", expected=len(acne))
    assert f"to 0 contacts ({len(acne):,} had it already)" in again.text


def test_a_ticked_selection_is_suppressed_and_an_analyst_exports_it_masked(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    chosen = _ids_on(_search(marketer, q="müller").text)[:2]
    assert len(chosen) == 2
    nothing = _bulk(marketer, "suppress", scope="chosen")
    assert "Tick at least one contact first" in nothing.text
    asked = _bulk(marketer, "suppress", scope="chosen", q="müller", ids=chosen)
    assert "Suppress 2 contacts?" in asked.text
    done = _bulk(marketer, "suppress", scope="chosen", q="müller", ids=chosen, expected=2)
    assert "Suppressed 2 contacts" in done.text
    with console.engine.connect() as conn:
        hashes = {r for r in conn.execute(select(suppressions.c.email_hash)).scalars()}
        mine = set(conn.execute(select(contacts.c.email_hash).where(contacts.c.id.in_(chosen))).scalars())
    assert mine <= hashes and len(hashes) == 2
    analyst = console.login("analyst")
    exported = _bulk(analyst, "export", scope="all", suppressed="yes", expected=2)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(int(r["id"]) for r in rows) == sorted(chosen)
    assert all("***" in r["email"] and r["first_name"].endswith("***") for r in rows)
    assert {r["source"] for r in rows} == {"Imported from sample.csv"}
    with console.engine.connect() as conn:
        done_by = [(e["action"], e["actor"]) for e in entries(conn, 50) if e["action"].startswith("contacts.")]
    assert ("contacts.suppressed", "marketer@clinic.example") in done_by
    assert ("contacts.exported", "analyst@clinic.example") in done_by


NEW_ROUTES = [
    ("/console/contacts/bulk/tag", "contacts.tag"),
    ("/console/contacts/bulk/suppress", "contacts.suppress"),
    ("/console/contacts/bulk/export", "contacts.view"),
]


def test_the_bulk_routes_refuse_anonymous_requests_and_roles_without_their_action(console: ConsoleSite) -> None:
    anonymous = console.client()
    for path, _action in NEW_ROUTES:
        assert anonymous.post(path, data={"csrf": "x", "scope": "all", "tag": "t", "expected": "1"}).status_code == 403
    before = _people(console)
    for role in ("analyst", "reviewer"):
        client = console.login(role)
        token = csrf_of(client.get("/console/contacts").text)
        for path, action in NEW_ROUTES[:2]:
            answer = client.post(path, data={"csrf": token, "scope": "all", "tag": "t", "expected": str(len(before))})
            assert answer.status_code == 403 and action in answer.text, (role, path)
        listed = client.get("/console/contacts").text
        assert "bulk/tag" not in listed and "bulk/suppress" not in listed  # and no button offers them
    assert _people(console) == before
    marketer = console.login("marketer")
    assert marketer.post(NEW_ROUTES[0][0], data={"scope": "all", "tag": "t"}).status_code == 403  # no CSRF token


def test_a_search_is_never_taken_from_a_url(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    everyone = _count_on(marketer.get("/console/contacts").text)
    assert _count_on(marketer.get("/console/contacts?q=kaia").text) == everyone
    page = _search(marketer, q="kaia").text
    assert 'method="post"' in page and "?q=" not in page


def test_the_list_pages_through_everyone_newest_first(console: ConsoleSite) -> None:
    people = _people(console)
    wanted = ContactFilter()
    first = contact_list(console.engine, console.workspace, wanted, 1, unmasked=True)
    last = contact_list(console.engine, console.workspace, wanted, 99, unmasked=True)
    assert first.total == len(people) and last.page == first.pages == -(-len(people) // PAGE_SIZE)
    seen = [
        r.id
        for n in range(1, first.pages + 1)
        for r in contact_list(console.engine, console.workspace, wanted, n, unmasked=True).rows
    ]
    newest = sorted(people, key=lambda p: (p["signed_up_at"], p["id"]), reverse=True)  # type: ignore[arg-type,return-value]
    assert seen == [int(p["id"]) for p in newest]  # type: ignore[call-overload]


def test_an_empty_audience_says_what_to_do_with_a_button_that_does_it(
    workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    with site(workspace_dir, store_url, import_sample=False) as empty:
        page = empty.login("marketer").get("/console/contacts").text
    assert "No contacts yet" in page and 'href="/console/audiences">Import contacts</a>' in page
    assert 'id="contacts-table"' not in page and "bulk/tag" not in page


def test_sources_are_said_in_words() -> None:
    assert source_words("import:sample.csv") == "Imported from sample.csv"
    assert source_words("form:spring") == "Signup form “spring”"
    assert source_words("api:crm sync") == "Added through the API (crm sync)"
    assert source_words("double opt-in confirmation") == "Website signup form"
