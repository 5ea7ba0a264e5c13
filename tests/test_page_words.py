"""Every console page speaks the clinic's language: no command, flag, file of the server, template source or
Python error, over real HTTP on SQLite and PostgreSQL.

The pages are enumerated from the app itself (every GET route under /console/, each parameter filled with an
existing object of its kind, every campaign for a campaign's routes), so a page added later is covered without
editing this file. Downloads (CSV, JSON) are for programs and are left out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import select
from starlette.routing import BaseRoute, Mount, Route

from needlecast.accounts.users import find_user
from needlecast.campaign.context import CampaignContext
from needlecast.store.schema import contacts
from needlecast.web.app import create_app
from tests.console_site import ConsoleSite, email_of, site

# What a page must never say, as (pattern, what it is).
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
    }


def _urls(path: str, values: dict[str, list[str]]) -> list[str]:
    urls = [path]
    for name in re.findall(r"\{(\w+)\}", path):
        choices = values.get(name)
        if not choices:
            return []  # a parameter with no known value (an import job): nothing to walk
        urls = [u.replace("{" + name + "}", quote(v, safe="/")) for u in urls for v in choices]
    return urls


def _visible(page: str) -> str:
    """The page's text as a person reads it (tags, scripts, styles and source fields left out), plus its
    title attributes."""
    # The template editor's source field is the Jinja source on purpose (for those who want it).
    page = re.sub(r"<(script|style|textarea)\b.*?</\1>", " ", page, flags=re.S)
    titles = " ".join(re.findall(r'\btitle="([^"]*)"', page))
    return html.unescape(re.sub(r"<[^>]+>", " ", page) + " " + titles)


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
