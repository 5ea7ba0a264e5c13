"""The journey editor in a real browser (Playwright and Debian's Chromium), at a desktop's and a phone's width: a
marketer builds a small journey by clicking and typing (a send row, a wait row, another send, a row moved up),
saves it, finds it written as the loader reads it, edits it (a mistake shown beside its field, then fixed);
and edits a live journey: the page says who waits where and what the change does, and the save goes once the
removed step's people have a destination. Every page passes axe (no serious or critical finding), has no
horizontal scroll, logs no console error or CSP violation (the `browser` fixture fails the test on one), and
is saved as a screenshot in test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.journeys.sweeper import sweep_all
from tests.browser import ConsoleVisitor, axe_script, chromium_path, screenshot
from tests.console_site import PASSWORD, ConsoleSite, email_of, sqlite_site

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)"),
]
WIDTHS = [1280, 390]
RECALL = """id: recall
name: Recall
kind: journey
segment: all-leads
time_zone: Europe/London
signoff: {reviewer: QA, date: 2026-11-24, note: test content}
steps:
  - {id: pause, kind: wait, delay: 3d}
  - {id: hello, template: emails/welcome}
"""


@pytest.fixture()
def console(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    with sqlite_site(workspace_dir, tmp_path, monkeypatch, quiet_hours_off=False) as running:
        yield running


class Marketer(ConsoleVisitor):
    """A marketer at the journey builder (`ConsoleVisitor`: each page seen is checked)."""

    shots = "console-journeys"

    def __init__(self, browser: Any, console: ConsoleSite, width: int) -> None:
        super().__init__(browser, console, "marketer", width)

    def builder_ready(self) -> None:
        self.page.wait_for_selector("#journey-builder[data-state=ready]")

    def checked(self) -> str:
        """What the builder's live check says once it has checked the rows as they are now."""
        self.page.wait_for_selector("#journey-builder[data-state=checked]")
        return str(self.page.locator("#live-check").inner_text())

    def row(self, index: int) -> Any:
        return self.page.locator("[data-row]").nth(index)


def _nodes(console: ConsoleSite, journey_id: str) -> list[str]:
    ctx = CampaignContext.load(console.workspace)
    assert not ctx.problems, ctx.problems
    journey = ctx.campaigns[journey_id].journey
    assert journey is not None
    return list(journey.nodes)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_marketer_builds_a_journey_by_clicking_and_typing_saves_it_and_edits_it(
    browser: Any, console: ConsoleSite, width: int
) -> None:
    marketer = Marketer(browser, console, width)
    page = marketer.page
    page.goto(f"{console.url}/console/campaigns")
    page.get_by_role("link", name="New journey").click()
    page.wait_for_url(re.compile(r".*/console/journeys/new$"))
    marketer.builder_ready()
    assert page.locator("[data-row]").count() == 1  # one empty row to start from
    page.get_by_label("Id", exact=True).fill("first-visit")
    page.get_by_label("Name", exact=True).fill("First visit")
    page.get_by_label("Who may be in it (segment)").select_option("all-leads")
    page.get_by_label("Goal: the event that ends it as a success (optional, e.g. booked)").fill("booked")
    first = marketer.row(0)
    first.get_by_label("Step name").fill("hello")
    first.get_by_label("What it does").select_option("send")
    first.get_by_label("Email", exact=True).select_option("emails/welcome")
    first.get_by_label("Subject (empty: the email's own)").fill("Welcome to the clinic")
    assert first.get_by_label("How long (e.g. 3d, 12h, 2w)").is_hidden()  # only a send row's fields show

    page.get_by_role("button", name="Add a step").click()
    second = marketer.row(1)
    second.get_by_label("Step name").fill("tips")
    second.get_by_label("What it does").select_option("send")
    second.get_by_label("Email", exact=True).select_option("emails/deep_dive")

    page.get_by_role("button", name="Add a step").click()
    third = marketer.row(2)
    third.get_by_label("Step name").fill("pause")
    third.get_by_label("What it does").select_option("wait")
    assert (
        third.get_by_label("Email", exact=True).is_hidden()
        and third.get_by_label("Time of day (their zone)").is_hidden()
    )
    third.get_by_label("How long (e.g. 3d, 12h, 2w)").fill("2d")
    third.get_by_role("button", name="Move up: pause").click()  # the wait goes between the two emails
    assert marketer.row(1).get_by_label("Step name").input_value() == "pause"
    assert marketer.row(1).locator("legend").first.inner_text() == "Step 2"
    assert marketer.checked() == "Looks right: ready to save."
    marketer.check("builder")

    page.get_by_role("button", name="Save the journey").click()
    page.wait_for_url(re.compile(r".*/console/campaigns/first-visit\?.*"))
    assert "Saved the journey first-visit as a draft" in page.locator(".notice").first.inner_text()
    assert _nodes(console, "first-visit") == ["hello", "pause", "tips"]
    marketer.check("saved")

    page.get_by_role("link", name="Edit this journey").click()
    page.wait_for_url(re.compile(r".*/console/journeys/first-visit/edit$"))
    marketer.builder_ready()
    assert page.locator("[data-row]").count() == 3  # the spare empty rows are for a browser without scripts
    marketer.row(1).get_by_label("How long (e.g. 3d, 12h, 2w)").fill("three days")
    assert marketer.checked().startswith("Step 2, How long: 'three days' is not a length of time")
    page.get_by_role("button", name="Save the journey").click()
    error = page.locator("#error-n-1-delay")
    assert "'three days' is not a length of time" in error.inner_text() and "3d" in error.inner_text()
    marketer.builder_ready()
    assert marketer.row(1).get_by_label("How long (e.g. 3d, 12h, 2w)").is_visible()
    marketer.check("row-error")
    marketer.row(1).get_by_label("How long (e.g. 3d, 12h, 2w)").fill("3d")
    page.get_by_role("button", name="Save the journey").click()
    page.wait_for_url(re.compile(r".*/console/campaigns/first-visit\?.*"))
    assert "delay: 3d" in (console.workspace.campaigns_dir / "first-visit.yaml").read_text()


@pytest.mark.parametrize("width", WIDTHS)
def test_a_marketer_edits_a_live_journey_and_chooses_where_a_removed_steps_people_go(
    browser: Any, console: ConsoleSite, width: int
) -> None:
    (console.workspace.campaigns_dir / "recall.yaml").write_text(RECALL)
    sweep_all(console.engine, CampaignContext.load(console.workspace), datetime.now(UTC))
    marketer = Marketer(browser, console, width)
    page = marketer.page
    page.goto(f"{console.url}/console/campaigns/recall")
    page.get_by_role("link", name="Edit this journey").click()
    marketer.builder_ready()
    first = marketer.row(0)
    assert "people wait here now" in first.locator(".waiting-here").inner_text()
    marketer.check("live-form")
    first.get_by_label("Step name").fill("short")
    first.get_by_label("How long (e.g. 3d, 12h, 2w)").fill("1d")
    assert "people are in it now: before anything is saved, the next page shows" in marketer.checked()
    page.get_by_role("button", name="Save the journey").click()
    page.wait_for_selector("#journey-confirm")
    assert "people are in this journey now" in page.locator("#waiting-note").inner_text()
    assert "'pause' is removed" in page.locator("#change-lines").inner_text()
    marketer.check("confirm")
    page.get_by_role("button", name="Save this version").click()
    assert "choose a step for them" in page.locator("#error-move-pause").inner_text()
    marketer.check("confirm-refused")
    page.get_by_label(re.compile(r"at “pause” go")).select_option("short")
    page.get_by_role("button", name="Save this version").click()
    page.wait_for_url(re.compile(r".*/console/campaigns/recall\?.*"))
    assert "version 1" in page.locator(".notice").first.inner_text()
    assert _nodes(console, "recall") == ["short", "hello"]
    marketer.check("live-saved")


def test_the_journey_form_works_without_javascript(browser: Any, console: ConsoleSite) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{console.url}/console/login")
    page.get_by_label("Email address").fill(email_of("marketer"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console/$"))
    page.goto(f"{console.url}/console/journeys/new")
    assert page.locator("[data-row]").count() == 2  # the spare rows take new steps
    page.get_by_label("Id", exact=True).fill("no-script")
    page.get_by_label("Who may be in it (segment)").select_option("all-leads")
    first, second = page.locator("[data-row]").nth(0), page.locator("[data-row]").nth(1)
    first.get_by_label("Step name").fill("hello")
    first.get_by_label("What it does").select_option("send")
    first.get_by_label("Email", exact=True).select_option("emails/welcome")
    second.get_by_label("Step name").fill("pause")
    second.get_by_label("What it does").select_option("wait")
    second.get_by_label("How long (e.g. 3d, 12h, 2w)").fill("1w")
    page.get_by_role("button", name="Save the journey").click()
    page.wait_for_url(re.compile(r".*/console/campaigns/no-script\?.*"))
    assert _nodes(console, "no-script") == ["hello", "pause"]
    page.goto(f"{console.url}/console/journeys/no-script/edit")
    assert page.locator("[data-row]").count() == 4  # its two steps and two spare rows
    screenshot(page, "console-journeys-no-script-1280")


@pytest.mark.parametrize("width", WIDTHS)
def test_every_kind_of_step_shows_only_its_own_fields(browser: Any, console: ConsoleSite, width: int) -> None:
    from tests.test_console_journey_edit import EVERY_KIND

    (console.workspace.campaigns_dir / "recall.yaml").write_text(EVERY_KIND)
    marketer = Marketer(browser, console, width)
    page = marketer.page
    page.goto(f"{console.url}/console/journeys/recall/edit")
    marketer.builder_ready()
    route = marketer.row(3)
    assert route.get_by_label("Step name").input_value() == "route"
    second_path = route.locator("[data-path]").nth(1)
    assert second_path.get_by_label("And (optional)").input_value() == "tag"
    assert second_path.get_by_label("Concern (e.g. acne)").input_value() == "ageing"  # each condition its boxes
    assert second_path.get_by_label("Tag", exact=True).input_value() == "vip"
    assert second_path.locator("[data-cond-part=name]").first.is_hidden()
    second_path.get_by_label("When").select_option("event")
    assert second_path.get_by_label("Event (e.g. no_show)").is_visible()
    assert "'ageing' is not a length of time" in marketer.checked()  # its value is now "within"
    second_path.get_by_label("When").select_option("concern")
    assert route.get_by_label("Percent").first.is_hidden() and route.get_by_label("Email", exact=True).is_hidden()
    split = marketer.row(4)
    assert split.get_by_label("Percent").first.input_value() == "30" and split.get_by_label("When").first.is_hidden()
    split.get_by_role("button", name="Add a path").click()
    assert split.locator("[data-path]").count() == 4 and split.locator("legend").last.inner_text() == "Path 4"
    assert marketer.row(2).get_by_label("The email of step").input_value() == "recall-mail"
    assert marketer.row(2).get_by_label("Event", exact=True).is_hidden()
    assert marketer.checked() == "Looks right: ready to save."
    marketer.check("every-kind")
