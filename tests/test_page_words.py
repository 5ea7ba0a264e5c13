"""Every console page speaks the clinic's language: no command, flag, file of the server, template source or
Python error, over real HTTP on SQLite and PostgreSQL.

The pages are enumerated from the app itself (every GET route under /console/, each parameter filled with an
existing object of its kind, every campaign for a campaign's routes), so a page added later is covered without
editing this file. Downloads (CSV, JSON) are for programs and are left out.
"""

from __future__ import annotations

import copy
import html
import pickle
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, select
from starlette.routing import BaseRoute, Mount, Route

from needlecast.accounts.users import find_user
from needlecast.audience.importer import import_file
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.plan.preview import build_plans
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.findings import Finding
from needlecast.readmodels.campaigns import finding_in_words
from needlecast.store.schema import contacts
from needlecast.web.app import create_app
from needlecast.wording import Note, duration_words, for_people, placeholders_in_words
from tests.browser import accessibility_problems, axe_script, chromium_path, screenshot
from tests.console_site import PASSWORD, ConsoleSite, email_of, site, sqlite_site

# What a page must never say, as (pattern, what it is).
UTC_TIME = re.compile(r"\d{1,2}:\d{2}(:\d{2})? ?(UTC|Z)\b")  # a time the clinic would have to convert
COMMAND_TALK = [
    (re.compile(r"needlecast [a-z]"), "a command"),
    (re.compile(r"(?<![\w-])--[a-z][a-z-]+"), "a command-line option"),
    (re.compile(r"\.ya?ml\b"), "a YAML file"),
    (re.compile(r"\.toml\b"), "a TOML file"),
    (re.compile(r"\{\{|\}\}|\{%|%\}"), "template source"),
    (re.compile(r"\d:00:00\b"), "a Python duration"),
    (re.compile(r"Traceback"), "a Python error"),
]


@pytest.fixture()
def web(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, store_url) as running:
        yield running


def _get_routes(routes: list[BaseRoute], prefix: str = "") -> list[str]:
    """Every GET route's path (with {name} for each parameter)."""
    found: list[str] = []
    for route in routes:
        if isinstance(route, Mount):
            found += _get_routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route) and "GET" in (route.methods or ()):
            found.append(prefix + route.path_format)
    return found


def _values(web: ConsoleSite) -> dict[str, list[str]]:
    """Existing values for each route parameter, by its name."""
    with web.engine.connect() as conn:
        contact = str(conn.execute(select(contacts.c.id).order_by(contacts.c.id).limit(1)).scalar_one())
        user = str(find_user(conn, email_of("analyst"))["id"])
    ctx = CampaignContext.load(web.workspace)
    campaigns = sorted(ctx.campaigns)
    return {
        "contact": [contact],
        "contact_id": [contact],
        "campaign": campaigns,
        "campaign_id": campaigns,
        "name": ["emails/welcome"],
        "user": [user],
        "action": ["pause", "schedule", "send-now", "resume", "cancel"],
        "article": ["microneedling"],
        "slug": ["safe-for-all-skin-types"],
        "segment": ["acne", "new-leads"],
    }


def _urls(path: str, values: dict[str, list[str]]) -> list[str]:
    urls = [path]
    for name in re.findall(r"\{(\w+)\}", path):
        choices = values.get(name)
        if not choices:
            return []  # a parameter with no known value (an import job): nothing to walk
        urls = [u.replace("{" + name + "}", quote(v, safe="/")) for u in urls for v in choices]
    return urls


def _visible(page: str, *, with_titles: bool = True) -> str:
    """The page's text as a person reads it (tags, scripts, styles and source fields left out), plus its
    title attributes."""
    # The template editor's source field is the Jinja source on purpose (for those who want it).
    page = re.sub(r"<(script|style|textarea)\b.*?</\1>", " ", page, flags=re.S)
    titles = " ".join(re.findall(r'\btitle="([^"]*)"', page)) if with_titles else ""
    return html.unescape(re.sub(r"<[^>]+>", " ", page) + " " + titles)


@pytest.mark.database_independent  # a page's words (conftest's rule)
def test_no_console_page_speaks_the_command_line(web: ConsoleSite) -> None:
    paths = [p for p in _get_routes(list(create_app(web.workspace, web.engine).routes)) if p.startswith("/console")]
    values = _values(web)
    admin = web.login("admin")
    server_paths = {str(web.workspace.root), str(web.workspace.root.resolve())}
    walked: list[str] = []
    offences: list[str] = []
    for path in paths:
        for url in _urls(path, values):
            answer = admin.get(url)
            if answer.status_code != 200 or "text/html" not in answer.headers.get("content-type", ""):
                continue
            walked.append(url)
            text = _visible(answer.text)
            shown = _visible(answer.text, with_titles=False)  # UTC may be on hover, never shown
            offences += [f"{url}: a time in UTC: {m.group(0)}" for m in UTC_TIME.finditer(shown)]
            for pattern, what in COMMAND_TALK:
                for found in pattern.finditer(text):
                    around = text[max(0, found.start() - 60) : found.end() + 60].replace("\n", " ")
                    said = f"{url}: {what}: …{' '.join(around.split())}…"
                    if said not in offences:
                        offences.append(said)
            offences += [f"{url}: a server path" for root in server_paths if root in answer.text]
    assert len(walked) >= 20, walked  # the walk reaches the pages
    assert any(u.startswith("/console/campaigns/") for u in walked)
    assert not offences, "\n".join(offences)


# -- the campaign page in a real browser ----------------------------------------------------------------------


@pytest.fixture()
def browser_site(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    with sqlite_site(workspace_dir, tmp_path, monkeypatch) as running:
        yield running


def _logged_in(browser: Any, web: ConsoleSite, width: int) -> Any:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{web.url}/console/login")
    page.get_by_label("Email address").fill(email_of("marketer"))
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console/$"))
    return page


@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.skipif(axe_script() is None, reason="axe-core is not installed (.ci/run installs it into .ci/axe)")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_campaign_page_speaks_plainly_and_follows_a_send_without_reloading_itself(
    browser: Any, browser_site: ConsoleSite, width: int
) -> None:
    web = browser_site
    page = _logged_in(browser, web, width)
    with web.senders._lock:  # a send of this process, running: what `send_now` records until it ends
        web.senders._busy.add("spring-guide")
    page.goto(f"{web.url}/console/campaigns/spring-guide?send=started", timeout=120_000)
    main = page.inner_text("main")
    assert "Sending now." in main and "Ana, your guide to microneedling" in main  # as a sample reader reads it
    assert "its first send is 1 Mar 2027, 22:00 GMT" in main  # the campaign's clock, not UTC and no --days
    assert page.locator("meta[http-equiv=refresh]").count() == 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    assert accessibility_problems(page) == []
    screenshot(page, f"console-campaign-words-{width}")
    with web.senders._lock:
        web.senders._busy.discard("spring-guide")
    # The script sees the send end on its next poll and loads the page once, which then says what it did.
    page.locator("#send-banner", has_text="The send has ended").wait_for(timeout=30_000)
    assert page.locator("script[src$='send-progress.js']").count() == 0


# -- the words themselves -------------------------------------------------------------------------------------


def test_a_note_is_the_command_lines_text_with_the_clinics_words_beside_it_and_survives_a_copy() -> None:
    note = Note("plan further ahead with --days 86", "its first send is in 85 days")
    assert note == "plan further ahead with --days 86" and f"{note}" == "plan further ahead with --days 86"
    assert for_people(note) == "its first send is in 85 days" and for_people("plain") == "plain"
    assert for_people(pickle.loads(pickle.dumps(note))) == "its first send is in 85 days"
    assert for_people(copy.deepcopy(note)) == "its first send is in 85 days"


def test_durations_subjects_and_findings_are_said_in_words() -> None:
    assert duration_words(timedelta(days=3)) == "3 days" and duration_words(timedelta(0)) == "at once"
    assert duration_words(timedelta(days=1, hours=6)) == "1 day 6 hours"
    said = placeholders_in_words(
        "{{ first_name }}, your guide to {{ article.treatment | midsentence }}{% if x %}!{% endif %}"
    )
    assert said == "[first name], your guide to [article treatment]!"
    finding = Finding(
        "content/articles/x.md",
        3,
        "content-tag-review",
        "warning",
        "'Safe': unsure",
        "check `needlecast content show x --why`",
    )
    assert "needlecast" not in finding_in_words(finding).fix
    broken = Finding(
        "campaigns/x.yaml",
        1,
        "campaign-file",
        "error",
        "/srv/ws/campaigns/x.yaml: field 'segment': is unknown. Fix: name one",
        "name one",
    )
    shown = finding_in_words(broken)
    assert shown.file == "campaign x" and shown.message == "field 'segment': is unknown" and "/srv" not in shown.message


def test_the_plan_says_the_command_line_hint_to_the_cli_and_the_campaigns_clock_to_the_console(
    workspace: Workspace, engine: Engine
) -> None:
    import_file(engine, workspace.root / "audiences" / "sample.csv", load_vocabulary_for(workspace))
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    notes = build_plans(workspace, engine, "spring-guide", 30, now).plans[0].notes
    ahead = next(n for n in notes if n.startswith("plans nothing in the next 30 days"))
    assert "2027-03-01 22:00 UTC (plan further ahead with --days 86)" in ahead  # what `needlecast plan` prints
    assert for_people(ahead) == (
        "plans nothing in the next 30 days: its first send is 1 Mar 2027, 22:00 GMT, in 85 days"
    )
