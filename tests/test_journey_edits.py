"""Editing a live journey, on SQLite and PostgreSQL: what a save does to the people waiting (previewed first),
a removed node's people moved where the editor says (never stranded, never re-run), a changed delay applied
to those still waiting, versions and audit; `journey check` finding and repairing what an edit outside the
console left behind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from needlecast.accounts.roles import Actor
from needlecast.actions import journeys as journey_actions
from needlecast.campaign.journeys.edits import EXIT_MOVE, EditRefused
from needlecast.config import Workspace
from needlecast.readmodels.journeys import journey_overview, preview_save
from needlecast.store.schema import audit_log, journey_versions
from tests.journey_helpers import (
    NOW,
    SIGNOFF,
    journey_workspace,
    positions,
    steps_of,
    store,
    sweep,
    where_is,
    write_journey,
)
from tests.journey_helpers import ids as lead_ids

ADMIN = Actor("user", "admin@example.com", 1, "admin")

BEFORE = """
steps:
  - {id: hello, template: emails/welcome}
  - {id: pause, kind: wait, delay: 3d}
  - {id: later, template: emails/deep_dive}
"""
HEADER = f"id: j\nkind: journey\nsegment: all-leads\ntime_zone: Europe/London\n{SIGNOFF}\n"


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return journey_workspace(workspace_dir, store_url, monkeypatch)


def _aware(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def test_removing_a_node_with_people_waiting_needs_their_destination_and_moves_them_there(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_journey(ws, BEFORE)
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)  # everyone waits at pause
    after = (
        HEADER
        + """
steps:
  - {id: hello, template: emails/welcome}
  - {id: short, kind: wait, delay: 1d}
  - {id: later, template: emails/deep_dive}
"""
    )
    preview = preview_save(ws, engine, "j", after)
    assert preview.waiting == {"pause": 6} and preview.removed == {"pause": 6} and preview.added == ["short"]
    assert "choose where they go" in " ".join(preview.describe())
    with pytest.raises(EditRefused) as refused:
        journey_actions.save(engine, ws, ADMIN, "j", after)
    assert refused.value.field == "moves.pause"
    assert "pause" in (ws.campaigns_dir / "j.yaml").read_text()  # nothing written
    monkeypatch.setattr("needlecast.actions.journeys.utcnow", lambda: NOW + timedelta(hours=1))
    saved = journey_actions.save(engine, ws, ADMIN, "j", after, {"pause": "short"})
    assert saved.version == 1 and saved.changed == {"pause": 6}
    assert {where_is(engine, c)[:2] for c in leads.values()} == {("short", "active")}
    assert {_aware(p["due_at"]) for p in positions(engine).values()} == {NOW + timedelta(days=1, hours=1)}
    sweep(ws, engine, NOW + timedelta(days=1, hours=1))
    assert steps_of(engine, leads["lead0"]) == ["hello", "later"]  # not re-run, not stranded
    with engine.connect() as conn:
        assert conn.execute(select(journey_versions.c.version, journey_versions.c.actor)).all() == [
            (1, "admin@example.com")
        ]
        assert conn.execute(select(audit_log.c.action).where(audit_log.c.action == "journey.saved")).all()


def test_a_removed_nodes_people_may_exit_instead(ws: Workspace) -> None:
    write_journey(ws, BEFORE)
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    after = HEADER + "steps:\n  - {id: hello, template: emails/welcome}\n"
    journey_actions.save(engine, ws, ADMIN, "j", after, {"pause": EXIT_MOVE})
    assert {where_is(engine, c)[1] for c in leads.values()} == {"exited"}
    assert {p["reason"] for p in positions(engine).values()} == {"their node was removed by an edit"}


def test_a_changed_delay_applies_to_those_still_waiting_from_when_they_arrived(ws: Workspace) -> None:
    write_journey(ws, BEFORE)
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    after = HEADER + BEFORE.replace("delay: 3d", "delay: 1d")
    preview = preview_save(ws, engine, "j", after)
    assert preview.retimed == {"pause": 6} and not preview.removed
    journey_actions.save(engine, ws, ADMIN, "j", after)
    assert {_aware(p["due_at"]) for p in positions(engine).values()} == {NOW + timedelta(days=1)}
    sweep(ws, engine, NOW + timedelta(days=1))
    assert steps_of(engine, leads["lead3"]) == ["hello", "later"]


def test_check_finds_people_at_a_node_an_edit_removed_and_repair_moves_them(ws: Workspace) -> None:
    write_journey(ws, BEFORE)
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    write_journey(ws, BEFORE.replace("id: pause,", "id: wait-a-bit,"))  # edited by hand: pause is gone
    assert sweep(ws, engine, NOW + timedelta(days=4)).enqueued == 0  # the sweeper never guesses for them
    report = journey_actions.check(engine, ws, "j")
    assert report.stranded == {"pause": 6} and not report.healthy
    assert journey_overview(engine, ws, "j").stranded == {"pause": 6}
    with pytest.raises(EditRefused):
        journey_actions.repair(engine, ws, ADMIN, "j", {"pause": "nowhere"})
    moved = journey_actions.repair(engine, ws, ADMIN, "j", {"pause": "later"})
    assert moved["pause"] == 6
    assert journey_actions.check(engine, ws, "j").healthy
    assert steps_of(engine, leads["lead2"]) == ["hello", "later"]
    overview = journey_overview(engine, ws, "j")
    assert not overview.stranded
    assert [(n.node, n.waiting, n.done) for n in overview.nodes] == [
        ("hello", 0, 0),
        ("wait-a-bit", 0, 0),
        ("later", 0, 6),
    ]


def test_check_reports_positions_overdue_past_the_sweepers_period(ws: Workspace) -> None:
    write_journey(ws, BEFORE)
    engine = store(ws)
    sweep(ws, engine, NOW - timedelta(days=10))  # due 7 days ago, and no sweep since
    assert journey_actions.check(engine, ws, "j", now=NOW - timedelta(days=7)).healthy  # due just now: fine
    report = journey_actions.check(engine, ws, "j", now=NOW)
    assert report.overdue == 6 and not report.stranded


def test_the_journey_check_command_finds_stranded_people_and_repairs_them_on_request(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cli_runner import run

    write_journey(ws, BEFORE)
    engine = store(ws)
    sweep(ws, engine, NOW)
    write_journey(ws, BEFORE.replace("id: pause,", "id: wait-a-bit,"))
    env = {"NEEDLECAST_DATABASE_URL": ws.database_url, "NEEDLECAST_SECRET": "s" * 40}
    found = run(monkeypatch, ws.root, "journey", "check", **env)
    assert found.code == 1 and "pause: 6" in found.stdout and "--move NODE=TARGET" in found.stdout
    as_json = run(monkeypatch, ws.root, "journey", "check", "--format", "json", **env)
    assert as_json.code == 1 and json.loads(as_json.stdout)[0]["stranded"] == {"pause": 6}
    refused = run(monkeypatch, ws.root, "journey", "check", "j", "--repair", **env)
    assert refused.code != 0 and "pause" in refused.stderr
    repaired = run(monkeypatch, ws.root, "journey", "check", "j", "--repair", "--move", "pause=exit", **env)
    assert repaired.code == 0, repaired.stderr
    assert run(monkeypatch, ws.root, "journey", "check", "j", **env).code == 0
    assert {p["state"] for p in positions(engine).values()} == {"exited"}
