"""The console's settings in a real browser (Playwright and Debian's Chromium), at a desktop's and a phone's
width: an admin changes the clinic's details and the test recipients and the very next test send (through the
outbox, in the app that was running before the change) carries them, with no restart; a mistake is shown
beside its field; an API key is made (shown once), works, and is revoked in the page; an invited person sets
a password through their one-time link. Every page passes axe (no serious or critical finding), has no
horizontal scroll, logs no console error or CSP violation (the `browser` fixture fails the test on one), and
is saved as a screenshot in test-artifacts/."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from needlecast.delivery.outbox import read_outbox
from tests.browser import axe_script, check_page, chromium_path, save_doc_screenshot
from tests.console_site import PASSWORD, ConsoleSite, email_of, sqlite_site

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)"),
]
WIDTHS = [1280, 390]


@pytest.fixture()
def console(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    with sqlite_site(workspace_dir, tmp_path, monkeypatch) as running:
        yield running


def _png(width: int, height: int) -> bytes:
    """A plain PNG of the clinic's colour (a logo to upload)."""
    row = b"\x00" + bytes((47, 72, 88)) * width
    raw = zlib.compress(row * height)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


class Admin:
    """The clinic's administrator in a browser context of their own, at `width`, checking each page seen."""

    def __init__(self, browser: Any, console: ConsoleSite, width: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.console = console
        self.width = width

    def check(self, name: str) -> None:
        check_page(self.page, name, self.width, f"console-settings-{name}-{self.width}")

    def log_in(self, email: str = email_of("admin"), password: str = PASSWORD) -> Admin:
        self.page.goto(f"{self.console.url}/console/")
        self.page.get_by_label("Email address").fill(email)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(re.compile(r".*/console/$"))
        return self

    def open_settings(self) -> None:
        self.page.goto(f"{self.console.url}/console/settings")  # the nav's link: checked by the HTTP tests


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_changes_the_clinics_details_and_the_next_test_send_carries_them(
    browser: Any, console: ConsoleSite, width: int
) -> None:
    admin = Admin(browser, console, width).log_in()
    page = admin.page
    page.get_by_role("link", name="Settings", exact=True).click()
    page.wait_for_url(re.compile(r".*/console/settings$"))
    admin.check("page")
    if width == 1280:
        save_doc_screenshot(page, "settings")

    page.get_by_label("Sender address").fill("care@clinic")  # the browser takes it; the server does not
    page.get_by_role("button", name="Save the sender").click()
    assert "is not an email address" in page.locator("#error-sender_email").inner_text()
    admin.check("field-error")

    admin.open_settings()
    page.get_by_label("Clinic name").fill("Glow Skin Clinic")
    page.get_by_label("Postal address").fill("2 Mill Lane, Bath BA1 1AA, United Kingdom")
    page.get_by_role("button", name="Save the clinic's details").click()
    page.wait_for_url(re.compile(r".*/console/settings\?saved=clinic.*"))
    assert "The clinic's details are saved" in page.locator("#saved-clinic").inner_text()
    page.get_by_label("Logo image (PNG, JPEG or GIF, under 1 MB)").set_input_files(
        files=[{"name": "glow.png", "mimeType": "image/png", "buffer": _png(160, 60)}]
    )
    page.get_by_role("button", name="Upload the logo").click()
    page.wait_for_url(re.compile(r".*/console/settings\?saved=logo.*"))
    assert page.locator("img.logo").evaluate("img => img.naturalWidth") == 160
    page.get_by_label("Who gets a test email").fill("owner@glow.example")
    page.get_by_role("button", name="Save the test recipients").click()
    page.wait_for_url(re.compile(r".*/console/settings\?saved=tests.*"))
    assert "The test recipients are saved" in page.locator("#saved-tests").inner_text()
    assert page.get_by_label("Clinic name").input_value() == "Glow Skin Clinic"
    admin.check("saved")

    # The app running since before the change sends the next test with the new details: no restart.
    page.goto(f"{console.url}/console/campaigns/spring-guide")
    page.get_by_role("button", name="Send a test").click()
    page.wait_for_url(re.compile(r".*flash=Test.*"))
    requests = [entry["request"] for entry in read_outbox(console.workspace.outbox_dir)]
    assert {p["to"][0]["email"] for r in requests for p in r["personalizations"]} == {"owner@glow.example"}
    for request in requests:
        html = next(c["value"] for c in request["content"] if c["type"] == "text/html")
        assert "2 Mill Lane, Bath BA1 1AA" in html and "14 Harbour Walk" not in html
    page.goto(f"{console.url}/console/campaigns/spring-guide/preview")
    assert (
        "Glow Skin Clinic"
        in page.locator("main").inner_text() + page.frame_locator("iframe.preview").locator("body").inner_text()
    )
    admin.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_makes_an_api_key_that_works_and_revokes_it_in_the_page(
    browser: Any, console: ConsoleSite, width: int
) -> None:
    admin = Admin(browser, console, width).log_in()
    page = admin.page
    admin.open_settings()
    page.get_by_role("link", name="API keys").first.click()
    page.wait_for_url(re.compile(r".*/console/settings/keys$"))
    admin.check("keys-empty")
    page.get_by_label("Name (who or what uses it)").fill("Reception dashboard")
    page.get_by_label("Read campaigns").check()
    page.get_by_label("Read reports").check()
    page.get_by_role("button", name="Make the key").click()
    key = page.get_by_label("The key").input_value()
    assert key.startswith("nc_")
    admin.check("key-made")
    api = httpx.Client(base_url=f"{console.url}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert api.get("/campaigns").status_code == 200

    page.goto(f"{console.url}/console/settings/keys")
    assert key not in page.content()  # shown once
    row = page.locator("#keys tbody tr", has_text="Reception dashboard")
    assert "Read campaigns, Read reports" in row.inner_text()
    page.get_by_role("button", name="Revoke Reception dashboard").click()
    page.wait_for_url(re.compile(r".*/console/settings/keys\?flash=.*"))
    assert "Revoked" in page.locator("#keys tbody tr", has_text="Reception dashboard").inner_text()
    admin.check("key-revoked")
    assert api.get("/campaigns").status_code == 401
    api.close()
    admin.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_an_invited_person_sets_a_password_through_the_link_and_logs_in(
    browser: Any, console: ConsoleSite, width: int
) -> None:
    admin = Admin(browser, console, width).log_in()
    page = admin.page
    page.goto(f"{console.url}/console/users")
    page.locator("#invite-email").fill("new.nurse@clinic.example")
    page.locator("#invite-role").select_option("analyst")
    page.get_by_role("button", name="Make an invitation link").click()
    link = page.get_by_label("The link").input_value()
    admin.check("invited")
    admin.context.close()

    person = Admin(browser, console, width)
    person.page.goto(link)
    assert "as analyst" in person.page.locator("main").inner_text()
    person.check("welcome")
    person.page.get_by_label("New password (at least 12 characters)").fill("my own long password")
    person.page.get_by_label("The same password again").fill("my own long password")
    person.page.get_by_role("button", name="Set my password").click()
    assert "Your password is set" in person.page.locator("#welcome-done").inner_text()
    person.page.get_by_role("link", name="Log in").click()
    person.page.get_by_label("Email address").fill("new.nurse@clinic.example")
    person.page.get_by_label("Password").fill("my own long password")
    person.page.get_by_role("button", name="Log in").click()
    person.page.wait_for_url(re.compile(r".*/console/$"))
    person.context.close()
