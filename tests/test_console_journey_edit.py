"""Journeys created and edited in the console (issue 30.7) over HTTP: a journey built in the form of node rows is
written as `campaigns/<id>.yaml` through the loader (the command line plans it); a loader error shows beside
its field in words (a goto loop without a wait refused with the loader's words); the text editor's errors
name the line; editing a live journey shows who waits where and refuses to remove a step that holds people
until each such step has a destination, then saves through `actions.journeys.save` (people moved, a version
and an audit entry written); every route refuses anonymous requests and roles without `campaigns.edit`."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sqlalchemy import select

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.journeys.sweeper import sweep_all
from needlecast.store.schema import audit_log, journey_positions, journey_versions
from tests.cli_runner import run
from tests.console_site import ConsoleSite, assert_anonymous_refused, assert_roles_refused, csrf_of, site

pytestmark = pytest.mark.database_independent

ROUTES = [
    ("GET", "/console/journeys/new", "campaigns.edit"),
    ("POST", "/console/journeys/new", "campaigns.edit"),
    ("GET", "/console/journeys/recall/edit", "campaigns.edit"),
    ("POST", "/console/journeys/recall/edit", "campaigns.edit"),
    ("POST", "/console/journeys/recall/save", "campaigns.edit"),
    ("POST", "/console/journeys/check", "campaigns.edit"),
]
SIGNOFF = "signoff: {reviewer: QA, date: 2026-11-24, note: test content}"
RECALL = f"""id: recall
name: Recall
kind: journey
segment: all-leads
time_zone: Europe/London
{SIGNOFF}
steps:
  - {{id: pause, kind: wait, delay: 3d}}
  - {{id: hello, template: emails/welcome}}
  - {{id: done, kind: exit}}
"""


@pytest.fixture()
def console(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    (workspace_dir / "campaigns" / "recall.yaml").write_text(RECALL)
    with site(workspace_dir, store_url) as running:
        yield running


def _journey_form(**rows: dict[str, str]) -> dict[str, str]:
    """The form's fields for a journey `welcome-path` of the given rows (`n-0` ...), entry by the segment."""
    form = {
        "id": "welcome-path",
        "name": "Welcome path",
        "segment": "all-leads",
        "time_zone": "Europe/London",
        "entry_kind": "segment",
        "reentry": "never",
        "goal_event": "booked",
    }
    for prefix, fields in rows.items():
        form |= {f"{prefix}-{key}": value for key, value in fields.items()}
    return form


def test_every_journey_route_refuses_anonymous_requests_and_roles_without_campaigns_edit(
    console: ConsoleSite,
) -> None:
    assert_anonymous_refused(console, ROUTES, {})
    assert_roles_refused(console, ROUTES, {"source": RECALL, "do": "source"})
    marketer = console.login("marketer")
    for method, path, _ in ROUTES:
        if method == "GET":
            assert marketer.get(path).status_code == 200, path
    # and a POST without the session's token changes nothing
    form = {"csrf": "not-the-token", "do": "source", "source": RECALL.replace("3d", "1d")}
    assert marketer.post("/console/journeys/recall/edit", data=form).status_code == 403
    assert (console.workspace.campaigns_dir / "recall.yaml").read_text() == RECALL


def test_a_journey_built_in_the_form_is_written_through_the_loader_and_planned(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/journeys/new").text)
    form = _journey_form(
        **{
            "n-0": {
                "id": "hello",
                "kind": "send",
                "template": "emails/welcome",
                "subject": "Welcome, {{ first_name }}",
            },
            "n-1": {"id": "pause", "kind": "wait", "wait_mode": "delay", "delay": "2d"},
            "n-2": {"id": "clicked", "kind": "wait_until", "wu_mode": "engagement", "eng_node": "hello"}
            | {"eng_action": "clicked", "eng_link": "/book", "timeout": "5d", "next": "done", "on_timeout": "route"},
            "n-3": {"id": "route", "kind": "branch", "p-0-type": "concern", "p-0-value": "acne", "p-0-next": "tips"}
            | {"p-1-type": "", "p-1-next": "", "default": "ab"},
            "n-4": {"id": "ab", "kind": "split", "p-0-percent": "50", "p-0-next": "tips"}
            | {"p-1-percent": "50", "p-1-next": "done"},
            "n-5": {"id": "tips", "kind": "send", "template": "emails/deep_dive", "variants": "acne"},
            "n-6": {"id": "done", "kind": "exit"},
            "n-7": {"id": "", "kind": ""},  # a spare empty row
        }
    )
    saved = marketer.post("/console/journeys/new", data={"csrf": token, "do": "form", **form})
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"].startswith("/console/campaigns/welcome-path?")
    ctx = CampaignContext.load(console.workspace)
    assert not ctx.problems, ctx.problems
    journey = ctx.campaigns["welcome-path"]
    assert journey.kind == "journey" and journey.draft  # nobody enters it until someone schedules it
    assert journey.journey is not None and list(journey.journey.nodes) == [
        "hello",
        "pause",
        "clicked",
        "route",
        "ab",
        "tips",
        "done",
    ]
    assert journey.journey.goal == "booked"
    text = (console.workspace.campaigns_dir / "welcome-path.yaml").read_text()
    assert "link: /book" in text and "percent: 50" in text
    planned = run(
        monkeypatch,
        console.workspace.root,
        "plan",
        "welcome-path",
        "--format",
        "json",
        NEEDLECAST_DATABASE_URL=store_url,
    )
    assert planned.code == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["problems"] == [] and [c["id"] for c in plan["campaigns"]] == ["welcome-path"]
    assert plan["campaigns"][0]["forecast"] == []  # a journey's newcomers are not forecast; nobody is in it yet
    page = marketer.get("/console/journeys/welcome-path/edit").text  # the form shows what it saved
    assert 'value="clicked"' in page and 'value="/book"' in page
    again = marketer.post("/console/journeys/new", data={"csrf": token, "do": "form", **form})
    assert again.status_code == 422
    assert "already the id of another campaign" in html.unescape(_error(again.text, "id"))


def _error(page: str, field: str) -> str:
    found = re.search(rf'<p class="error" id="error-{re.escape(field)}" role="alert">(.*?)</p>', page, re.S)
    assert found, f"no error beside {field}"
    return html.unescape(found.group(1))


def test_loader_errors_show_beside_their_field_in_words_and_nothing_is_written(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/journeys/new").text)
    bad_delay = _journey_form(
        **{
            "n-0": {"id": "hello", "kind": "send", "template": "emails/welcome"},
            "n-1": {"id": "pause", "kind": "wait", "wait_mode": "delay", "delay": "three days"},
        }
    )
    shown = marketer.post("/console/journeys/new", data={"csrf": token, **bad_delay})
    assert shown.status_code == 422
    said = _error(shown.text, "n-1-delay")
    assert "'three days' is not a length of time" in said and "12h, 3d, 2w" in said
    assert 'value="three days"' in shown.text  # what was typed stays
    loop = _journey_form(
        **{
            "n-0": {"id": "hello", "kind": "send", "template": "emails/welcome"},
            "n-1": {"id": "again", "kind": "goto", "next": "hello"},
        }
    )
    refused = marketer.post("/console/journeys/new", data={"csrf": token, **loop})
    said = _error(refused.text, "n-1-next")
    assert "'again' leads back to 'hello' with no wait on the way" in said
    assert "add a Wait row on the loop" in said and "{" not in said
    missing = _journey_form(**{"n-0": {"id": "hello", "kind": "send", "template": ""}})
    said = _error(marketer.post("/console/journeys/new", data={"csrf": token, **missing}).text, "n-0-template")
    assert said == "Is missing. Fix: choose an email in the list."
    for page in (shown.text, refused.text):
        assert "Traceback" not in page and str(console.workspace.root) not in page and ".yaml" not in _notes(page)
    assert not (console.workspace.campaigns_dir / "welcome-path.yaml").exists()


def _notes(page: str) -> str:
    return " ".join(re.findall(r'<p class="error"[^>]*>(.*?)</p>', page, re.S))


def test_the_text_editor_names_the_line_of_a_mistake(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/journeys/recall/edit").text)
    broken = RECALL.replace("delay: 3d", "delay: soon")
    shown = marketer.post("/console/journeys/recall/edit", data={"csrf": token, "do": "source", "source": broken})
    assert shown.status_code == 422
    said = _error(shown.text, "source")
    assert said.startswith("Line 8 (steps[0].delay)") and "'soon' is not a length of time" in said
    not_yaml = marketer.post(
        "/console/journeys/recall/edit", data={"csrf": token, "do": "source", "source": RECALL + "  - [oops\n"}
    )
    assert "is not valid YAML at line" in _error(not_yaml.text, "source")
    assert (console.workspace.campaigns_dir / "recall.yaml").read_text() == RECALL


def _positions(console: ConsoleSite) -> dict[str, int]:
    with console.engine.connect() as conn:
        rows = conn.execute(
            select(journey_positions.c.node, journey_positions.c.state).where(
                journey_positions.c.campaign_id == "recall"
            )
        ).all()
    found: dict[str, int] = {}
    for node, state in rows:
        found[f"{node}:{state}"] = found.get(f"{node}:{state}", 0) + 1
    return found


def test_editing_a_live_journey_refuses_to_strand_people_and_moves_them_where_chosen(console: ConsoleSite) -> None:
    sweep_all(console.engine, CampaignContext.load(console.workspace), datetime.now(UTC))
    waiting = _positions(console)["pause:active"]
    assert waiting > 0
    marketer = console.login("marketer")
    page = marketer.get("/console/journeys/recall/edit").text
    token = csrf_of(page)
    assert 'value="pause"' in page
    assert f'<p class="waiting-here">{waiting:,} people wait here now</p>' in page  # before any change
    without_pause = _journey_form(
        **{
            "n-0": {"id": "short", "kind": "wait", "wait_mode": "delay", "delay": "1d"},
            "n-1": {"id": "hello", "kind": "send", "template": "emails/welcome"},
            "n-2": {"id": "done", "kind": "exit"},
        }
    ) | {"id": "recall", "name": "Recall", "goal_event": ""}
    confirm = marketer.post("/console/journeys/recall/edit", data={"csrf": token, "do": "form", **without_pause})
    assert confirm.status_code == 200, confirm.text
    assert f"{waiting:,} people are in this journey now" in confirm.text
    assert "'pause' is removed; " in html.unescape(confirm.text) and "choose where they go" in confirm.text
    assert 'name="move-pause"' in confirm.text
    assert (console.workspace.campaigns_dir / "recall.yaml").read_text() == RECALL  # nothing saved yet
    text = html.unescape(re.search(r'<textarea name="source"[^>]*>(.*?)</textarea>', confirm.text, re.S).group(1))
    refused = marketer.post("/console/journeys/recall/save", data={"csrf": token, "source": text})
    assert refused.status_code == 422
    assert "which this version removes: choose a step for them" in _error(refused.text, "move-pause")
    assert (console.workspace.campaigns_dir / "recall.yaml").read_text() == RECALL
    assert _positions(console)["pause:active"] == waiting
    saved = marketer.post("/console/journeys/recall/save", data={"csrf": token, "source": text, "move-pause": "short"})
    assert saved.status_code == 303, saved.text
    assert "version 1" in html.unescape(saved.headers["location"].replace("+", " "))
    assert _positions(console) == {"short:active": waiting}
    ctx = CampaignContext.load(console.workspace)
    assert ctx.campaigns["recall"].journey is not None and "pause" not in ctx.campaigns["recall"].journey.nodes
    assert "signoff" in (console.workspace.campaigns_dir / "recall.yaml").read_text()  # kept from the file
    with console.engine.connect() as conn:
        versions = conn.execute(select(journey_versions.c.version, journey_versions.c.actor)).all()
        audited = conn.execute(
            select(audit_log.c.actor, audit_log.c.detail).where(audit_log.c.action == "journey.saved")
        )
        entries = audited.all()
    assert versions == [(1, "marketer@clinic.example")]
    assert len(entries) == 1 and entries[0][0] == "marketer@clinic.example" and "short" in str(entries[0][1])


def test_a_changed_wait_is_said_to_re_time_those_waiting_and_applies_to_them(console: ConsoleSite) -> None:
    sweep_all(console.engine, CampaignContext.load(console.workspace), datetime.now(UTC))
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/journeys/recall/edit").text)
    shorter = RECALL.replace("delay: 3d", "delay: 1d")
    confirm = marketer.post("/console/journeys/recall/edit", data={"csrf": token, "do": "source", "source": shorter})
    assert "re-timed from when they arrived" in confirm.text and 'name="move-' not in confirm.text
    saved = marketer.post("/console/journeys/recall/save", data={"csrf": token, "source": shorter})
    assert saved.status_code == 303
    assert "delay: 1d" in (console.workspace.campaigns_dir / "recall.yaml").read_text()


def test_a_date_entry_with_conditions_and_a_birthday_wait_round_trip_through_the_form(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/journeys/new").text)
    form = _journey_form(
        **{
            "n-0": {"id": "birthday", "kind": "wait", "wait_mode": "until_date", "until_date": "birthday"}
            | {"offset": "-7d", "at": "10:00", "yearly": "1"},
            "n-1": {"id": "morning", "kind": "wait", "wait_mode": "until_time", "until_time": "09:00"},
            "n-2": {"id": "hello", "kind": "send", "template": "emails/welcome"},
            "n-3": {"id": "booked-yet", "kind": "wait_until", "wu_mode": "event", "event": "booked"}
            | {"timeout": "7d", "next": "done", "on_timeout": "again"},
            "n-4": {"id": "again", "kind": "goto", "next": "birthday"},
            "n-5": {"id": "done", "kind": "exit"},
        }
    ) | {
        "entry_kind": "date",
        "entry_date": "last_treatment_at",
        "entry_when": "after",
        "entry_offset": "90d",
        "where-0-type": "equals",
        "where-0-name": "last_treatment",
        "where-0-value": "anti-wrinkle",
        "where-1-type": "tag",
        "where-1-value": "vip",
        "entry_unless": "1",
        "reentry": "after",
        "reentry_after": "30d",
    }
    saved = marketer.post("/console/journeys/new", data={"csrf": token, **form})
    assert saved.status_code == 303, _notes(saved.text)
    journey = CampaignContext.load(console.workspace).campaigns["welcome-path"].journey
    assert journey is not None
    assert journey.entry.kind == "date" and journey.entry.date_field == "last_treatment_at"
    assert journey.entry.unless_appointment and [c.describe() for c in journey.entry.where] == [
        "last_treatment = anti-wrinkle",
        "tag vip",
    ]
    assert journey.reentry.describe() == "after 30d"
    shown = marketer.get("/console/journeys/welcome-path/edit").text
    for value in ("last_treatment_at", "90d", "anti-wrinkle", "30d", "-7d", "10:00", "09:00", "again"):
        assert f'value="{value}"' in shown, value
    assert 'id="entry_unless" name="entry_unless" value="1" checked' in shown


def test_a_journey_the_form_cannot_show_is_edited_as_text_only(console: ConsoleSite) -> None:
    three_conditions = RECALL.replace(
        "  - {id: done, kind: exit}",
        "  - id: route\n    kind: branch\n"
        "    paths: [{when: [{concern: acne}, {tag: vip}, {consent: concern}], next: done}]\n"
        "  - {id: done, kind: exit}",
    )
    (console.workspace.campaigns_dir / "recall.yaml").write_text(three_conditions)
    page = console.login("marketer").get("/console/journeys/recall/edit").text
    assert "a path of 'route' tests more than 2 conditions at once" in html.unescape(page)
    assert 'id="save-form"' not in page and 'id="save-text"' in page


def test_the_builders_check_answers_with_the_loaders_words_and_writes_nothing(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/journeys/new").text)
    loop = _journey_form(
        **{
            "n-0": {"id": "hello", "kind": "send", "template": "emails/welcome"},
            "n-1": {"id": "again", "kind": "goto", "next": "hello"},
        }
    )
    answer = marketer.post("/console/journeys/check", data={"csrf": token, "editing": "", **loop}).json()
    assert answer["ok"] is False and answer["field"] == "n-1-next" and "no wait on the way" in answer["said"]
    fine = loop | {"n-1-kind": "wait", "n-1-wait_mode": "delay", "n-1-delay": "1d", "n-1-next": ""}
    answer = marketer.post("/console/journeys/check", data={"csrf": token, "editing": "", **fine}).json()
    assert answer == {"ok": True, "field": "", "said": "Looks right: ready to save."}
    taken = marketer.post("/console/journeys/check", data={"csrf": token, "editing": "", **fine, "id": "recall"})
    assert taken.json()["field"] == "id"
    assert not (console.workspace.campaigns_dir / "welcome-path.yaml").exists()


EVERY_KIND = f"""id: recall
name: Recall
kind: journey
segment: all-leads
time_zone: Europe/London
{SIGNOFF}
entry:
  date: last_treatment_at
  after: 90d
  where: [{{field: last_treatment, equals: anti-wrinkle}}, {{event: no_show, within: 180d}}]
  unless: future_appointment
reentry: {{after: 30d}}
goal: {{event: booked}}
steps:
  - {{id: morning, kind: wait, until_time: "09:00"}}
  - {{id: recall-mail, template: emails/consultation, subject: Time for a check-up, variants: [acne, general]}}
  - id: clicked-book
    kind: wait_until
    engagement: {{node: recall-mail, action: clicked, link: /book}}
    timeout: 5d
    next: thanks
    on_timeout: route
  - id: route
    kind: branch
    paths:
      - {{when: [{{event: no_show, within: 180d}}], next: gentle}}
      - {{when: [{{concern: ageing}}, {{tag: vip}}], next: offer}}
      - {{when: [{{engagement: {{node: recall-mail, action: opened}}}}], next: offer}}
    default: ab
  - {{id: ab, kind: split, paths: [{{percent: 30, next: gentle}}, {{percent: 70, next: offer}}]}}
  - {{id: gentle, template: emails/deep_dive, next: pause}}
  - {{id: offer, template: emails/broadcast, next: pause}}
  - {{id: pause, kind: wait, delay: 14d}}
  - {{id: birthday, kind: wait, until_date: birthday, offset: -7d, at: "10:00", yearly: true}}
  - {{id: booked-yet, kind: wait_until, event: booked, timeout: 7d, on_timeout: again}}
  - {{id: again, kind: goto, next: pause}}
  - {{id: thanks, kind: exit}}
"""


class _Fields(HTMLParser):
    """What a browser without JavaScript posts from a page's form: every named field outside <template>."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self.depth = 0  # inside <template>
        self.select: str | None = None
        self.options: list[tuple[str, bool]] = []
        self.textarea: str | None = None
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "template":
            self.depth += 1
        if self.depth:
            return
        if tag == "input" and a.get("name") and (a.get("type") != "checkbox" or "checked" in a):
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self.select, self.options = a.get("name"), []
        elif tag == "option" and self.select is not None:
            self.options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea":
            self.textarea, self.text = a.get("name"), ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "template":
            self.depth -= 1
        elif tag == "select" and self.select and not self.depth:
            chosen = [v for v, on in self.options if on] or [v for v, _ in self.options[:1]]
            self.fields.append((self.select, chosen[0]))
            self.select = None
        elif tag == "textarea" and self.textarea and not self.depth:
            self.fields.append((self.textarea, self.text))
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.text += data


def test_every_kind_of_step_survives_the_form_as_a_browser_without_javascript_posts_it(console: ConsoleSite) -> None:
    (console.workspace.campaigns_dir / "recall.yaml").write_text(EVERY_KIND)
    before = CampaignContext.load(console.workspace).campaigns["recall"]
    marketer = console.login("marketer")
    parser = _Fields()
    parser.feed(marketer.get("/console/journeys/recall/edit").text)
    form: dict[str, list[str]] = {"do": ["form"]}
    for name, value in parser.fields:
        if name != "do":
            form.setdefault(name, []).append(value)  # repeated names (ticked versions) kept
    saved = marketer.post("/console/journeys/recall/edit", data=form)
    assert saved.status_code == 303, _notes(saved.text)
    after = CampaignContext.load(console.workspace).campaigns["recall"]
    assert after.journey == before.journey
    assert [(s.id, s.template, s.subject, s.variants) for s in after.steps] == [
        (s.id, s.template, s.subject, s.variants) for s in before.steps
    ]
    assert after.signoff == before.signoff


def test_a_journey_written_as_text_is_created_as_a_draft(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/journeys/new").text)
    text = RECALL.replace("id: recall", "id: typed")
    saved = marketer.post("/console/journeys/new", data={"csrf": token, "do": "source", "source": text})
    assert saved.status_code == 303, _notes(saved.text)
    assert CampaignContext.load(console.workspace).campaigns["typed"].draft
    taken = marketer.post("/console/journeys/new", data={"csrf": token, "do": "source", "source": RECALL})
    assert "'recall' is already the id of another campaign" in _error(taken.text, "source")
    assert (console.workspace.campaigns_dir / "recall.yaml").read_text() == RECALL


def test_a_step_that_names_a_missing_step_is_said_in_the_forms_words(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/journeys/new").text)
    form = _journey_form(**{"n-0": {"id": "hello", "kind": "send", "template": "emails/welcome", "next": "pause"}})
    said = _error(marketer.post("/console/journeys/new", data={"csrf": token, **form}).text, "n-0-next")
    assert said == "'pause' is not a step of this journey. Fix: choose one of: hello."
