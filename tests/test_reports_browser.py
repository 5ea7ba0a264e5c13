"""The console's report page in a real browser (Playwright and Debian's Chromium) with its Content-Security-Policy
enforced, as people get it: the demo's simulated events and bookings on the sample broadcast, no console error
or CSP violation, charts drawn in their colours, and the page as wide as a 390 px phone. Screenshots go to
test-artifacts/; axe-core checks the page (through the browser's protocol, under the page's CSP). The `browser`
fixture (conftest) also fails a test on any console error or CSP violation the pages logged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from needlecast.audience.events import store_events, validate_event
from needlecast.audience.importer import import_file
from needlecast.campaign.send.runner import Runner
from needlecast.config import open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.delivery.outbox import OutboxBackend
from needlecast.devtools.events import simulate, simulate_bookings
from needlecast.store.engine import open_store
from needlecast.tracking.events import parse_sendgrid
from needlecast.tracking.webhook import ingest
from tests.browser import (
    GuardedBrowser,
    accessibility_problems,
    axe_script,
    chromium_path,
    save_doc_screenshot,
    screenshot,
)
from tests.console_site import PASSWORD, ConsoleSite, email_of, site

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)"),
]

# Each CSP violation, as the page itself hears of it (Playwright's init script is not subject to the page's CSP).
LISTEN = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
"""


@pytest.fixture()
def reported(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    """The console over the demo's data: the sample broadcast sent, then the demo's simulated SendGrid events
    (bounces, opens, clicks, complaints) and bookings."""
    url = f"sqlite:///{tmp_path / 'report.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    workspace = open_workspace(workspace_dir)
    engine = open_store(url)
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    Runner(workspace, engine, partial(OutboxBackend, workspace.settings, workspace.outbox_dir)).run_broadcast(
        "spring-guide", send_now=True
    )
    events = simulate(engine, workspace.settings)
    ingest(engine, parse_sendgrid(json.dumps(events).encode()))
    bookings = [validate_event(b, n) for n, b in enumerate(simulate_bookings(events))]
    with engine.begin() as conn:
        store_events(conn, bookings, "test", datetime.now(UTC))  # type: ignore[arg-type]
    engine.dispose()
    with site(workspace_dir, url, import_sample=False) as running:
        yield running


def logged_in(browser: GuardedBrowser, console: ConsoleSite, width: int) -> Any:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{console.url}/console/login")
    page.get_by_label("Email address").fill(email_of("analyst"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console/$"))
    return page


@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_page_draws_its_charts_under_its_csp_and_fits_the_window(
    browser: GuardedBrowser, reported: ConsoleSite, width: int
) -> None:
    page = logged_in(browser, reported, width)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.add_init_script(LISTEN)
    answer = page.goto(f"{reported.url}/console/reports/spring-guide")
    assert answer.status == 200
    assert "style-src 'self'" in answer.headers["content-security-policy"]  # the console's own, unweakened
    page.wait_for_load_state("load")
    screenshot(page, f"report-page-{width}")
    if width == 1280:
        save_doc_screenshot(page, "report")
    assert errors == []
    assert page.evaluate("window.__violations") == []
    charts = page.locator(".chart svg")
    assert charts.count() == 2
    # Drawn in their colours: a blocked style attribute leaves every shape its default fill, black.
    fills = page.evaluate("[...document.querySelectorAll('.chart svg path')].map((p) => getComputedStyle(p).fill)")
    assert "rgb(255, 255, 255)" in fills and "rgb(47, 72, 88)" in fills  # the background, the "Sent" bars
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for box in charts.all():
        shape = box.bounding_box()
        assert shape is not None and shape["width"] <= width and shape["height"] > 50
    assert "Hard bounces" in page.locator("#table-health").inner_text()

    assert accessibility_problems(page) == []  # axe goes in through the protocol: the page keeps its CSP


@pytest.mark.parametrize("width", [1280, 390])
def test_the_compare_page_sorts_filters_and_draws_its_trends_under_its_csp(
    browser: GuardedBrowser, reported: ConsoleSite, width: int
) -> None:
    page = logged_in(browser, reported, width)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.add_init_script(LISTEN)
    answer = page.goto(f"{reported.url}/console/reports")
    assert answer.status == 200
    assert "style-src 'self'" in answer.headers["content-security-policy"]
    page.wait_for_load_state("load")
    screenshot(page, f"compare-page-{width}")
    if width == 1280:
        save_doc_screenshot(page, "compare")
    assert errors == []
    assert page.evaluate("window.__violations") == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # The campaign that sent, the largest first, and the totals row (the campaign tables are tested in-process).
    rows = page.locator("#table-compare tbody tr")
    assert rows.count() == 1
    assert rows.nth(0).locator("th").inner_text() == "spring-guide"
    assert page.locator("#table-compare tfoot th").inner_text() == "All campaigns"
    assert "Sent" in page.locator("#table-compare thead").inner_text()
    assert page.locator('#table-compare th[aria-sort="descending"]').inner_text().startswith("Sent")
    charts = page.locator(".chart svg")
    assert charts.count() == 8  # delivered, open, click and conversion rates; per concern and per article
    for box in charts.all():
        shape = box.bounding_box()
        assert shape is not None and shape["width"] <= width and shape["height"] > 50
    # Sorting is a link (no script): again, the smallest first; the filters are a plain form that keeps it.
    page.locator("#table-compare thead a", has_text="Sent").click()
    page.wait_for_load_state("load")
    assert "order=asc" in page.url
    assert page.locator('#table-compare th[aria-sort="ascending"]').inner_text().startswith("Sent")
    page.get_by_label("Concern", exact=True).select_option("acne")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state("load")
    assert "concern=acne" in page.url and "order=asc" in page.url
    assert page.locator("#table-trend-concern tbody tr").count() == 1  # acne's one week
    assert page.locator("#table-compare tbody tr").count() == 1
    assert errors == [] and page.evaluate("window.__violations") == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    page.goto(f"{reported.url}/console/reports")  # the page as it first opens, for axe (under its CSP)
    assert accessibility_problems(page) == []


@pytest.mark.parametrize("width", [1280, 390])
def test_the_cohorts_page_shows_cohorts_revenue_and_attribution_under_its_csp(
    browser: Any, reported: ConsoleSite, width: int
) -> None:
    page = logged_in(browser, reported, width)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.add_init_script(LISTEN)
    page.goto(f"{reported.url}/console/reports")
    page.get_by_role("link", name="Cohorts and revenue").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/console/reports/cohorts")
    screenshot(page, f"cohorts-page-{width}")
    if width == 1280:
        save_doc_screenshot(page, "cohorts")
    assert errors == [] and page.evaluate("window.__violations") == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    cohorts = page.locator("#table-cohorts tbody tr")
    assert cohorts.count() > 0 and "Imported from sample.csv" in page.locator("#table-cohorts").inner_text()
    revenue = page.locator("#table-revenue tbody tr").all_inner_texts()
    assert any(row.startswith("spring-guide") and "GBP" in row for row in revenue)
    assert revenue[-1].startswith("All campaigns")
    assert "Bookings by last click" in page.locator("#table-attribution thead").inner_text()
    page.get_by_label("Group the leads by").select_option("concern")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state("load")
    assert "by=concern" in page.url and "Concern" in page.locator("#table-cohorts thead").inner_text()
    assert errors == [] and page.evaluate("window.__violations") == []

    page.goto(f"{reported.url}/console/reports/cohorts?by=concern")  # for axe, under the page's CSP
    assert accessibility_problems(page) == []
