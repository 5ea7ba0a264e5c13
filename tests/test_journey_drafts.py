"""Clinic journeys drafted from an article (`needlecast content draft ARTICLE --kind recall|aftercare|no-show|
win-back`), from the seed article (content/microneedling.txt): each is a journey file that loads through the
journey loader, lints clean, and has a variant per concern the article covers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, insert, update

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.drafting import draft_campaign, write_draft
from needlecast.campaign.journeys.model import BranchNode, SendNode, WaitNode
from needlecast.config import Workspace, open_workspace
from needlecast.lint import lint_workspace
from needlecast.store.schema import appointments, contacts
from tests.cli_runner import run
from tests.journey_helpers import NOW, SIGNOFF, journey_workspace, record_event, steps_of, store, sweep, where_is
from tests.journey_helpers import ids as lead_ids

SEED = Path("/work/shared/seed/000_c93c8da341b0aa70.txt")
VARIANTS = ["acne", "ageing", "scarring", "pigmentation", "texture", "general"]


def _draft(monkeypatch: pytest.MonkeyPatch, root: Path, kind: str, *extra: str) -> tuple[dict, str]:
    drafted = run(monkeypatch, root, "content", "draft", "microneedling", "--kind", kind, *extra)
    assert drafted.code == 0, drafted.stderr
    path = root / "campaigns" / f"microneedling-{kind}.yaml"
    workspace = open_workspace(root)
    ctx = CampaignContext.load(workspace)
    assert not ctx.problems, ctx.problems
    campaign = ctx.campaign(f"microneedling-{kind}")
    assert campaign.kind == "journey" and campaign.draft and campaign.journey is not None
    sends = [n for n in campaign.journey.nodes.values() if isinstance(n, SendNode)]
    covered = [c for c in ctx.vocabulary.names if ctx.library.article("microneedling").covers(c)]
    assert sends and all(campaign.step(n.id).variants == (*covered, "general") for n in sends)
    own = [f for f in lint_workspace(workspace) if f.file == f"campaigns/{path.name}"]
    assert own == []  # the drafted file itself lints clean (the article's own claims are the article's)
    return yaml.safe_load(path.read_text()), drafted.stdout


@pytest.fixture()
def root(workspace_dir: Path) -> Path:
    if SEED.exists():  # the seed article is the workspace's microneedling article
        assert SEED.read_text() == (workspace_dir / "content" / "microneedling.txt").read_text()
    return workspace_dir


def test_a_recall_drafts_a_course_then_maintenance_silent_while_an_appointment_exists(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document, out = _draft(
        monkeypatch, root, "recall", "--sessions", "4", "--every-weeks", "6", "--maintenance-months", "12"
    )
    assert document["entry"] == {
        "date": "last_treatment_at",
        "after": "42d",
        "where": [{"field": "last_treatment", "equals": "microneedling"}],
        "unless": "future_appointment",
    }
    assert document["reentry"] == "each_event" and document["goal"] == {"event": "booked"}
    journey = CampaignContext.load(open_workspace(root)).campaign("microneedling-recall").journey
    assert journey is not None
    course = journey.nodes["course"]
    assert isinstance(course, BranchNode) and course.paths[0].conditions[0].equals == "4"
    wait = journey.nodes["maintenance-wait"]
    assert isinstance(wait, WaitNode) and wait.until_date == "last_treatment_at" and wait.offset.days == 360
    assert "A course of 4 sessions 6 weeks apart" in out


def test_an_aftercare_draft_sends_on_day_0_2_and_7_after_attended(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document, out = _draft(monkeypatch, root, "aftercare")
    assert document["entry"] == {"event": "attended"} and "goal" not in document
    journey = CampaignContext.load(open_workspace(root)).campaign("microneedling-aftercare").journey
    assert journey is not None
    waits = [n.delay.days for n in journey.nodes.values() if isinstance(n, WaitNode) and n.delay is not None]
    assert [n.id for n in journey.nodes.values() if isinstance(n, SendNode)] == ["day-0", "day-2", "day-7"]
    assert waits == [2, 5]  # day 0, day 2, day 7
    assert "no aftercare or recovery section" in out  # the seed article has none


def test_an_aftercare_draft_draws_on_the_articles_recovery_section(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    article = root / "content" / "microneedling.txt"
    article.write_text(
        article.read_text()
        + "\nAftercare and Recovery: keep the skin clean and use a gentle moisturiser for a few days.\n"
    )
    document, out = _draft(monkeypatch, root, "aftercare")
    subjects = [s.get("subject", "") for s in document["steps"]]
    assert "Aftercare: Aftercare and Recovery" in subjects and "Two days on: Aftercare and Recovery" in subjects
    assert "Draws on the article's section" in out


def test_a_no_show_draft_nudges_unless_they_book_again(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document, _ = _draft(monkeypatch, root, "no-show")
    assert document["entry"] == {"event": "no_show"} and document["goal"] == {"event": "booked"}
    waiting = next(s for s in document["steps"] if s.get("kind") == "wait_until")
    assert waiting["event"] == "booked" and waiting["on_timeout"] == "nudge"


def test_a_win_back_draft_starts_after_90_days_without_a_visit(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document, _ = _draft(monkeypatch, root, "win-back")
    assert document["entry"] == {"date": "last_visit_at", "after": "90d", "unless": "future_appointment"}
    assert document["goal"] == {"event": "booked"}


# -- the drafted journeys at work (SQLite and PostgreSQL, a frozen clock) --------------------------------------


@pytest.fixture()
def leads(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return journey_workspace(workspace_dir, store_url, monkeypatch)


def _live_draft(ws: Workspace, kind: str) -> str:
    """The clinic draft of the seed article written as a live journey (its `draft: true` removed)."""
    ctx = CampaignContext.load(ws)
    path = write_draft(ctx, draft_campaign(ctx, "microneedling", kind))
    path.write_text(path.read_text().replace("draft: true\n", "") + SIGNOFF + "\n")
    return path.stem


def _attributes(engine: Engine, values: dict[int, dict[str, str]]) -> None:
    with engine.begin() as conn:
        for contact_id, attributes in values.items():
            conn.execute(update(contacts).where(contacts.c.id == contact_id).values(attributes=attributes))


def test_a_drafted_recall_invites_to_the_next_session_then_to_maintenance(leads: Workspace) -> None:
    journey = _live_draft(leads, "recall")
    engine = store(leads)
    people = lead_ids(engine)
    treated = (NOW - timedelta(days=28)).date().isoformat()  # a course session 4 weeks ago: the next is due
    course = {"last_treatment_at": treated, "last_treatment": "microneedling"}
    _attributes(engine, {c: course for c in people.values()})
    _attributes(
        engine,
        {people["lead1"]: {**course, "sessions_done": "3"}, people["lead5"]: {**course, "last_treatment": "peel"}},
    )
    with engine.begin() as conn:  # lead2 has booked already: the recall stays silent
        conn.execute(
            insert(appointments).values(
                appointment="calendly:1",
                email_hash="",
                contact_id=people["lead2"],
                treatment="microneedling",
                appointment_type="Treatment",
                starts_at=NOW + timedelta(days=10),
                open=True,
                last_event_at=NOW,
                updated_at=NOW,
            )
        )
    assert sweep(leads, engine, NOW).entered == 4  # not lead2 (booked), not lead5 (another treatment)
    sent = {name: steps_of(engine, people[name], journey) for name in people}
    assert sent == {
        "lead0": ["next-session"],
        "lead1": [],  # the course is done: maintenance later
        "lead2": [],
        "lead3": ["next-session"],
        "lead4": ["next-session"],
        "lead5": [],
    }
    maintenance = datetime(2027, 4, 25, 8, 1, tzinfo=UTC)  # 180 days after the treatment, 09:01 in London (BST)
    sweep(leads, engine, maintenance - timedelta(hours=1))
    assert steps_of(engine, people["lead1"], journey) == []
    sweep(leads, engine, maintenance)
    assert steps_of(engine, people["lead1"], journey) == ["maintenance"]
    assert steps_of(engine, people["lead0"], journey) == ["next-session"]  # one recall per treatment date


def test_a_drafted_aftercare_mails_day_0_2_and_7_after_attending_this_treatment(leads: Workspace) -> None:
    journey = _live_draft(leads, "aftercare")
    engine = store(leads)
    people = lead_ids(engine)
    _attributes(engine, {c: {"last_treatment": "microneedling"} for c in people.values()})
    _attributes(engine, {people["lead5"]: {"last_treatment": "peel"}})
    assert sweep(leads, engine, NOW).entered == 0
    record_event(engine, people["lead0"], "attended", NOW + timedelta(minutes=1), "a0", treatment="microneedling")
    record_event(engine, people["lead5"], "attended", NOW + timedelta(minutes=1), "a5", treatment="microneedling")
    assert sweep(leads, engine, NOW + timedelta(minutes=2)).entered == 2
    for day in (1, 2, 3, 7, 8):
        sweep(leads, engine, NOW + timedelta(days=day, minutes=2))
    assert steps_of(engine, people["lead0"], journey) == ["day-0", "day-2", "day-7"]
    assert steps_of(engine, people["lead5"], journey) == []  # another treatment: no aftercare of this one
    assert where_is(engine, people["lead5"], journey)[:2] == ("other-treatment", "done")
