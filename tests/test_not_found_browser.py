"""The console's 404 page in a real browser (Chromium) at desktop and phone width: axe-core finds nothing
serious, the page says what was not found and its link leads back to the list; screenshots in test-artifacts/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser import axe_script, chromium_path
from tests.console_site import ConsoleSite
from tests.test_console_browser import Person, console  # noqa: F401 (the fixture)

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)"),
]


def test_the_not_found_page_says_what_and_leads_back_to_its_list_at_desktop_and_phone_width(
    browser: Any,
    console: ConsoleSite,  # noqa: F811 (the fixture)
) -> None:
    for width in (1280, 390):
        person = Person(browser, console, "marketer", width=width).log_in()
        person.open("/console/campaigns/spring-sale", f"not-found-campaign-{width}")  # axe, then a screenshot
        page = person.page
        assert page.get_by_role("heading", level=1).inner_text() == "Campaign not found"
        assert "There is no campaign “spring-sale”" in page.get_by_role("alert").inner_text()
        if width == 390:
            assert page.evaluate("document.documentElement.scrollWidth") <= 420
        page.get_by_role("link", name="Back to the campaigns").click()
        page.wait_for_url(re.compile(r".*/console/campaigns$"))
        assert page.get_by_role("heading", level=1).inner_text() == "Campaigns"
        person.open("/console/no/such/page", f"not-found-page-{width}")
        page.get_by_role("link", name="Back to the home page").click()
        page.wait_for_url(re.compile(r".*/console/$"))
        person.open("/console/contacts/123456", f"not-found-contact-{width}")
        page.get_by_role("link", name="Back to the contacts").click()
        page.wait_for_url(re.compile(r".*/console/contacts$"))
        person.log_out()
