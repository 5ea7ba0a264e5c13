"""The email builder in a real browser (Playwright and Debian's Chromium), at a desktop's and a phone's width:
a marketer starts a new email from the templates page, types into its blocks and sees the preview follow
(no reload), adds an image (uploaded, with its words) and a divider, moves blocks, previews it for a concern
at a phone's width, and saves it; the saved files are what a campaign sends. Every page passes axe (no
serious or critical finding), has no horizontal scroll, logs no console error or CSP violation (the
`browser` fixture fails the test on one), and is saved as a screenshot in test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.browser import ConsoleVisitor, axe_script, chromium_path, screenshot
from tests.console_site import ConsoleSite, sqlite_site
from tests.test_email_builder import png

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)"),
    pytest.mark.database_independent,
]
WIDTHS = [1280, 390]


@pytest.fixture()
def console(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    with sqlite_site(workspace_dir, tmp_path, monkeypatch) as running:
        yield running


class Marketer(ConsoleVisitor):
    """A marketer at the email builder (`ConsoleVisitor`: each page seen is checked)."""

    shots = "console-email-builder"

    def __init__(self, browser: Any, console: ConsoleSite, width: int) -> None:
        super().__init__(browser, console, "marketer", width)

    def look_at_preview(self, name: str) -> None:
        """A screenshot of the preview as the marketer sees it, scrolled to (a phone shows it below the blocks)."""
        self.page.evaluate("document.getElementById('preview-title').scrollIntoView()")
        self.page.frame_locator("#preview-frame").locator("h1").wait_for()  # the frame has painted its email
        screenshot(self.page, f"console-email-builder-{name}-{self.width}", full_page=False)

    def previewed(self) -> str:
        """The preview's HTML once it shows the blocks as they are now."""
        self.page.wait_for_selector("#preview[data-state=shown]")
        return str(self.page.get_attribute("#preview-frame", "srcdoc"))

    def press(self, name: str) -> None:
        """Press a button that posts the form, and wait for the page that comes back (its document: the email's
        own images in the preview frame, such as the clinic's logo on its website, are not the test's)."""
        button = self.page.get_by_role("button", name=name, exact=True)
        button.scroll_into_view_if_needed()
        with self.page.expect_navigation(wait_until="domcontentloaded"):
            button.click()

    def kinds(self) -> list[str]:
        return [str(k) for k in self.page.locator("li.block").evaluate_all("els => els.map(e => e.dataset.block)")]


@pytest.mark.parametrize("width", WIDTHS)
def test_a_marketer_builds_an_email_from_blocks_sees_the_preview_follow_and_saves_it(
    browser: Any, console: ConsoleSite, width: int
) -> None:
    marketer = Marketer(browser, console, width)
    page = marketer.page
    page.goto(f"{console.url}/console/templates")
    marketer.check("templates")
    page.get_by_label("Name of the new email").fill("spring-offer")
    page.get_by_role("button", name="Start building").click()
    page.wait_for_url(re.compile(r".*/email-builder/new\?name=spring-offer$"))
    assert marketer.kinds() == ["heading", "text", "section", "button", "footer"]
    marketer.check("new")

    page.locator("#blocks-0-text").fill("Spring at [clinic name]")
    page.locator("#blocks-1-text").fill("Hello [first name], our spring offer is here.\n\nIt is our best yet.")
    shown = marketer.previewed()
    assert "Spring at Lumen Skin Clinic" in shown and "our spring offer is here." in shown  # no reload
    assert "Hello Ana," in page.locator("#preview-text").inner_text()

    page.get_by_label("Add a block").select_option(label="Image")
    marketer.press("Add the block")
    assert marketer.kinds() == ["heading", "text", "section", "button", "image", "footer"]
    with page.expect_navigation(wait_until="domcontentloaded"):  # choosing the file uploads it
        page.locator("#blocks-4-file").set_input_files(
            {"name": "Treatment room.png", "mimeType": "image/png", "buffer": png(600, 300)}
        )
    assert page.locator("img.block-image").count() == 1
    assert "Not shown until finished: 5. Image." in page.locator("#preview-left-out").inner_text()
    page.get_by_label("Describe the image (for readers who cannot see it)").fill("Our bright treatment room")
    assert 'alt="Our bright treatment room"' in marketer.previewed()
    marketer.press("Move up: block 5")  # the image above the button
    assert marketer.kinds() == ["heading", "text", "section", "image", "button", "footer"]
    page.get_by_label("Add a block").select_option(label="Divider")
    marketer.press("Add the block")
    marketer.press("Move up: block 6")
    assert marketer.kinds() == ["heading", "text", "section", "image", "divider", "button", "footer"]
    assert page.locator("#blocks-0-text").input_value() == "Spring at [clinic name]"  # kept through each press

    page.get_by_label("For readers interested in").select_option(label="Acne and scarring")
    page.get_by_label("Screen").select_option("phone")
    shown = marketer.previewed()
    assert "Improves Acne and Scarring" in shown  # the acne readers' own section of the article
    frame = page.locator("#preview-frame")
    assert "phone" in str(frame.get_attribute("class"))
    assert frame.evaluate("f => f.getBoundingClientRect().width") <= 375
    marketer.check("phone-preview")
    marketer.look_at_preview("phone-preview-seen")

    marketer.press("Save the email")
    assert "Saved." in page.locator("main").inner_text()
    marketer.check("saved")
    emails = console.workspace.templates_dir / "emails"
    text = (emails / "spring-offer.txt").read_text()
    assert "Spring at {{ clinic.name }}" in text and "Book a consultation: {{ clinic.booking_url }}" in text
    assert 'alt="Our bright treatment room"' in (emails / "spring-offer.html").read_text()
    stored = yaml.safe_load((emails / "spring-offer.blocks.yaml").read_text())
    assert [b["kind"] for b in stored["blocks"]] == marketer.kinds()
