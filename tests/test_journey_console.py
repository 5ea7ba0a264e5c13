"""The console's journey page and node page: the journey as a diagram (inline SVG drawn on the server) with its
people per node, one node's people (masked for an analyst) and its email's preview; the pages refuse
anonymous visitors. In a real browser (Playwright and Debian's Chromium) at 1280 and 390 px: the counts
match the positions, a node's box leads to its people, no console error or CSP violation (the `browser`
fixture fails on one), axe-core finds nothing serious, nothing scrolls sideways; screenshots in
test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from needlecast.store.schema import contacts, journey_positions
from tests.browser import accessibility_problems, axe_script, chromium_path, screenshot
from tests.console_site import (
    PASSWORD,
    ConsoleSite,
    assert_anonymous_refused,
    assert_roles_refused,
    email_of,
    sqlite_site,
)

pytestmark = pytest.mark.database_independent

RECALL = """id: recall
name: Anti-wrinkle recall
kind: journey
segment: all-leads
time_zone: Europe/London
goal: {event: booked}
steps:
  - {id: morning, kind: wait, until_time: "09:00"}
  - {id: recall, template: emails/consultation}
  - id: clicked-book
    kind: wait_until
    engagement: {node: recall, action: clicked, link: "/book"}
    timeout: 5d
    next: thanks
    on_timeout: route
  - id: route
    kind: branch
    paths:
      - {when: [{event: no_show, within: 180d}], next: gentle}
      - {when: [{tag: vip}], next: vip-offer}
    default: ab
  - id: ab
    kind: split
    paths: [{percent: 50, next: gentle}, {percent: 50, next: vip-offer}]
  - {id: gentle, template: emails/deep_dive, next: pause}
  - {id: vip-offer, template: emails/broadcast, next: pause}
  - {id: pause, kind: wait, delay: 14d}
  - {id: thanks, kind: exit}
signoff: {reviewer: QA, date: 2026-11-24, note: test content}
"""
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
# (node, state, path) of each of the first contacts, in id order.
WHERE = [
    *[("clicked-book", "active", "")] * 3,
    *[("pause", "active", "clicked-book>route;route>ab;ab>gentle;")] * 2,
    ("thanks", "done", "clicked-book>thanks;"),
    ("vip-offer", "converted", "clicked-book>route;route>vip-offer;"),
    ("old-step", "active", ""),
]
# node -> (waiting, passed through, left here) for WHERE.
EXPECTED = {
    "morning": (0, 7, 0),
    "recall": (0, 7, 0),
    "clicked-book": (3, 4, 0),
    "route": (0, 3, 0),
    "ab": (0, 2, 0),
    "gentle": (0, 2, 0),
    "vip-offer": (0, 0, 1),
    "pause": (2, 0, 0),
    "thanks": (0, 0, 1),
}


@pytest.fixture()
def web(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    (workspace_dir / "campaigns" / "recall.yaml").write_text(RECALL)
    with sqlite_site(workspace_dir, tmp_path, monkeypatch) as running:
        with running.engine.begin() as conn:
            people = list(conn.execute(select(contacts.c.id).order_by(contacts.c.id).limit(len(WHERE))).scalars())
            conn.execute(
                insert(journey_positions),
                [
                    {
                        "campaign_id": "recall",
                        "contact_id": person,
                        "entry": 1,
                        "node": node,
                        "state": state,
                        "since": NOW - timedelta(days=i),
                        "due_at": NOW + timedelta(days=1),
                        "entered_at": NOW - timedelta(days=10),
                        "trigger_at": None,
                        "left_at": None if state == "active" else NOW,
                        "reason": "" if state == "active" else "exit at thanks",
                        "path": path,
                    }
                    for i, (person, (node, state, path)) in enumerate(zip(people, WHERE, strict=True))
                ],
            )
        yield running


def _first_people(web: ConsoleSite) -> list[tuple[str, str, str]]:
    with web.engine.connect() as conn:
        query = select(contacts.c.email, contacts.c.first_name, contacts.c.last_name).order_by(contacts.c.id)
        return [(e, f, ln) for e, f, ln in conn.execute(query.limit(len(WHERE)))]


def test_the_journey_pages_refuse_anonymous_visitors_and_roles_without_their_action(web: ConsoleSite) -> None:
    routes = [
        ("GET", "/console/journeys/recall", "campaigns.view"),
        ("GET", "/console/journeys/recall/nodes/pause", "contacts.view"),
    ]
    assert_anonymous_refused(web, routes, {})
    assert_roles_refused(web, routes, {})  # every role may view campaigns and contacts: none is refused


def test_the_journey_page_draws_each_node_with_its_people_and_lists_the_stranded(web: ConsoleSite) -> None:
    page = web.login("analyst").get("/console/journeys/recall")
    assert page.status_code == 200
    html = page.text
    assert "<svg" in html and "style=" not in html.split("<svg", 1)[1].split("</svg>", 1)[0]
    for node, (waiting, passed, left) in EXPECTED.items():
        assert f'data-node="{node}"' in html
        assert f"{waiting} waiting · {passed} passed · {left} left" in html, node
    assert "until they click the email of recall (/book), at most 5 days" in html
    assert "wait 14 days" in html and "split 50 % / 50 %" in html and "no show in the last 180 days" in html
    assert re.search(r'id="stranded">.*old-step.*<strong>1</strong> waiting', html, re.S)
    assert 'id="entered">8<' in html
    assert "clicked-book → route, route → ab, ab → gentle" in html
    campaign_page = web.login("analyst").get("/console/campaigns/recall").text
    assert 'href="/console/journeys/recall"' in campaign_page
    assert 'href="/console/journeys/recall"' in web.login("analyst").get("/console/campaigns").text


def test_a_nodes_people_are_masked_for_an_analyst_and_shown_to_a_marketer(web: ConsoleSite) -> None:
    people = _first_people(web)
    waiting = {e for (e, _, _), (node, _, _) in zip(people, WHERE, strict=True) if node == "clicked-book"}
    analyst = web.login("analyst").get("/console/journeys/recall/nodes/clicked-book").text
    assert "Who is waiting here: 3" in analyst and "masked" in analyst
    assert "Reached by <strong>7</strong>: 3 waiting here, 4 passed through, 0 left the journey here." in analyst
    assert not any(e in analyst for e in waiting)
    assert all(f"{f[:1]}***" in analyst for _, f, _ in people[:3])
    marketer = web.login("marketer").get("/console/journeys/recall/nodes/clicked-book").text
    assert all(e in marketer for e in waiting)
    left = web.login("marketer").get("/console/journeys/recall/nodes/thanks?left=1").text
    assert "Who left the journey here: 1" in left and people[5][0] in left and "exit at thanks" in left


def test_a_send_nodes_page_previews_its_email_in_a_sandboxed_frame(web: ConsoleSite) -> None:
    page = web.login("analyst").get("/console/journeys/recall/nodes/gentle?variant=acne").text
    frame = re.search(r'<iframe class="preview" sandbox="" [^>]*src="([^"]+)"', page)
    assert frame, page
    src = frame.group(1).replace("&amp;", "&")
    assert "step=gentle" in src and "variant=acne" in src
    email = web.login("analyst").get(src)
    assert email.status_code == 200 and "sandbox" in email.headers["content-security-policy"]


def test_an_unknown_node_is_not_found(web: ConsoleSite) -> None:
    assert web.login("analyst").get("/console/journeys/recall/nodes/nowhere").status_code == 404


@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_diagram_shows_the_counts_and_a_node_leads_to_its_masked_people(
    browser: Any, web: ConsoleSite, width: int
) -> None:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{web.url}/console/login")
    page.get_by_label("Email address").fill(email_of("analyst"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console/$"))
    page.goto(f"{web.url}/console/journeys/recall")
    for node, (waiting, passed, left) in EXPECTED.items():
        box = page.locator(f'#diagram a[data-node="{node}"] .jd-counts')
        assert box.text_content() == f"{waiting} waiting · {passed} passed · {left} left", node
        row = page.locator(f'#nodes tr[data-node="{node}"]')
        assert [row.locator(f'[data-figure="{f}"]').inner_text() for f in ("waiting", "passed", "left")] == [
            str(waiting),
            str(passed),
            str(left),
        ]
    svg = page.locator("#diagram svg").bounding_box()
    assert svg is not None and svg["width"] <= width
    assert accessibility_problems(page) == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    screenshot(page, f"console-journey-{width}")
    page.locator('#diagram a[data-node="clicked-book"]').click()
    page.wait_for_url(re.compile(r".*/journeys/recall/nodes/clicked-book$"))
    assert "Who is waiting here: 3" in page.locator("#people-heading").inner_text()
    emails = page.locator("#people td[data-label=Address]").all_inner_texts()
    assert len(emails) == 3 and all("***" in e for e in emails)
    waiting = {e for (e, _, _), (node, _, _) in zip(_first_people(web), WHERE, strict=True) if node == "clicked-book"}
    assert not waiting & set(emails)
    assert accessibility_problems(page) == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    screenshot(page, f"console-journey-node-{width}")
    page.goto(f"{web.url}/console/journeys/recall/nodes/gentle")
    page.frame_locator("iframe.preview").locator("body").wait_for()
    assert accessibility_problems(page) == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    screenshot(page, f"console-journey-send-node-{width}")


def test_the_journeys_report_page_and_api_give_the_funnel_per_node_and_the_paths(web: ConsoleSite) -> None:
    page = web.login("analyst").get("/console/reports/recall").text
    assert "Funnel per step of the journey" in page and "Paths taken through the journey" in page
    assert "clicked-book → route, route → vip-offer" in page
    tables = web.api(web.key("reports:read")).get("/reports/recall").json()
    reached = {row["node"]: row["reached"] for row in tables["journey_funnel"]}
    assert reached["(entered)"] == 8 and reached["clicked-book"] == 7 and reached["ab"] == 2
    converted = {row["path"]: row["converted"] for row in tables["journey_paths"]}
    assert converted["clicked-book → route, route → vip-offer"] == 1
    assert "journey_funnel" not in web.api(web.key("reports:read")).get("/reports/spring-guide").json() or (
        web.api(web.key("reports:read")).get("/reports/spring-guide").json()["journey_funnel"] == []
    )
