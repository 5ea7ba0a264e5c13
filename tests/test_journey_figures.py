"""A journey measured: who is waiting at, passed through and left from each node, the paths people took and
their conversion, one node's people (masked), and the report's funnel per node; counted in the database, on
SQLite and PostgreSQL, with a frozen clock."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.journeys.model import walked
from needlecast.config import Workspace
from needlecast.readmodels import journey_figures
from needlecast.readmodels.journey_diagram import diagram, layers
from needlecast.readmodels.journey_figures import figures_of, journey_tables, node_people
from needlecast.readmodels.reports import campaign_report, report_file, send_report
from needlecast.store.schema import deliveries, journey_positions
from tests.cli_runner import run
from tests.journey_helpers import NOW, journey_workspace, record_event, store, sweep, write_journey
from tests.journey_helpers import ids as lead_ids

RECALL = """
goal: {event: purchased}
steps:
  - {id: welcome, template: emails/welcome}
  - {id: booked-yet, kind: wait_until, event: booked, timeout: 7d, next: thanks, on_timeout: route}
  - id: route
    kind: branch
    paths:
      - {when: [{tag: vip}], next: vip}
    default: pause
  - {id: vip, template: emails/consultation, next: done}
  - {id: pause, kind: wait, delay: 3d}
  - {id: nudge, template: emails/deep_dive, next: done}
  - {id: thanks, template: emails/deep_dive}
  - {id: done, kind: exit}
"""


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return journey_workspace(workspace_dir, store_url, monkeypatch)


def walked_journey(ws: Workspace) -> None:
    """Six leads walk RECALL for a week: lead1 books (thanks, then done), lead3 (vip) times out to the vip
    email and done, the other four time out to the pause, where they wait."""
    write_journey(ws, RECALL)
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    record_event(engine, leads["lead1"], "booked", NOW + timedelta(days=1), "b1")
    sweep(ws, engine, NOW + timedelta(days=1, hours=1))
    sweep(ws, engine, NOW + timedelta(days=7, hours=2))


def test_each_node_counts_who_waits_there_passed_through_and_left_there(ws: Workspace) -> None:
    walked_journey(ws)
    figures = figures_of(store(ws), ws, "j")
    counted = {n.node: (n.reached, n.waiting, n.passed, n.left) for n in figures.nodes}
    assert figures.entered == 6 and figures.unwalked == 0 and figures.stranded == {}
    assert counted == {
        "welcome": (6, 0, 6, 0),
        "booked-yet": (6, 0, 6, 0),
        "route": (5, 0, 5, 0),
        "vip": (1, 0, 1, 0),
        "pause": (4, 4, 0, 0),
        "nudge": (0, 0, 0, 0),
        "thanks": (1, 0, 1, 0),
        "done": (2, 0, 0, 2),
    }
    paths = {p.path: (p.entries, p.waiting, p.converted) for p in figures.paths}
    assert paths == {
        "booked-yet → route, route → pause": (4, 4, 0),
        "booked-yet → route, route → vip": (1, 0, 0),
        "booked-yet → thanks": (1, 0, 0),
    }


def test_the_goal_counts_as_the_conversion_of_the_path_taken(ws: Workspace) -> None:
    walked_journey(ws)
    engine = store(ws)
    leads = lead_ids(engine)
    record_event(engine, leads["lead0"], "purchased", NOW + timedelta(days=8), "p0")
    sweep(ws, engine, NOW + timedelta(days=8, hours=1))
    figures = figures_of(engine, ws, "j")
    paths = {p.path: (p.entries, p.waiting, p.converted) for p in figures.paths}
    assert paths["booked-yet → route, route → pause"] == (4, 3, 1)
    pause = next(n for n in figures.nodes if n.node == "pause")
    assert (pause.waiting, pause.left, pause.converted) == (3, 1, 1)


def test_people_at_a_node_a_file_no_longer_has_are_listed_as_stranded(ws: Workspace) -> None:
    walked_journey(ws)
    engine = store(ws)
    leads = lead_ids(engine)
    with engine.begin() as conn:
        conn.execute(
            update(journey_positions)
            .where(journey_positions.c.contact_id == leads["lead0"])
            .values(node="old-step", path="")
        )
    figures = figures_of(engine, ws, "j")
    assert figures.stranded == {"old-step": 1}
    assert next(n for n in figures.nodes if n.node == "pause").waiting == 3
    shown = node_people(engine, ws, "j", "old-step", left=False, page=1, unmasked=False)
    assert shown.node is None and shown.total == 1


def test_a_nodes_people_are_paged_and_masked_unless_the_viewer_may_see_them(ws: Workspace) -> None:
    walked_journey(ws)
    engine = store(ws)
    masked = node_people(engine, ws, "j", "pause", left=False, page=1, unmasked=False)
    assert masked.total == 4 and masked.pages == 1
    assert all("@" in p.email and "lead" not in p.email for p in masked.people)
    assert {p.name for p in masked.people} == {"L***"}
    plain = node_people(engine, ws, "j", "pause", left=False, page=1, unmasked=True)
    assert {p.email for p in plain.people} == {f"lead{i}@example.com" for i in (0, 2, 4, 5)}
    with pytest.MonkeyPatch.context() as patch:  # pages of 3: the four at the pause fill two
        patch.setattr(journey_figures, "PAGE_SIZE", 3)
        pages = [node_people(engine, ws, "j", "pause", left=False, page=n, unmasked=True) for n in (1, 2)]
    assert [(p.page, p.pages, len(p.people)) for p in pages] == [(1, 2, 3), (2, 2, 1)]
    assert {p.email for page in pages for p in page.people} == {p.email for p in plain.people}
    gone = node_people(engine, ws, "j", "done", left=True, page=1, unmasked=True)
    assert {p.email for p in gone.people} == {"lead1@example.com", "lead3@example.com"}
    assert {p.reason for p in gone.people} == {"exit at done"}


def test_the_report_of_a_journey_has_a_funnel_per_node_and_its_paths(ws: Workspace) -> None:
    walked_journey(ws)
    engine = store(ws)
    with engine.begin() as conn:  # the welcome emails went out (the sender's part, not the sweeper's)
        conn.execute(update(deliveries).where(deliveries.c.step_id == "welcome").values(status="sent", sent_at=NOW))
    data = campaign_report(engine, ws, "j")
    per_node = data.journey_funnel.set_index("node")
    assert per_node.loc["(entered)", "reached"] == 6
    assert per_node.loc["welcome", "sent"] == 6 and per_node.loc["vip", "sent"] == 0
    assert per_node.loc["pause", "waiting"] == 4 and per_node.loc["route", "passed"] == 5
    assert set(data.journey_paths["path"]) == {
        "booked-yet → route, route → pause",
        "booked-yet → route, route → vip",
        "booked-yet → thanks",
    }
    assert "journey_funnel" in data.tables() and "journey_funnel" in send_report(engine, ws, "j").tables()
    campaign = CampaignContext.load(ws).campaign("j")
    assert journey_tables(engine, campaign, data.funnel)[0].equals(data.journey_funnel)
    for kind in ("xlsx", "html", "csv"):  # every download carries them (a sheet's name fits in 31 characters)
        assert report_file(data, kind, "Send report: j")
    assert "Funnel per step of the journey" in report_file(data, "html", "Send report: j").decode()


@pytest.mark.database_independent
def test_a_walk_follows_the_choices_and_gives_up_on_a_path_that_no_longer_fits(
    workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = journey_workspace(workspace_dir, f"sqlite:///{tmp_path / 'w.db'}", monkeypatch)
    write_journey(ws, RECALL)
    journey = CampaignContext.load(ws).campaign("j").journey
    assert journey is not None
    assert walked(journey, "booked-yet>route;route>pause;", "pause") == [
        "welcome",
        "booked-yet",
        "route",
        "pause",
    ]
    assert walked(journey, "", "booked-yet") == ["welcome", "booked-yet"]
    assert walked(journey, "", "pause") is None  # a choice is missing: moved there by an edit
    assert walked(journey, "route>vip;", "vip") is None


@pytest.mark.database_independent
def test_the_command_line_plans_a_journey_30_days_ahead_and_reports_its_funnel_per_node(
    workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    ws = journey_workspace(workspace_dir, url, monkeypatch)
    walked_journey(ws)
    env = {"NEEDLECAST_DATABASE_URL": url, "NEEDLECAST_SECRET": "x" * 32}
    planned = run(monkeypatch, workspace_dir, "plan", "j", "--format", "json", **env)
    assert planned.code == 0, planned.stderr
    assert json.loads(planned.stdout)["days"] == 30
    assert json.loads(run(monkeypatch, workspace_dir, "plan", "--format", "json", **env).stdout)["days"] == 14
    assert (
        json.loads(run(monkeypatch, workspace_dir, "plan", "j", "--days", "7", "--format", "json", **env).stdout)[
            "days"
        ]
        == 7
    )
    report = run(monkeypatch, workspace_dir, "report", "j", **env)
    assert report.code == 0, report.stderr
    assert "Funnel per step of the journey" in report.stdout and "Paths taken through the journey" in report.stdout
    assert "booked-yet → route, route → pause" in report.stdout


@pytest.mark.database_independent
def test_the_diagram_is_layered_from_the_start_draws_loops_round_the_side_and_carries_no_style(
    workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = journey_workspace(workspace_dir, f"sqlite:///{tmp_path / 'd.db'}", monkeypatch)
    write_journey(ws, RECALL)
    journey = CampaignContext.load(ws).campaign("j").journey
    assert journey is not None
    assert layers(journey) == [["welcome"], ["booked-yet"], ["thanks", "route"], ["vip", "pause"], ["nudge"], ["done"]]
    looping = RECALL.replace(
        "{id: nudge, template: emails/deep_dive, next: done}", "{id: nudge, kind: goto, next: route}"
    )
    write_journey(ws, looping)
    engine = store(ws)
    figures = figures_of(engine, ws, "j")
    first = diagram(figures, lambda node: f"/nodes/{node}")
    assert first == diagram(figures_of(engine, ws, "j"), lambda node: f"/nodes/{node}")  # deterministic
    assert "style=" not in first and "<script" not in first
    assert first.count('class="jd-node"') == len(journey.nodes)
    assert 'stroke-dasharray="5 3"' in first  # the loop from nudge back to route, round the right side
    assert 'href="/nodes/booked-yet"' in first and "after 7 days" in first and "when they book" in first
