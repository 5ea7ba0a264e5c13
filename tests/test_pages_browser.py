"""The pages a lead sees, in a real browser (Playwright and Debian's Chromium), on SQLite (what the browser shows
does not depend on the database; conftest's rule; the signup's database paths are tested on both): the
signup form filled in and confirmed from the emailed link, the preference page's choices saved, the
unsubscribe button; axe-core checks each page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from needlecast import signing
from needlecast.audience.suppression import suppression_of
from needlecast.config import signing_secret
from needlecast.store.schema import contacts
from tests.browser import (
    GuardedBrowser,
    accessibility_problems,
    axe_script,
    chromium_path,
    save_doc_screenshot,
    screenshot,
)
from tests.console_site import ConsoleSite, site
from tests.test_signup import confirmation_links, contact_row

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)"),
    pytest.mark.database_independent,
]


@pytest.fixture()
def web(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    with site(workspace_dir, store_url) as running:
        yield running


@pytest.fixture()
def page(web: ConsoleSite, browser: GuardedBrowser) -> Any:
    """A phone-sized page; at teardown the test fails on any console error or CSP violation it logged."""
    return browser.new_context(viewport={"width": 390, "height": 844}).new_page()


def checked(page: Any, name: str) -> None:
    assert accessibility_problems(page) == [], name
    screenshot(page, name)


@pytest.mark.parametrize("health_data", [False, True], ids=["general", "concern"])
def test_a_lead_signs_up_in_the_form_and_confirms_from_the_email(
    web: ConsoleSite, page: Any, health_data: bool
) -> None:
    page.goto(f"{web.url}/subscribe")
    checked(page, "signup-form")
    save_doc_screenshot(page, "signup-form")
    page.get_by_label("Email address").fill("ines.lead@example.org")
    page.get_by_label("First name (optional)").fill("Ines")
    page.get_by_label("Acne and scarring").check()
    page.get_by_label(web.workspace.settings.signup.marketing_wording).check()
    if health_data:
        page.get_by_label(web.workspace.settings.signup.concern_wording).check()
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_selector("#result")
    assert "Check your inbox" in page.locator("#result").inner_text()
    checked(page, "signup-thanks")

    (link,) = confirmation_links(web, "ines.lead@example.org")  # once the scheduler's job has sent it
    assert contact_row(web, "ines.lead@example.org")["status"] == "pending"  # type: ignore[index]
    page.goto(link)  # opening the link shows a button and changes nothing (mail scanners open links too)
    checked(page, "signup-confirm")
    assert contact_row(web, "ines.lead@example.org")["status"] == "pending"  # type: ignore[index]
    page.get_by_role("button", name="Yes, confirm my subscription").click()
    page.wait_for_selector("#result")
    assert page.get_by_role("heading", name="Subscription confirmed").is_visible()
    checked(page, "signup-confirmed")
    lead = contact_row(web, "ines.lead@example.org")
    assert lead is not None and lead["status"] == "active" and lead["marketing_consent"]
    assert bool(lead["concern_consent"]) is health_data and lead["concerns"] == "acne"


def test_a_lead_changes_their_topics_and_then_unsubscribes_on_their_own_pages(web: ConsoleSite, page: Any) -> None:
    with web.engine.connect() as conn:
        contact_id = int(
            conn.execute(select(contacts.c.id).where(contacts.c.email == "quinn.1@example.org")).scalar_one()
        )
    token = signing.sign(signing_secret(required=False), signing.MANAGE, contact_id, "spring-guide")
    page.goto(f"{web.url}/p/{token}")
    checked(page, "preferences")
    for box in page.locator("input[name=concern]").all():
        box.uncheck()
    page.get_by_label("Ageing skin").check()
    page.get_by_role("button", name="Save my choices").click()
    page.wait_for_selector("#result")
    checked(page, "preferences-saved")
    with web.engine.connect() as conn:
        after = conn.execute(
            select(contacts.c.concerns, contacts.c.concern_consent).where(contacts.c.id == contact_id)
        ).one()
    assert tuple(after) == ("ageing", True)

    page.goto(f"{web.url}/u/{token}")
    checked(page, "unsubscribe")
    with web.engine.connect() as conn:
        assert suppression_of(conn, "quinn.1@example.org") is None  # opening the page changes nothing
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("#result")
    assert re.search(r"You are unsubscribed", page.locator("#result").inner_text())
    with web.engine.connect() as conn:
        assert suppression_of(conn, "quinn.1@example.org") == "unsubscribed"
