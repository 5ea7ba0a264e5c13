"""The campaign list follows a running send in a real browser (Playwright and Debian's Chromium): the sending
campaign's row updates from its JSON status without the page reloading, and says when the send ended; no
meta refresh, no console error or CSP violation (the `browser` fixture fails on one), axe-core finds nothing
serious, and the page works at 1280 and 390 px; screenshots in test-artifacts/. Without JavaScript the list
offers a Refresh link instead."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import insert, select

from needlecast.store.schema import contacts, deliveries
from tests.browser import accessibility_problems, axe_script, chromium_path, screenshot
from tests.console_site import PASSWORD, ConsoleSite, email_of, sqlite_site

CAMPAIGN = "spring-guide"


@pytest.fixture()
def web(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    with sqlite_site(workspace_dir, tmp_path, monkeypatch) as running:
        yield running


def _sending(web: ConsoleSite, on: bool) -> None:
    """Mark the campaign as sent by this process (what `Senders.send_now` records until its send ends)."""
    with web.senders._lock:
        (web.senders._busy.add if on else web.senders._busy.discard)(CAMPAIGN)


def _record_sent(web: ConsoleSite, how_many: int) -> None:
    """`how_many` emails of the campaign recorded as sent in the ledger, as the send records them."""
    now = datetime.now(UTC)
    with web.engine.begin() as conn:
        people = list(conn.execute(select(contacts.c.id).order_by(contacts.c.id).limit(how_many)).scalars())
        conn.execute(
            insert(deliveries),
            [
                {
                    "campaign_id": CAMPAIGN,
                    "step_id": "guide",
                    "contact_id": person,
                    "segment": "all-leads",
                    "variant": "general",
                    "arm": "",
                    "status": "sent",
                    "due_at": now,
                    "claimed_at": now,
                    "claim_token": "",
                    "sent_at": now,
                    "message_id": f"m-{person}",
                    "error": "",
                    "attempts": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for person in people
            ],
        )


def test_without_a_send_the_list_runs_no_script_and_while_one_runs_it_offers_a_refresh_link(web: ConsoleSite) -> None:
    marketer = web.login("marketer")
    idle = marketer.get("/console/campaigns").text
    assert "send-progress.js" not in idle and 'id="list-progress"' not in idle and 'http-equiv="refresh"' not in idle
    _sending(web, True)
    running = marketer.get("/console/campaigns").text
    assert 'http-equiv="refresh"' not in running and "send-progress.js" in running
    assert f'data-status="/console/campaigns/{CAMPAIGN}/status"' in running
    assert '<a href="/console/campaigns">Refresh</a>' in running  # what a browser without JavaScript offers


@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_sending_campaigns_row_follows_the_send_without_reloading_the_list(
    browser: Any, web: ConsoleSite, width: int
) -> None:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{web.url}/console/login")
    page.get_by_label("Email address").fill(email_of("marketer"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console/$"))
    _sending(web, True)
    page.goto(f"{web.url}/console/campaigns")
    row = page.locator(f"#row-{CAMPAIGN}")
    sent = row.locator('td[data-key="sent"]')
    assert sent.inner_text() == "0"
    assert page.locator("meta[http-equiv=refresh]").count() == 0
    assert "A send is running" in page.locator("#list-progress").inner_text()
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    _record_sent(web, 5)
    expect(sent).to_have_text("5", timeout=30_000)  # the next poll's counts, put into the row
    assert page.evaluate("window.sameDocument === true"), "the list reloaded itself"
    assert accessibility_problems(page) == []
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    screenshot(page, f"console-campaigns-sending-{width}")
    _sending(web, False)
    row.locator("[data-said]", has_text="Send ended").wait_for(timeout=30_000)
    assert "The send has ended" in page.locator("#list-progress").inner_text()
    assert page.evaluate("window.sameDocument === true"), "the list reloaded itself"
    assert row.get_attribute("data-state") == "ended"
    screenshot(page, f"console-campaigns-ended-{width}")
