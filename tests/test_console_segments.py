"""Segments in the console (issue 28.3) over HTTP: a segment's page (its exclusions by reason, its members paged
and masked for an analyst), the builder (rows of conditions, counted as they change through a JSON address,
saved into `audiences/segments.yaml` through the loader, keeping every other segment and the file's comment,
errors beside their row and nothing written), and every new route refusing anonymous and unpermitted roles.
The saved segment's size is what `needlecast audience segments` reports, run in this process."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from needlecast.accounts.audit import entries
from needlecast.accounts.roles import ROLE_ACTIONS, ROLES, cli_actor
from needlecast.actions.events import record_events
from tests.cli_runner import run
from tests.console_site import ConsoleSite, assert_anonymous_refused, csrf_of, site

pytestmark = pytest.mark.database_independent

ROUTES = [
    ("GET", "/console/segments/acne", "audiences.view"),
    ("GET", "/console/segments/new", "segments.edit"),
    ("POST", "/console/segments/new", "segments.edit"),
    ("POST", "/console/segments/count", "segments.edit"),
    ("GET", "/console/segments/acne/edit", "segments.edit"),
    ("POST", "/console/segments/acne/edit", "segments.edit"),
]


@pytest.fixture()
def console(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    with site(workspace_dir, store_url) as running:
        yield running


def _rows(*rows: tuple[str, str, str, str]) -> dict[str, str]:
    form = {}
    for index, (field, name, op, value) in enumerate(rows):
        form |= {f"field-{index}": field, f"name-{index}": name, f"op-{index}": op, f"value-{index}": value}
    return form


def _cli_sizes(root: Path, monkeypatch: pytest.MonkeyPatch, store_url: str) -> dict[str, int]:
    result = run(monkeypatch, root, "audience", "segments", "--format", "json", NEEDLECAST_DATABASE_URL=store_url)
    assert result.code == 0, result.stderr
    return {row["segment"]: row["members"] for row in json.loads(result.stdout)["segments"]}


def test_every_segment_route_refuses_anonymous_requests_and_roles_without_its_action(console: ConsoleSite) -> None:
    assert_anonymous_refused(console, ROUTES, {})
    refused = 0
    for role in ROLES:
        client = console.login(role)
        token = csrf_of(client.get("/console/").text)
        for method, path, action in ROUTES:
            if action in ROLE_ACTIONS[role]:
                if method == "GET":
                    assert client.get(path).status_code == 200, (role, path)
                continue
            response = client.request(method, path, data={"csrf": token, **_rows(("tag", "", "in", "x"))})
            assert response.status_code == 403, (role, method, path)
            assert action in response.text
            refused += 1
    assert refused >= 5  # the analyst and the reviewer may not edit: their refusals were exercised
    before = (console.workspace.audiences_dir / "segments.yaml").read_text()
    marketer = console.login("marketer")  # and a POST without the session's token changes nothing
    form = {"csrf": "not-the-token", "name": "x", **_rows(("tag", "", "in", "vip"))}
    assert marketer.post("/console/segments/new", data=form).status_code == 403
    assert (console.workspace.audiences_dir / "segments.yaml").read_text() == before


def test_a_segment_built_in_the_form_is_saved_and_its_size_is_what_the_command_line_reports(
    console: ConsoleSite, workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/segments/new").text)
    rows = _rows(("concern", "", "in", "acne, pigmentation"), ("attribute", "booked", "equals", "no"))
    counted = marketer.post("/console/segments/count", data={"csrf": token, **rows}).json()
    assert counted["problems"] == {} and counted["members"] > 0
    form = {"csrf": token, "name": "spots-not-booked", "description": "Acne or pigmentation, not booked", **rows}
    shown = marketer.post("/console/segments/new", data={**form, "do": "count"})
    assert shown.status_code == 200 and f"{counted['members']:,} people" in shown.text
    saved = marketer.post("/console/segments/new", data={**form, "do": "save"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("/console/segments/spots-not-booked?saved=1")

    sizes = _cli_sizes(workspace_dir, monkeypatch, store_url)
    assert sizes["spots-not-booked"] == counted["members"]
    assert list(sizes)[:6] == ["all-leads", "acne", "ageing", "pigmentation", "new-leads", "newsletter"]
    text = (console.workspace.audiences_dir / "segments.yaml").read_text()
    assert text.startswith("# Segments: who a campaign goes to.")  # the file's own explanation is kept
    reopened = marketer.get("/console/segments/spots-not-booked/edit").text  # the builder opens with its size
    assert f"<strong>{counted['members']:,} people</strong> would be in this segment now" in reopened
    page = marketer.get("/console/segments/spots-not-booked")
    assert f"{counted['members']:,} people" in page.text and "No marketing consent" in page.text
    with console.engine.connect() as conn:
        (entry,) = [e for e in entries(conn, 20) if e["action"] == "segment.saved"]
    assert entry["target"] == "segment:spots-not-booked" and entry["actor"] == "marketer@clinic.example"


def test_a_mistake_is_shown_beside_its_row_in_words_and_nothing_is_written(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    path = console.workspace.audiences_dir / "segments.yaml"
    before = path.read_text()
    token = csrf_of(marketer.get("/console/segments/new").text)
    rows = _rows(("tag", "", "in", "newsletter"), ("concern", "", "in", "freckles"), ("event", "booked", "in", "x"))
    answer = marketer.post("/console/segments/new", data={"csrf": token, "name": "Bad Name", "do": "save", **rows})
    assert answer.status_code == 400
    assert 'id="error-row-1"' in answer.text and "Unknown concern freckles" in answer.text
    assert 'id="error-row-2"' in answer.text and "within the last N days" in answer.text
    assert 'id="error-name"' in answer.text and 'id="error-row-0"' not in answer.text
    assert "Traceback" not in answer.text and str(console.workspace.root) not in answer.text
    counted = marketer.post("/console/segments/count", data={"csrf": token, **rows}).json()
    assert counted["members"] is None and set(counted["problems"]) == {"1", "2"}
    taken = marketer.post(
        "/console/segments/new", data={"csrf": token, "name": "acne", "do": "save", **_rows(("tag", "", "in", "x"))}
    )
    assert taken.status_code == 400 and "There is already a segment called acne" in taken.text
    assert path.read_text() == before


def test_editing_a_segment_keeps_the_others_and_a_rename_takes_its_place(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    edit = marketer.get("/console/segments/new-leads/edit").text
    assert 'value="signed_up" selected' in edit and 'value="booked"' in edit  # its rows, as the file has them
    token = csrf_of(edit)
    rows = _rows(("signed_up", "", "within_days", "60"), ("attribute", "booked", "not_equals", "yes"))
    form = {"csrf": token, "name": "recent-leads", "description": "Signed up lately", "do": "save", **rows}
    assert marketer.post("/console/segments/new-leads/edit", data=form).status_code == 303
    import yaml

    document = yaml.safe_load((console.workspace.audiences_dir / "segments.yaml").read_text())
    names = list(document["segments"])
    assert names == ["all-leads", "acne", "ageing", "pigmentation", "recent-leads", "newsletter"]
    assert document["segments"]["recent-leads"] == {
        "description": "Signed up lately",
        "signed_up_within_days": 60,
        "where": [{"field": "booked", "op": "not_equals", "value": "yes"}],
    }
    assert document["segments"]["acne"] == {
        "description": "Leads worried about acne and scarring",
        "concerns": ["acne"],
    }


def test_an_analyst_sees_members_masked_and_a_marketer_in_full_one_page_at_a_time(console: ConsoleSite) -> None:
    analyst, marketer = console.login("analyst"), console.login("marketer")
    masked = analyst.get("/console/segments/all-leads").text
    full = marketer.get("/console/segments/all-leads").text
    assert "kaia.0@example.com" in full and "Kaia Müller" in full
    assert "kaia.0@example.com" not in masked and "Kaia" not in masked and "k***@e***.com" in masked
    assert "K*** M***" in masked and "Edit this segment" not in masked
    assert "Page 1 of" in full and "Next page" in full
    second = marketer.get("/console/segments/all-leads?page=2").text
    assert "Page 2 of" in second and "kaia.0@example.com" not in second
    assert analyst.get("/console/segments/no-such-segment").status_code == 404


def test_an_event_row_counts_those_who_had_that_event_within_the_days(console: ConsoleSite) -> None:
    now = datetime.now(UTC)
    items: list[dict[str, Any]] = [
        {
            "id": "b1",
            "email": "kaia.0@example.com",
            "type": "booked",
            "occurred_at": (now - timedelta(days=3)).isoformat(),
        },
        {
            "id": "b2",
            "email": "quinn.1@example.org",
            "type": "booked",
            "occurred_at": (now - timedelta(days=40)).isoformat(),
        },
    ]
    record_events(console.engine, cli_actor(), items, "test")
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/segments/new").text)
    week = marketer.post(
        "/console/segments/count", data={"csrf": token, **_rows(("event", "booked", "within_days", "7"))}
    )
    quarter = marketer.post(
        "/console/segments/count", data={"csrf": token, **_rows(("event", "Booked", "within_days", "90"))}
    )
    assert (week.json()["members"], quarter.json()["members"]) == (1, 2)


def test_a_missing_or_malformed_segment_name_is_a_404_page_on_every_segment_route(console: ConsoleSite) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/audiences").text)
    for name in ("no-such-thing", "abc", "-1", "9" * 25, "..%2F..%2Fneedlecast.toml", "%00%C3%A9%25" + "x" * 300):
        for method, path in (("GET", ""), ("GET", "/edit"), ("POST", "/edit")):
            answer = admin.request(method, f"/console/segments/{name}{path}", data={"csrf": token, "do": "save"})
            assert answer.status_code == 404 and "Back to" in answer.text, (method, name, path, answer.status_code)
    assert "no such thing" not in (console.workspace.audiences_dir / "segments.yaml").read_text()


def test_a_segments_page_says_who_is_left_out_and_why_in_the_clinics_words(console: ConsoleSite) -> None:
    from needlecast.audience.suppression import suppress

    analyst = console.login("analyst")
    before = analyst.get("/console/segments/acne").text
    with console.engine.begin() as conn:
        suppress(conn, "quinn.1@example.org", "manual")
    after = html.unescape(analyst.get("/console/segments/acne").text)
    assert "Suppressed: manual" not in before and "Suppressed: manual" in after
    assert "Their address is on the do-not-mail list: manual." in after
    assert "They have not agreed to receive the clinic's marketing email." in after
    assert "quinn" not in after.lower()  # an analyst's page names nobody
