"""The console in a real browser (Playwright and Debian's Chromium), clicking and typing as people do, with
axe-core checking every page and screenshots saved to test-artifacts/."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from needlecast.actions import audience as audience_actions
from needlecast.delivery.outbox import read_outbox
from needlecast.store.delivery import delivery_store
from tests.browser import accessibility_problems, axe_script, chromium_path, save_doc_screenshot, screenshot
from tests.console_site import PASSWORD, SEEDS, ConsoleSite, email_of, sqlite_site

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)"),
]


@pytest.fixture()
def console(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    with sqlite_site(workspace_dir, tmp_path, monkeypatch) as running:
        yield running


class Person:
    """One person at the console: their own browser context (cookies), checking each page they open."""

    def __init__(self, browser: Any, console: ConsoleSite, role: str, *, width: int = 1280) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.console = console
        self.role = role
        self.seen: set[str] = set()

    def check(self, name: str) -> None:
        problems = accessibility_problems(self.page)
        assert problems == [], f"{name}: {problems}"
        screenshot(self.page, f"console-{self.role}-{name}")

    def open(self, path: str, name: str) -> None:
        self.page.goto(f"{self.console.url}{path}")
        self.check(name)

    def log_in(self) -> Person:
        self.page.goto(f"{self.console.url}/console/")
        assert "/console/login" in self.page.url
        self.check("login")
        self.page.get_by_label("Email address").fill(email_of(self.role))
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(re.compile(r".*/console/$"))
        return self

    def log_out(self) -> None:
        self.page.get_by_role("button", name="Log out").click()
        self.page.wait_for_url(re.compile(r".*/console/login.*"))
        self.context.close()


def test_a_marketer_creates_previews_tests_schedules_and_sends_a_campaign(browser: Any, console: ConsoleSite) -> None:
    marketer = Person(browser, console, "marketer").log_in()
    page = marketer.page
    page.get_by_role("link", name="Campaigns", exact=True).click()
    page.wait_for_url(re.compile(r".*/campaigns$"))
    marketer.check("campaigns")
    page.get_by_role("link", name="New campaign").click()
    page.wait_for_url(re.compile(r".*/campaigns/new$"))
    marketer.check("campaign-form")
    save_doc_screenshot(page, "campaign-form")
    page.get_by_label("Id", exact=True).fill("winter-tips")
    page.get_by_label("Name", exact=True).fill("Winter skin tips")
    page.get_by_label("Segment").select_option("all-leads")
    page.get_by_label("Moment", exact=True).fill("2030-01-15T09:00")
    page.get_by_label("Step id").first.fill("tips")
    page.get_by_label("Template", exact=True).first.select_option("emails/broadcast")
    page.get_by_label("A/B subject lines (one per line; two or more make a test)").first.fill(
        "Winter skin, calmer\n{{ first_name }}, your winter skin plan"
    )
    page.get_by_label("A/B split in percent (e.g. 50, 50)").first.fill("70, 20")
    page.get_by_role("button", name="Save the campaign").click()
    error = page.locator("#error-steps-0-ab_split")
    assert "adding up to 100" in error.inner_text()
    marketer.check("campaign-form-error")
    page.get_by_label("A/B split in percent (e.g. 50, 50)").first.fill("50, 50")
    page.get_by_role("button", name="Save the campaign").click()
    page.wait_for_url(re.compile(r".*/console/campaigns/winter-tips.*"))
    assert "Saved Winter skin tips as a draft" in page.inner_text("main")
    assert page.locator("#state").inner_text() == "draft"  # saved in the form: live only once scheduled
    marketer.check("campaign")
    save_doc_screenshot(page, "campaign")

    page.get_by_role("link", name="Preview tips").click()
    page.wait_for_url(re.compile(r".*/preview\?step=tips$"))
    variants = [o.get_attribute("value") for o in page.locator("#variant option").all()]
    assert variants == ["acne", "ageing", "pigmentation", "general"]
    for variant in variants:
        for arm in ("A", "B"):
            page.locator("#variant").select_option(variant)
            page.locator("#arm").select_option(arm)
            page.get_by_role("button", name="Show").click()
            page.wait_for_url(re.compile(rf".*variant={variant}&arm={arm}$"))
            subject = page.locator("#subject").inner_text()
            assert subject == ("Winter skin, calmer" if arm == "A" else "Ana, your winter skin plan"), (variant, arm)
            frame = page.frame_locator("iframe.preview")
            assert "unsubscribe" in frame.locator("body").inner_text().lower()
            assert "Ana" in page.locator("#text-part").inner_text()
    marketer.check("preview")
    save_doc_screenshot(page, "preview", of="main")

    back = page.get_by_role("link", name="Back to winter-tips")
    back.scroll_into_view_if_needed()  # below the preview's iframe, after a full-page screenshot
    back.click()
    page.wait_for_url(re.compile(r".*/console/campaigns/winter-tips$"))
    page.get_by_role("button", name="Send a test").click()
    page.wait_for_url(re.compile(r".*flash=Test.*"))
    assert "Test sent" in page.inner_text("main")
    sent_to = {
        p["to"][0]["email"] for e in read_outbox(console.workspace.outbox_dir) for p in e["request"]["personalizations"]
    }
    assert sent_to == set(SEEDS)

    # The sample article's claims need a reviewer's sign-off before the campaign may go out.
    reviewer = Person(browser, console, "reviewer").log_in()
    reviewer.page.goto(f"{console.url}/console/campaigns/winter-tips")
    reviewer.page.get_by_label("Record your sign-off").fill("Reviewed for the winter pilot")
    reviewer.page.get_by_role("button", name="Record the sign-off").click()
    reviewer.page.wait_for_url(re.compile(r".*flash=Sign-off.*"))
    reviewer.log_out()
    page.reload()
    page.get_by_role("link", name="Schedule").click()
    page.wait_for_url(re.compile(r".*/confirm/schedule$"))
    assert "This is a draft: it becomes live now. This sends" in page.locator("#reach").inner_text()
    marketer.check("confirm-schedule")
    save_doc_screenshot(page, "confirm-schedule", of="main")
    page.get_by_role("button", name="Schedule Winter skin tips").click()
    page.wait_for_url(re.compile(r".*flash=Scheduled.*"))
    assert page.locator("#state").inner_text() == "active"

    page.get_by_role("link", name="Send now").click()
    page.wait_for_url(re.compile(r".*/confirm/send-now$"))
    reach = page.locator("#reach").inner_text()
    people = int(re.search(r"to (\d+) person", reach).group(1))  # type: ignore[union-attr]
    console.senders.finished.clear()
    page.get_by_role("button", name="Send now Winter skin tips").click()
    page.wait_for_url(re.compile(r".*send=started.*"))
    # The send runs in the app's own thread: wait for it to end (an event, not a reload loop: reloading a
    # page while its last reload is still arriving can detach it), then look once.
    assert console.senders.finished.wait(120), "the send to finish"
    page.reload()
    # The page's counts are kept up to `COUNTS_MAX_AGE` seconds: one counted in the send's last moments may
    # still say "Sending now"; the page's own poll then sees the end and reloads it (send-progress.js).
    banner = page.locator("#send-banner")
    expect(banner).to_contain_text("The send has ended", timeout=60_000)
    ended = banner.inner_text()
    assert f"{people} sent" in ended  # the banner ends with the send
    marketer.check("campaign-sent")
    save_doc_screenshot(page, "campaign-sent")
    cells = page.locator("#counts td").all_inner_texts()
    heads = page.locator("#counts th").all_inner_texts()
    assert int(dict(zip(heads, cells, strict=True))["sent"]) == people  # the campaign page shows every email sent
    with console.engine.connect() as conn:
        assert delivery_store(conn).counts(conn, "winter-tips")["sent"] == people

    page.get_by_role("link", name="Pause").click()
    page.wait_for_url(re.compile(r".*/confirm/pause$"))
    page.get_by_role("button", name="Pause Winter skin tips").click()
    page.wait_for_url(re.compile(r".*flash=Paused.*"))
    assert page.locator("#state").inner_text() == "paused"
    page.get_by_role("link", name="Resume").click()
    page.wait_for_url(re.compile(r".*/confirm/resume$"))
    page.get_by_role("button", name="Resume Winter skin tips").click()
    page.wait_for_url(re.compile(r".*flash=Resumed.*"))
    assert page.locator("#state").inner_text() == "active"
    marketer.log_out()


def test_a_reviewer_records_the_sign_off_that_the_gate_asks_for(browser: Any, console: ConsoleSite) -> None:
    path = console.workspace.campaigns_dir / "spring-guide.yaml"
    path.write_text(path.read_text()[: path.read_text().index("signoff:")])
    reviewer = Person(browser, console, "reviewer").log_in()
    page = reviewer.page
    page.get_by_role("link", name="Campaigns", exact=True).click()  # the console opens on the clinic's home
    page.get_by_role("link", name="Spring skin guide").click()
    page.wait_for_url(re.compile(r".*/campaigns/spring-guide$"))
    assert page.locator("#no-signoff").is_visible()
    assert "claim-universality" in page.locator("#findings").inner_text()
    reviewer.check("review")
    save_doc_screenshot(page, "review", of="section:has(#review)")
    page.get_by_label("Record your sign-off").fill("Reviewed: the safety sentence stays for the pilot")
    page.get_by_role("button", name="Record the sign-off").click()
    page.wait_for_url(re.compile(r".*flash=Sign-off.*"))
    assert "Signed off by" in page.inner_text("main") and email_of("reviewer") in page.inner_text("main")
    assert "Reviewed: the safety sentence" in path.read_text()
    reviewer.log_out()


@contextlib.contextmanager
def held_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Console imports that report 120 of 300 rows read, then wait for the event before importing (so a
    test can look at a running import for as long as it likes, whatever the machine's load)."""
    gate = threading.Event()
    real = audience_actions.import_audience

    def held(*args: Any, progress: Any = None, **kwargs: Any) -> Any:
        if progress is not None:
            progress("reading", 120, 300)
        assert gate.wait(120), "the test to let the import go on"
        return real(*args, progress=progress, **kwargs)

    monkeypatch.setattr(audience_actions, "import_audience", held)
    try:
        yield gate
    finally:
        gate.set()


def _open_audiences(page: Any) -> None:
    page.get_by_role("link", name="Audiences").click()
    page.wait_for_url(re.compile(r".*/console/audiences$"))


def _upload_sample(page: Any, console: ConsoleSite) -> None:
    page.get_by_label("Import contacts from a CSV or XLSX file").set_input_files(
        str(console.workspace.audiences_dir / "sample.csv")
    )
    page.get_by_role("button", name="Import", exact=True).click()
    page.wait_for_url(re.compile(r".*/console/imports/\w+$"))


def test_a_marketer_uploads_a_messy_file_downloads_its_rejects_and_opens_a_timeline(
    browser: Any, console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    marketer = Person(browser, console, "marketer").log_in()
    page = marketer.page
    _open_audiences(page)
    marketer.check("audiences")
    save_doc_screenshot(page, "audiences")
    with held_imports(monkeypatch) as gate:
        _upload_sample(page, console)
        # The page follows the running import without reloading itself (axe rates a refresh critical).
        expect(page.locator("#rows-read")).to_have_text("120 of about 300 rows read")
        assert page.locator("#import").get_attribute("data-state") == "running"
        assert page.locator("meta[http-equiv=refresh]").count() == 0
        marketer.check("import-running-1280")
        page.set_viewport_size({"width": 390, "height": 900})
        marketer.check("import-running-390")
        gate.set()
        # The import's end is an element state the page's script sets: waited on, never slept for.
        page.wait_for_selector("#import[data-state=done]", timeout=120_000)
    marketer.check("import-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    marketer.check("import")
    save_doc_screenshot(page, "import")
    assert page.locator("#stage").inner_text() == "Finished"
    assert page.locator("#rows-read").inner_text() == "300 rows read"
    counts = [int(c) for c in page.locator("#import-counts td").all_inner_texts()]
    assert counts[0] == 300 and counts[0] == sum(counts[1:])
    with page.expect_download() as download:
        page.locator("#rejects").click()
    rejects = Path(download.value.path()).read_text(encoding="utf-8")
    assert rejects.startswith("line,reason,") and len(rejects.splitlines()) == counts[4] + 1

    page.get_by_role("link", name="Contacts").click()
    page.wait_for_url(re.compile(r".*/console/contacts$"))
    page.get_by_label("Search by name or address").fill("quinn.1@example.org")
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url(re.compile(r".*/console/contacts/\d+$"))
    assert page.locator("#address").inner_text() == "quinn.1@example.org"
    assert page.locator("#timeline-table").is_visible()
    marketer.check("contact")
    marketer.log_out()


def test_the_import_page_shows_progress_under_the_consoles_own_content_security_policy(
    browser: Any, console: ConsoleSite
) -> None:
    # No CSP bypass here (the accessibility checks need one to inject axe): the real policy must let the
    # page's script poll and show the result, and nothing may be refused.
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    refused: list[str] = []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    page.goto(f"{console.url}/console/login")
    page.get_by_label("Email address").fill(email_of("marketer"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console/$"))
    _open_audiences(page)
    _upload_sample(page, console)
    page.wait_for_selector("#import[data-state=done]", timeout=120_000)
    assert page.locator("#import-counts").is_visible() and page.locator("#rejects").is_visible()
    assert refused == []
    context.close()


@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_every_other_page_works_for_its_role_at_desktop_and_phone_width(
    browser: Any, console: ConsoleSite, role: str
) -> None:
    pages = {
        "analyst": [
            "/console/",
            "/console/campaigns/new-lead-nurture",
            "/console/reports",
            "/console/reports/spring-guide",
            "/console/audiences",
            "/console/contacts",
        ],
        "admin": ["/console/users", "/console/audit", "/console/templates", "/console/templates/emails/welcome"],
    }[role]
    for width in (1280, 390):
        person = Person(browser, console, role, width=width).log_in()
        for path in pages:
            person.open(path, f"{path.strip('/').replace('/', '-') or 'home'}-{width}")
            if width == 1280 and path == "/console/templates/emails/welcome":
                save_doc_screenshot(person.page, "template-editor")
            if width == 1280 and path == "/console/users":
                save_doc_screenshot(person.page, "users")
            if width == 390:
                scroll = person.page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= 420, (path, scroll)  # wide tables scroll inside their box, not the page
        if role == "analyst":
            person.page.goto(f"{console.url}/console/campaigns/spring-guide")
            assert person.page.get_by_role("link", name="Send now").count() == 0  # and the server refuses it
        person.log_out()


def test_a_reviewer_corrects_a_tag_on_the_content_page_and_sees_the_sign_off_go_stale(
    browser: Any, console: ConsoleSite
) -> None:
    path = console.workspace.campaigns_dir / "spring-guide.yaml"
    path.write_text(path.read_text()[: path.read_text().index("signoff:")])
    reviewer = Person(browser, console, "reviewer").log_in()
    page = reviewer.page
    page.get_by_role("link", name="Campaigns", exact=True).click()  # the console opens on the clinic's home
    page.get_by_role("link", name="Spring skin guide").click()
    page.get_by_label("Record your sign-off").fill("Reviewed")
    page.get_by_role("button", name="Record the sign-off").click()
    page.wait_for_url(re.compile(r".*flash=Sign-off.*"))

    page.get_by_role("link", name="Content", exact=True).click()
    page.wait_for_url(re.compile(r".*/console/content$"))
    row = page.locator("#section-microneedling-enhances-product-absorption")
    assert "general" in row.inner_text() and "out of date" not in page.inner_text("main")
    reviewer.check("content")
    row.get_by_role("button", name="Tag Enhances Product Absorption as Acne and scarring").click()
    page.wait_for_url(re.compile(r".*flash=.*"))
    assert "“Enhances Product Absorption” now goes to the acne emails." in page.inner_text("main")
    assert "set by hand" in page.locator("#section-microneedling-enhances-product-absorption").inner_text()
    assert "sign-off out of date" in page.inner_text("main")
    reviewer.check("content-corrected")
    save_doc_screenshot(page, "content")
    phone = Person(browser, console, "reviewer", width=390).log_in()
    phone.open("/console/content", "content-phone")
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
    reviewer.log_out()
