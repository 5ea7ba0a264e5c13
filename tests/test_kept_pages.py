"""The console's pages and the figures they keep (`readmodels.kept`): a page never waits for a heavy figure.
Nothing worked out yet shows a placeholder in words (and the page's own script, no inline one, puts the figure
in place); a kept figure older than a change is shown with when it was worked out; and what a send confirms is
always counted afresh, never read from a kept figure."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from needlecast.audience.importer import import_file
from needlecast.content.loader import load_vocabulary_for
from needlecast.readmodels import campaigns as campaigns_read
from needlecast.readmodels.kept import KEPT, run_inline
from tests.browser import chromium_path, screenshot
from tests.console_site import PASSWORD, ConsoleSite, email_of, site

NO_CONSENT = "email,first_name,concern,marketing_consent,concern_consent\n" + "".join(
    f"later{i}@example.org,Later,acne,no,no\n" for i in range(5)
)
WORKING = 'data-figure-state="working"'
SENDS = re.compile(r"This sends (\d+) email\(s\) to (\d+) person\(s\) now\. Not sent: (\d+) have not agreed")
EXCLUDED = re.compile(r"not sent: <strong>(\d+)</strong> have not agreed to marketing email")


class Held:
    """A `run_later` that holds each background computation until the test runs it: what a page shows
    while its figure is being worked out, without sleeping."""

    def __init__(self) -> None:
        self.work: list[Callable[[], None]] = []

    def __call__(self, work: Callable[[], None]) -> None:
        self.work.append(work)

    def run(self) -> None:
        while self.work:
            self.work.pop(0)()


@pytest.fixture()
def console(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, store_url) as running:
        yield running


def _plan_part(page: str) -> str:
    start = page.index('id="plan-part"')
    return page[start : page.index("</section>", start)]


def test_the_campaign_page_shows_a_placeholder_until_its_plan_is_worked_out_then_the_plan(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held()
    monkeypatch.setattr(KEPT, "run_later", held)
    monkeypatch.setattr(campaigns_read, "COUNTS_MAX_AGE", 3600.0)  # only the plan is worked out off the request
    marketer = console.login("marketer")
    waiting = marketer.get("/console/campaigns/spring-guide")
    assert waiting.status_code == 200
    part = _plan_part(waiting.text)
    assert WORKING in part and "Working out who gets this email… This page updates when it is ready." in part
    assert 'id="plan-excluded"' not in part and 'id="counts"' in waiting.text  # the rest of the page is there
    assert 'src="/console/static/figures-pending.js"' in waiting.text
    assert "<script>" not in waiting.text  # no inline script: the CSP stays strict
    assert "script-src 'self'" in waiting.headers["content-security-policy"]
    assert "unsafe-inline" not in waiting.headers["content-security-policy"].split("script-src")[1].split(";")[0]
    assert "Checking the campaign&#39;s emails and articles… This page updates when it is ready." in waiting.text
    assert len(held.work) == 2  # the plan and the content checks, each once
    marketer.get("/console/campaigns/spring-guide")  # asked again while they are worked out: not a second time
    assert len(held.work) == 2

    held.run()
    ready = marketer.get("/console/campaigns/spring-guide").text
    part = _plan_part(ready)
    assert WORKING not in part and 'data-figure-state="current"' in part and 'id="plan-excluded"' in part
    assert "figures-pending.js" not in ready and WORKING not in ready
    assert marketer.get("/console/static/figures-pending.js").status_code == 200


def test_the_audiences_page_shows_a_placeholder_until_the_segments_are_counted(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held()
    monkeypatch.setattr(KEPT, "run_later", held)
    marketer = console.login("marketer")
    waiting = marketer.get("/console/audiences").text
    assert "Counting every segment&#39;s members… This page updates when it is ready." in waiting
    assert 'id="segments"' not in waiting and 'id="upload"' in waiting  # the rest of the page is there
    held.run()
    counted = marketer.get("/console/audiences").text
    assert 'id="segments"' in counted and "Sizes as of <time" in counted and "updating" not in counted


def test_a_send_confirmation_counts_a_change_the_kept_plan_does_not_show_yet(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    marketer = console.login("marketer")
    kept_page = marketer.get("/console/campaigns/spring-guide").text  # the plan worked out and kept
    kept_excluded = EXCLUDED.search(_plan_part(kept_page))
    before = SENDS.search(marketer.get("/console/campaigns/spring-guide/confirm/send-now").text)
    assert kept_excluded is not None and before is not None
    assert before.group(3) == kept_excluded.group(1)

    held = Held()
    monkeypatch.setattr(KEPT, "run_later", held)  # from now on, nothing kept is worked out again
    leads = tmp_path / "later.csv"
    leads.write_text(NO_CONSENT)  # five more people who have not agreed to marketing email
    import_file(console.engine, leads, load_vocabulary_for(console.workspace))

    stale = _plan_part(marketer.get("/console/campaigns/spring-guide").text)
    assert 'data-figure-state="updating"' in stale and "so it is being planned again" in stale
    assert EXCLUDED.search(stale).group(1) == kept_excluded.group(1)  # type: ignore[union-attr]
    after = SENDS.search(marketer.get("/console/campaigns/spring-guide/confirm/send-now").text)
    assert after is not None  # counted now, after every rule: the five new people are in it
    assert int(after.group(3)) == int(before.group(3)) + 5
    assert (after.group(1), after.group(2)) == (before.group(1), before.group(2))

    monkeypatch.setattr(KEPT, "run_later", run_inline)
    held.run()
    fresh = _plan_part(marketer.get("/console/campaigns/spring-guide").text)
    assert 'data-figure-state="current"' in fresh
    assert EXCLUDED.search(fresh).group(1) == after.group(3)  # type: ignore[union-attr]


def _placeholder_then_table(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch, role: str, path: str, words: str, table: str
) -> tuple[Held, Any, str, str]:
    """`path` as `role` while its kept figure is held back: the placeholder saying `words`, no `table`, the
    page's own script that fetches it again; then, the figure worked out, the table and when it was worked
    out. Returns the holder, the logged-in client, and the page before and after."""
    held = Held()
    monkeypatch.setattr(KEPT, "run_later", held)
    client = console.login(role)
    waiting = client.get(path)
    assert waiting.status_code == 200
    assert f"{words} This page updates when it is ready." in waiting.text
    assert WORKING in waiting.text and f'id="{table}"' not in waiting.text
    assert 'src="/console/static/figures-pending.js"' in waiting.text
    held.run()
    counted = client.get(path).text
    assert f'id="{table}"' in counted and WORKING not in counted and "Figures as of <time" in counted
    return held, client, waiting.text, counted


def test_the_reports_list_shows_a_placeholder_until_the_sent_emails_are_counted(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = "Counting every email sent and what each one earned…"
    _placeholder_then_table(console, monkeypatch, "marketer", "/console/reports", words, "table-compare")


def test_the_cohorts_page_shows_a_placeholder_until_its_tables_are_worked_out_then_keeps_them(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The cohorts and revenue tables read every contact, email and booking (8 s at 200,000 contacts): kept,
    never worked out while a page waits, and worked out again when a new lead arrives."""
    words = "Following every lead from signup to booking…"
    held, analyst, waiting, counted = _placeholder_then_table(
        console, monkeypatch, "analyst", "/console/reports/cohorts", words, "table-cohorts"
    )
    assert 'id="by"' in waiting
    assert "updating" not in counted
    leads = tmp_path / "new-lead.csv"
    leads.write_text(
        "email,first_name,concern,marketing_consent,concern_consent\nnew.lead@example.org,New,acne,yes,yes\n"
    )
    import_file(console.engine, leads, load_vocabulary_for(console.workspace))
    later = analyst.get("/console/reports/cohorts").text  # the kept tables at once, worked out again meanwhile
    assert 'id="table-cohorts"' in later and "; updating." in later and len(held.work) == 1


def test_a_campaigns_report_shows_a_placeholder_until_it_is_worked_out_and_a_missing_one_is_404_at_once(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A campaign's report reads every email and event of the campaign: kept, never worked out while a page
    waits; a campaign the workspace does not define is a 404 at once, nothing kept for it."""
    held = Held()
    monkeypatch.setattr(KEPT, "run_later", held)
    analyst = console.login("analyst")
    waiting = analyst.get("/console/reports/spring-guide")
    assert waiting.status_code == 200
    assert "Counting this campaign&#39;s emails and what each one earned… This page updates" in waiting.text
    assert WORKING in waiting.text and 'id="chart-funnel"' not in waiting.text and "report.csv" in waiting.text
    assert analyst.get("/console/reports/no-such-campaign").status_code == 404
    assert len(held.work) == 1
    held.run()
    shown = analyst.get("/console/reports/spring-guide").text
    assert WORKING not in shown and "Figures as of <time" in shown and 'id="t-' in shown


@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_pages_own_script_puts_the_plan_in_place_when_it_is_worked_out(
    browser: Any, console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held()
    monkeypatch.setattr(KEPT, "run_later", held)
    monkeypatch.setattr(campaigns_read, "COUNTS_MAX_AGE", 3600.0)
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # under the console's own CSP
    page = context.new_page()
    page.goto(f"{console.url}/console/login")
    page.get_by_label("Email address").fill(email_of("marketer"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console/$"))
    page.goto(f"{console.url}/console/campaigns/spring-guide")
    assert page.locator('#plan-part[data-figure-state="working"]').is_visible()
    assert page.get_by_text("Working out who gets this email…").is_visible()
    screenshot(page, "campaign-plan-working-1280")
    page.set_viewport_size({"width": 390, "height": 900})
    screenshot(page, "campaign-plan-working-390")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1280, "height": 900})
    held.run()  # the plan and the checks are worked out; the page is not reloaded by the test
    page.wait_for_selector("body[data-figures=ready]", timeout=60_000)
    assert page.locator('#plan-part[data-figure-state="current"] #plan-as-of').is_visible()
    assert page.locator('#findings-part[data-figure-state="current"]').is_visible()
    assert not page.get_by_text("Working out who gets this email…").is_visible()
    screenshot(page, "campaign-plan-ready-1280")
    context.close()
