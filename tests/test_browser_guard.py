"""The browser tests' guard (`tests.browser.guarded`, which conftest's `browser` fixture gives every browser test)
fails a test on what a person's browser would log; run on the session's Chromium, as the fixture runs."""

from __future__ import annotations

import pytest

from tests.browser import SessionChromium, chromium_path, guarded

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
