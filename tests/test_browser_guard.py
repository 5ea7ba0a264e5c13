"""The browser tests' guard (`tests.browser.guarded`, which conftest's `browser` fixture gives every browser test)
fails a test on what a person's browser would log; run on the session's Chromium, as the fixture runs. That
Chromium runs without the features Playwright switches off, and without the per-window work no test needs. Its
accessibility check (`accessibility_problems`) reports every serious and critical axe-core finding, and runs only
the rules that can make one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import (
    GRAVE_RULES,
    UNNEEDED_FEATURES,
    SessionChromium,
    accessibility_problems,
    axe_results,
    axe_script,
    chromium_path,
    guarded,
)

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)"
)

SITE = "http://127.0.0.1:9"  # answered by the page's route: nothing listens there
PAGE = '<!doctype html><html lang="en"><title>t</title><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="">'


def test_a_csp_violation_a_console_error_and_an_uncaught_error_each_fail_the_test(chromium: SessionChromium) -> None:
    with pytest.raises(AssertionError) as failed, guarded(chromium.browser()) as browser:
        page = browser.new_context().new_page()
        page.route(
            f"{SITE}/**",
            lambda route: route.fulfill(
                body=PAGE, content_type="text/html", headers={"Content-Security-Policy": "img-src 'self'"}
            ),
        )
        page.route(f"{SITE}/missing.png", lambda route: route.fulfill(status=404, body=""))
        with page.expect_console_message(lambda message: "CSP violation" in message.text):
            page.goto(f"{SITE}/page?x=1")
        with page.expect_console_message():
            page.evaluate("console.error('a script went wrong')")
        with page.expect_console_message(lambda message: "404" in message.text):
            page.evaluate("document.body.append(Object.assign(new Image(), {src: '/missing.png', alt: ''}))")
        with page.expect_event("pageerror"):
            page.evaluate("setTimeout(() => { throw new Error('nobody caught this') }, 0)")
    report = str(failed.value)
    assert "/page?x=1: console error: CSP violation: img-src blocked data" in report
    assert "/page?x=1: console error: a script went wrong" in report
    assert "/page?x=1: uncaught error: " in report and "nobody caught this" in report
    missing = "Failed to load resource: the server responded with a status of 404 (Not Found)"
    assert f"/page?x=1: console error: {missing} ({SITE}/missing.png)" in report


def test_a_quiet_page_passes(chromium: SessionChromium) -> None:
    with guarded(chromium.browser()) as browser:
        page = browser.new_context().new_page()
        page.route(f"{SITE}/**", lambda route: route.fulfill(body=PAGE, content_type="text/html"))
        page.goto(f"{SITE}/")
        assert page.locator("img").count() == 1


def test_the_sessions_chromium_keeps_playwrights_switched_off_features_and_builds_no_address_bar_popups(
    chromium: SessionChromium,
) -> None:
    browser = chromium.browser()
    session = browser.new_browser_cdp_session()
    processes = session.send("SystemInfo.getProcessInfo")["processInfo"]
    (pid,) = [process["id"] for process in processes if process["type"] == "browser"]
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    lists = [
        argument.split("=", 1)[1].split(",") for argument in arguments if argument.startswith("--disable-features=")
    ]
    assert len(lists) == 2  # Playwright's, then the one Chromium heeds
    assert set(lists[0]) | set(UNNEEDED_FEATURES) == set(lists[-1])
    with guarded(browser) as guarded_browser:
        guarded_browser.new_context().new_page().goto("data:text/html,<title>t</title>")
        kinds = [target["type"] for target in session.send("Target.getTargets")["targetInfos"]]
    assert kinds == ["page"]  # with them on: two "browser_ui" targets (the popups) per window


# Serious and critical findings (an image with no alt text, a button with no name, grey on white) on a page
# that also has moderate ones only (no main landmark, content outside every landmark, a skipped heading level).
GRAVE_AND_MODERATE = (
    '<!doctype html><html lang="en"><title>t</title><h1>Clinic</h1><h4>Skipped a level</h4>'
    '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><button></button>'
    '<p style="color:#ccc;background:#fff">Barely readable</p>'
)
MODERATE_ONLY = '<!doctype html><html lang="en"><title>t</title><h1>Clinic</h1><h4>Skipped a level</h4><p>Text</p>'


@pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it)")
def test_the_accessibility_check_reports_every_grave_finding_and_runs_no_rule_that_cannot_make_one(
    chromium: SessionChromium,
) -> None:
    with guarded(chromium.browser()) as browser:
        page = browser.new_context().new_page()
        page.route(f"{SITE}/grave", lambda route: route.fulfill(body=GRAVE_AND_MODERATE, content_type="text/html"))
        page.route(f"{SITE}/moderate", lambda route: route.fulfill(body=MODERATE_ONLY, content_type="text/html"))
        page.goto(f"{SITE}/grave")
        found = {problem["id"]: problem["impact"] for problem in accessibility_problems(page)}
        assert found == {"image-alt": "critical", "button-name": "critical", "color-contrast": "serious"}
        page.goto(f"{SITE}/moderate")
        assert accessibility_problems(page) == []
        # axe-core alone runs every rule; the check runs those that can find something serious or critical.
        every = page.evaluate(
            "async () => { const r = await axe.run(document); return [...r.passes, ...r.violations,"
            " ...r.incomplete, ...r.inapplicable].map((x) => x.id) }"
        )
        results = axe_results(page)
        ran = {rule["id"] for kind in ("passes", "violations", "incomplete", "inapplicable") for rule in results[kind]}
        assert ran == set(page.evaluate(GRAVE_RULES)) and ran < set(every)
        assert {"image-alt", "button-name", "color-contrast", "label", "link-name", "document-title"} <= ran
        assert not {"region", "heading-order", "landmark-one-main", "page-has-heading-one"} & ran
        assert {"region", "heading-order", "landmark-one-main", "page-has-heading-one"} <= set(every)
