"""The contact list in a real browser (Playwright and Debian's Chromium), as a marketer and an analyst at 1280
and 390 px: searched by a part of a name, filtered, bulk-tagged after a confirmation with its count, a
contact's page with its journey positions; axe-core on every page, no console error or CSP violation (the
`browser` fixture fails the test on one), no sideways scroll on a phone, screenshots in test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from needlecast.store.schema import contacts, journey_positions
from tests.browser import axe_script, check_page, chromium_path, save_doc_screenshot
from tests.console_site import PASSWORD, ConsoleSite, email_of, sqlite_site

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)"),
]


@pytest.fixture()
def console(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    with sqlite_site(workspace_dir, tmp_path, monkeypatch) as running:
        yield running


class Person:
    """One person at the console at one width: their own browser context, checking each page they see."""

    def __init__(self, browser: Any, console: ConsoleSite, role: str, width: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.console, self.role, self.width = console, role, width

    def check(self, name: str) -> None:
        check_page(self.page, name, self.width, f"contacts-{self.role}-{name}-{self.width}")

    def log_in(self) -> Person:
        self.page.goto(f"{self.console.url}/console/login")
        self.page.get_by_label("Email address").fill(email_of(self.role))
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(re.compile(r".*/console/$"))
        self.page.get_by_role("link", name="Contacts").click()
        self.page.wait_for_url(re.compile(r".*/console/contacts$"))
        return self


def _tags_of(console: ConsoleSite, ids: list[int]) -> dict[int, list[str]]:
    with console.engine.connect() as conn:
        found = conn.execute(select(contacts.c.id, contacts.c.tags).where(contacts.c.id.in_(ids)))
        return {int(i): [t for t in tags.split(";") if t] for i, tags in found}


@pytest.mark.parametrize("width", [1280, 390])
def test_a_marketer_searches_by_a_part_of_a_name_filters_and_tags_the_ones_ticked(
    browser: Any, console: ConsoleSite, width: int
) -> None:
    with console.engine.connect() as conn:
        nguyens = conn.execute(select(contacts.c.id, contacts.c.concerns).where(contacts.c.last_name == "Nguyen"))
        acne = sorted((int(i) for i, concerns in nguyens if "acne" in concerns.split(";")), reverse=True)
    assert len(acne) >= 2
    marketer = Person(browser, console, "marketer", width).log_in()
    page = marketer.page
    marketer.check("list")
    if width == 1280:
        save_doc_screenshot(page, "contacts")
    page.get_by_label("Search by name or address").fill("nguy")
    page.get_by_text("Filters: concern").click()  # the filters fold away (a phone shows the list sooner)
    page.get_by_label("Concern").select_option("acne")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_selector("#count")
    assert page.locator("#count").inner_text().startswith(f"{len(acne)} of")
    rows = page.locator("#contacts-table tbody tr")
    assert rows.count() == len(acne) and all("Nguyen" in text for text in rows.all_inner_texts())
    if width == 390:  # the table is a list of cards: one column, its headings said beside each value
        assert page.locator("#contacts-table tbody tr").first.evaluate("e => getComputedStyle(e).display") == "block"
    marketer.check("searched")
    chosen = acne[:2]
    before = _tags_of(console, chosen)
    for contact_id in chosen:
        page.get_by_label(f"Choose contact #{contact_id}").check()
    page.get_by_label("Tag", exact=True).fill("spring vip")
    page.get_by_role("button", name=re.compile(r"^Add the tag")).click()
    page.wait_for_url(re.compile(r".*/console/contacts/bulk/tag$"))
    assert page.locator("#reach").inner_text() == "Add the tag “spring vip” to 2 contacts?"
    assert _tags_of(console, chosen) == before  # asked, not done
    marketer.check("confirm-tag")
    page.get_by_role("button", name="Add the tag", exact=True).click()
    page.wait_for_selector("p.notice.ok")
    assert page.locator("p.notice.ok").inner_text() == "Added the tag “spring vip” to 2 contacts."
    assert _tags_of(console, chosen) == {i: [*before[i], "spring vip"] for i in chosen}
    assert page.locator("#contacts-table tbody tr").count() == len(acne)  # the search is kept
    marketer.check("tagged")
    first = page.locator("#contacts-table").get_by_role("link").first
    target = first.get_attribute("href")
    assert target and int(target.rsplit("/", 1)[1]) in acne
    first.click()
    page.wait_for_url(re.compile(rf".*{re.escape(target)}$"))
    marketer.check("contact")


def test_an_analyst_sees_the_list_masked_finds_a_whole_address_and_a_persons_journeys(
    browser: Any, console: ConsoleSite
) -> None:
    now = datetime.now(UTC)
    with console.engine.begin() as conn:
        quinn = int(conn.execute(select(contacts.c.id).where(contacts.c.email == "quinn.1@example.org")).scalar_one())
        conn.execute(
            insert(journey_positions).values(
                campaign_id="new-lead-nurture", contact_id=quinn, entry=1, node="welcome", state="active",
                since=now - timedelta(days=1), due_at=now + timedelta(days=2), entered_at=now - timedelta(days=1),
            )
        )  # fmt: skip
    for width in (1280, 390):
        analyst = Person(browser, console, "analyst", width).log_in()
        page = analyst.page
        listed = page.locator("#contacts-table").inner_text()
        assert "@example" not in listed and "***" in listed
        assert page.get_by_role("button", name=re.compile("^Add the tag")).count() == 0
        analyst.check("list")
        page.get_by_label("Find by their exact email address").fill("quinn.1@example.org")
        page.get_by_role("button", name="Search", exact=True).click()
        page.wait_for_url(re.compile(rf".*/console/contacts/{quinn}$"))
        assert page.locator("#name").inner_text() == "Q*** N***"
        assert page.locator("#address").inner_text() == "q***@e***.org"
        journeys = page.locator("#journeys-table").inner_text()
        assert "new-lead-nurture" in journeys and "Waiting" in journeys and "welcome" in journeys
        assert "Imported from sample.csv" in page.locator("body").inner_text()
        analyst.check("contact")
        analyst.context.close()
