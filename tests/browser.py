"""A real browser for the page tests: Playwright driving Debian's Chromium (`/usr/bin/chromium`), and axe-core.

`chromium_path()` is the browser or None (the tests then skip, saying why: `.ci/run` installs it).
`axe_script()` is axe-core's `axe.min.js` (`.ci/run` installs the npm package into `.ci/axe`), or None.
`accessibility_problems(page)` runs axe on the page and returns its serious and critical violations (`axe_results`:
the rules that can find one, `GRAVE_RULES`).
`SessionChromium` is the one Chromium a test session launches (conftest's session fixture `chromium`);
`guarded(browser)` is what every browser test uses (conftest's fixture `browser`): a `GuardedBrowser` whose
contexts run under the pages' own Content-Security-Policy (never bypassed) and are watched by `PageProblems`;
when the test ends its contexts close, and a console error, an uncaught script error or a CSP violation on any
of its pages fails the test, each listed with its page.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def axe_script() -> Path | None:
    candidates = [Path(os.environ["AXE_CORE_JS"])] if os.environ.get("AXE_CORE_JS") else []
    candidates.append(REPO / ".ci" / "axe" / "node_modules" / "axe-core" / "axe.min.js")
    return next((path for path in candidates if path.is_file()), None)


@functools.cache
def _axe_source(script: Path) -> str:
    return script.read_text(encoding="utf-8")


# axe-core's rules that can report a serious or critical violation (a rule's own impact, or one of its checks'), the
# only ones the tests assert on: a rule whose findings are all minor or moderate (the landmark rules, `region`,
# `heading-order`...) cannot fail a test, and running them took a seventh of axe-core's time (0.27 s a page here,
# 0.23 s without them). Read off the loaded axe-core (its `_audit` data: the public `getRules()` carries no impact),
# so a new release's rules are included as it rates them; should that data be missing, every rule runs, as before.
# Like axe-core's own default, the rules it switches off and those tagged experimental are left out.
GRAVE_RULES = """() => {
  const grave = new Set(["serious", "critical"]);
  const audit = window.axe._audit;
  if (!audit || !Array.isArray(audit.rules) || !audit.data || !audit.data.checks) return null;
  const checkImpact = (check) => (audit.data.checks[check.id || check] || {}).impact;
  return audit.rules
    .filter((rule) => rule.enabled !== false && !(rule.tags || []).includes("experimental"))
    .filter((rule) => grave.has(rule.impact)
      || ["any", "all", "none"].some((part) => (rule[part] || []).some((check) => grave.has(checkImpact(check)))))
    .map((rule) => rule.id);
}"""
RUN_AXE = f"""async () => {{
  const rules = ({GRAVE_RULES})();
  const options = {{resultTypes: ["violations"]}};
  if (rules && rules.length) options.runOnly = {{type: "rule", values: rules}};
  return JSON.stringify(await axe.run(document, options));
}}"""


def accessibility_problems(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on `page`, once it has loaded."""
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in axe_results(page)["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


def axe_results(page: Any) -> dict[str, Any]:
    """axe-core's results on `page`, once it has loaded, from the rules `GRAVE_RULES` chooses (each rule it ran is
    listed under `passes`, `violations`, `incomplete` or `inapplicable`; nodes only for the violations)."""
    script = axe_script()
    assert script is not None
    # The page as a person sees it: loaded, its stylesheet applied. A click's navigation returns once the new
    # document is committed; a check before the stylesheet arrives reads the unstyled page (which was 4 px too
    # wide at 390 px, seen once axe-core's own time no longer hid the moment).
    page.wait_for_load_state("load")
    # Evaluated by the browser's protocol, which the page's CSP does not govern; a <script> tag would be
    # (rightly) refused by it, and reported as a violation. Once per document: a page checked again after a
    # person's clicks (the same document) already has it.
    if page.evaluate("typeof window.axe === 'undefined'"):
        page.evaluate(_axe_source(script))
    results: dict[str, Any] = json.loads(page.evaluate(RUN_AXE))
    return results


# The test-artifacts/ screenshots are for a person to look at; NEEDLECAST_TEST_SCREENSHOTS=0 (as .ci/run sets it:
# its clone is thrown away) skips taking them, about 6 % of the browser tests' CPU. The guides' pictures
# below, and the pictures a test asserts on (`picture`), are taken either way.
TEST_SCREENSHOTS = os.environ.get("NEEDLECAST_TEST_SCREENSHOTS", "1") != "0"


def screenshot(page: Any, name: str, *, full_page: bool = True) -> None:
    """Saves the page as test-artifacts/<name>.png (`picture`), unless NEEDLECAST_TEST_SCREENSHOTS=0."""
    if TEST_SCREENSHOTS:
        picture(page, name, full_page=full_page)


def picture(page: Any, name: str, *, full_page: bool = True) -> bytes:
    """The page as a PNG, for a test to assert on; saved as `screenshot` saves it."""
    png: bytes = page.screenshot(full_page=full_page)
    if TEST_SCREENSHOTS:
        _save_artifact(name, png)
    return png


def _save_artifact(name: str, png: bytes) -> None:
    """test-artifacts/<name>.png, written whole or not at all (a file of this process's own, then renamed over the
    old one): under pytest-xdist two workers may shoot the same name at once (one test on each database), and
    neither may ever see the other's half-written or just-removed file."""
    ARTIFACTS.mkdir(exist_ok=True)
    partial = ARTIFACTS / f".{name}.{os.getpid()}.{threading.get_ident()}.png"
    partial.write_bytes(png)
    os.replace(partial, ARTIFACTS / f"{name}.png")


# The user guides' pictures (docs/guides/*.md, the README): taken by the browser tests at a meaningful moment, so
# that they show the pages as they are; committed, so that the site builds from a fresh clone too. They replace
# the committed pictures only when NEEDLECAST_DOC_SCREENSHOTS=1 (as .ci/run sets it, before it builds the site, and
# as whoever refreshes them sets it): otherwise into test-artifacts/docs/, so that a test run leaves the work tree
# as it was (the pictures hold the day's dates).
COMMITTED_DOC_SCREENSHOTS = REPO / "docs" / "screenshots"
DOC_SCREENSHOTS = (
    COMMITTED_DOC_SCREENSHOTS if os.environ.get("NEEDLECAST_DOC_SCREENSHOTS") == "1" else ARTIFACTS / "docs"
)


def save_doc_screenshot(page: Any, name: str, *, of: str | None = None, full_page: bool = False) -> Path:
    """Saves the page as docs/screenshots/<name>.png, a picture the guides show, and returns that path: the part
    of the page the CSS selector `of` names, else its window (the whole page with `full_page`). Written whole
    or not at all, as `screenshot` writes. `tests/test_doc_screenshots.py` holds every picture the guides and
    the README show to a call of this function, with its name written out, in some test."""
    DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = DOC_SCREENSHOTS / f"{name}.png"
    partial = DOC_SCREENSHOTS / f".{name}.{os.getpid()}.{threading.get_ident()}.png"
    if of is not None:
        page.locator(of).screenshot(path=str(partial))
    else:
        page.screenshot(path=str(partial), full_page=full_page)
    os.replace(partial, path)
    return path


# Added to every document before its own scripts (the protocol's init script, which CSP does not govern): the
# browser raises `securitypolicyviolation` for everything a page's policy blocks; say each on the console.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.effectiveDirective} blocked ${event.blockedURI || "(inline)"}`
    + ` at ${event.sourceFile || "(the document)"}:${event.lineNumber}`);
});
"""


class PageProblems:
    """What a browser logged that a person never should see: console errors (a failed resource, a script's
    error), uncaught page errors and CSP violations, each with the page it happened on (path only)."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def watch(self, context: Any) -> Any:
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        context.on("page", self._watch_page)
        for page in context.pages:
            self._watch_page(page)
        return context

    def _watch_page(self, page: Any) -> None:
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self._add(page, f"uncaught error: {error}"))

    def _console(self, page: Any, message: Any) -> None:
        if message.type != "error":
            return
        source = message.location.get("url", "")
        failed_load = message.text.startswith("Failed to load resource:")
        if failed_load and source == page.url and "with a status of 4" in message.text:
            return  # the page itself answers a person's mistake (a form's 422): the test asserts what it says
        if failed_load and _elsewhere(source):
            # An email's own image (the clinic's logo) from a sandboxed srcdoc preview, whose requests the
            # route below cannot see (an opaque origin): the tests have no network beyond loopback; a
            # person's browser loads it. A page's own assets are on loopback, and CSP refuses the rest.
            return
        self._add(page, f"console error: {message.text}" + (f" ({source})" if source != page.url else ""))

    def _add(self, page: Any, problem: str) -> None:
        where = urlsplit(page.url)
        line = f"{where.path}{'?' + where.query if where.query else ''}: {problem}"
        if line not in self.found:
            self.found.append(line)

    def report(self) -> str:
        return "the browser logged errors or CSP violations:\n" + "\n".join(f"  {line}" for line in self.found)


class GuardedBrowser:
    """A launched Chromium whose every new context is watched by one `PageProblems`; `close()` closes the
    contexts it made (the browser stays, for the next test)."""

    def __init__(self, browser: Any, problems: PageProblems) -> None:
        self.browser = browser
        self.problems = problems
        self.contexts: list[Any] = []

    def new_context(self, **options: Any) -> Any:
        assert not options.get("bypass_csp"), "browser tests run under the pages' own CSP"
        context = self.problems.watch(self.browser.new_context(**options))
        context.route(ELSEWHERE, _blank_image)
        self.contexts.append(context)
        return context

    def close(self) -> None:
        for context in self.contexts:
            context.close()  # also delivers the events still queued, so the check below sees them
        self.contexts.clear()


# A transparent 1x1 GIF: what an email's own images (the clinic's logo, on its site) get in the tests, which
# have no network beyond loopback. Anything else from elsewhere is refused, and the refusal is logged.
BLANK_GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


# Any http(s) address whose host is not loopback. A pattern, not a Python function: Playwright hands a pattern to
# the browser, which then stops only those requests; a function would stop every request of every page (its
# assets included) for a round trip to this process.
ELSEWHERE = re.compile(r"^https?://(?!(?:127\.0\.0\.1|localhost|\[::1\])(?:[:/?#]|$))", re.IGNORECASE)


def _elsewhere(url: str) -> bool:
    where = urlsplit(url)
    return where.scheme in ("http", "https") and where.hostname not in ("127.0.0.1", "localhost", "::1")


def _blank_image(route: Any) -> None:
    if route.request.resource_type == "image":
        route.fulfill(status=200, content_type="image/gif", body=BLANK_GIF)
    else:
        route.abort()


@contextlib.contextmanager
def guarded(browser: Any) -> Iterator[GuardedBrowser]:
    """A `GuardedBrowser` over `browser` for one test; afterwards its contexts are closed, then `AssertionError`
    lists every console error, page error and CSP violation any of its pages logged (in a fixture's teardown:
    the test fails at teardown)."""
    problems = PageProblems()
    running = GuardedBrowser(browser, problems)
    try:
        yield running
    finally:
        running.close()
    assert not problems.found, problems.report()


# Work Chromium's headless mode does for every window (so every browser context) that no test page needs: it
# builds the address bar's suggestion popups as web pages in renderer processes of their own, two per window, about
# a sixth of the browser tests' CPU (BENCHMARKS.md, "The test suite").
UNNEEDED_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup")


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium with `CHROMIUM_FLAGS`, and with `UNNEEDED_FEATURES` switched off besides the features
    Playwright switches off. Chromium heeds only the last `--disable-features`, and Playwright passes its own
    list first: so a first launch reads that list off the browser's command line, and the second adds to it."""
    # --enable-automation: Chromium tells its command line over the protocol only then; this first browser
    # opens no page.
    first = playwright.chromium.launch(executable_path=chromium_path(), args=[*CHROMIUM_FLAGS, "--enable-automation"])
    try:
        disabled = [*disabled_features(first), *UNNEEDED_FEATURES]
    finally:
        first.close()
    switch = "--disable-features=" + ",".join(dict.fromkeys(disabled))
    return playwright.chromium.launch(executable_path=chromium_path(), args=[*CHROMIUM_FLAGS, switch])


def disabled_features(browser: Any) -> list[str]:
    """The features `browser` runs without: the last `--disable-features` of its command line (Chromium's rule).
    `browser` must have been launched with `--enable-automation`."""
    arguments = browser.new_browser_cdp_session().send("Browser.getBrowserCommandLine")["arguments"]
    lists = [argument.split("=", 1)[1] for argument in arguments if argument.startswith("--disable-features=")]
    return [feature for feature in (lists[-1].split(",") if lists else []) if feature]


class SessionChromium:
    """One Chromium for a whole test session (a launch costs about a second; a context, milliseconds), started
    at the first `browser()` and launched again should it have gone (a crash fails one test, not the rest)."""

    def __init__(self) -> None:
        self._playwright: Any = None
        self._browser: Any = None

    def browser(self) -> Any:
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        if self._playwright is None:
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
        self._browser = launch_chromium(self._playwright)
        return self._browser

    def stop(self) -> None:
        if self._browser is not None and self._browser.is_connected():
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()
        self._browser = self._playwright = None


class ConsoleVisitor:
    """Someone of the clinic at the console, logged in as `role` in a browser context of their own at `width` px.

    `check(name)` is what every page they see must pass: no serious or critical axe-core finding, no sideways
    scroll of the page; it saves the screenshot `<shots>-<name>-<width>` in test-artifacts/. A suite sets its
    own `shots` (the screenshots' prefix) on a subclass, which adds that suite's steps."""

    shots = "console"

    def __init__(self, browser: Any, console: Any, role: str, width: int) -> None:
        from tests.console_site import PASSWORD, email_of

        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.console, self.role, self.width = console, role, width
        self.page.goto(f"{console.url}/console/")
        self.page.get_by_label("Email address").fill(email_of(role))
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(re.compile(r".*/console/$"))

    def check(self, name: str) -> None:
        check_page(self.page, name, self.width, f"{self.shots}-{name}-{self.width}")


def check_page(page: Any, name: str, width: int, shot: str) -> None:
    """What every console page a test sees must pass, once loaded: no serious or critical axe-core finding, no
    sideways scroll at `width`; then saves the screenshot `shot` in test-artifacts/ (as `screenshot` does)."""
    problems = accessibility_problems(page)  # on the loaded page, so the layout read below is the styled one
    assert problems == [], f"{name}: {problems}"
    wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert wide <= 0, f"{name}: the page scrolls sideways by {wide} px at {width} px"
    screenshot(page, shot)
