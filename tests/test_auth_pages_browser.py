"""The throttled log-in page and the signup confirm page in a real browser (Playwright and Debian's Chromium)
at a desktop's and a phone's width, checked by axe-core, with screenshots saved to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import GuardedBrowser, accessibility_problems, axe_script, chromium_path, screenshot
from tests.console_site import PASSWORD, ConsoleSite, csrf_of, email_of, site
from tests.test_signup import GOOD, confirmation_links, contact_row

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)"),
]
WIDTHS = {"desktop": 1280, "phone": 390}


@pytest.fixture()
def web(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    url = f"sqlite:///{tmp_path / 'pages.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    with site(workspace_dir, url, import_sample=False) as running:
        yield running


def new_page(browser: GuardedBrowser, width: int) -> Any:
    return browser.new_context(viewport={"width": width, "height": 900}).new_page()


def checked(page: Any, name: str) -> None:
    assert accessibility_problems(page) == [], name
    screenshot(page, name)


def test_a_throttled_log_in_page_says_how_long_to_wait_at_both_widths(
    web: ConsoleSite, browser: GuardedBrowser
) -> None:
    client = web.client()
    for attempt in range(web.workspace.settings.console.login_refuse_after):
        form = client.get("/console/login")
        wrong = {"csrf": csrf_of(form.text), "email": email_of("admin"), "password": f"wrong {attempt}"}
        assert client.post("/console/login", data=wrong).status_code == 401
    for device, width in WIDTHS.items():
        page = new_page(browser, width)
        page.goto(f"{web.url}/console/login")
        page.get_by_label("Email address").fill(email_of("admin"))
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_selector("text=Too many failed log-ins")
        assert "try again in about 15 minutes" in page.content()
        assert "/console/login" in page.url
        checked(page, f"login-throttled-{device}")


def test_the_confirm_page_shows_a_button_and_confirms_only_when_pressed_at_both_widths(
    web: ConsoleSite, browser: GuardedBrowser
) -> None:
    assert httpx.post(f"{web.url}/subscribe", data=GOOD).status_code == 200
    (link,) = confirmation_links(web, "nia.lead@example.org")
    for device, width in WIDTHS.items():
        page = new_page(browser, width)
        page.goto(link)
        assert page.get_by_role("button", name="Yes, confirm my subscription").is_visible()
        checked(page, f"signup-confirm-{device}")
    assert contact_row(web, "nia.lead@example.org")["status"] == "pending"  # type: ignore[index]
    page.get_by_role("button", name="Yes, confirm my subscription").click()
    page.wait_for_selector("#result")
    assert page.get_by_role("heading", name="Subscription confirmed").is_visible()
    checked(page, "signup-confirmed-phone")
    assert contact_row(web, "nia.lead@example.org")["status"] == "active"  # type: ignore[index]
