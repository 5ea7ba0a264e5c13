"""The console's kept figures (`readmodels.kept`): a plan, the segment summary and the home page's figures are
computed once and read from memory while nothing they depend on changed, and computed again at once after an
import, a suppression or an edit to a campaign file; an old figure is given at once and refreshed off the
request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.importer import import_file
from needlecast.audience.suppression import suppress
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.readmodels import home
from needlecast.readmodels.kept import KEPT, Kept
from needlecast.readmodels.plans import PlanPreview, plan_preview
from needlecast.readmodels.segments import segment_summaries
from needlecast.store.schema import contacts

DAYS = 200  # spring-guide sends on 2 March 2027
LATER_LEADS = "email,first_name,concern,marketing_consent,concern_consent\n" + "".join(
    f"later{i}@example.org,Later,acne,yes,yes\n" for i in range(5)
)


@pytest.fixture(autouse=True)
def _nothing_kept() -> None:
    KEPT.clear()


def _a_member(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(contacts.c.email).order_by(contacts.c.id).limit(1)).scalar_one())


def _plan(engine: Engine, workspace: Workspace, frames: FrameCache) -> PlanPreview:
    return plan_preview(engine, workspace, "spring-guide", DAYS, frames=frames)


def test_kept_gives_the_same_figure_until_its_inputs_change_and_refreshes_an_old_one_off_the_request() -> None:
    later: list[Callable[[], None]] = []
    kept = Kept(max_age=3600, run_later=later.append)
    computed: list[int] = []

    def compute() -> int:
        computed.append(len(computed))
        return len(computed)

    assert kept.get("n", "a", compute)[0] == 1
    assert kept.get("n", "a", compute)[0] == 1 and computed == [0]  # kept
    assert kept.get("n", "b", compute)[0] == 2  # another input: computed at once
    kept.max_age = 0  # old: given at once, computed again later
    assert kept.get("n", "b", compute)[0] == 2 and len(later) == 1
    assert kept.get("n", "b", compute)[0] == 2 and len(later) == 1  # one refresh at a time
    later.pop()()
    kept.max_age = 3600
    figure, at = kept.get("n", "b", compute)
    assert figure == 3 and at <= datetime.now(UTC)


def test_a_kept_plan_is_planned_again_after_an_import_a_suppression_and_a_file_edit(
    engine: Engine, workspace: Workspace, tmp_path: Path
) -> None:
    vocabulary = load_vocabulary_for(workspace)
    import_file(engine, workspace.audiences_dir / "sample.csv", vocabulary)
    frames = FrameCache(engine)
    first = _plan(engine, workspace, frames)
    assert _plan(engine, workspace, frames) is first  # nothing changed: the kept plan

    leads = tmp_path / "later.csv"
    leads.write_text(LATER_LEADS)
    import_file(engine, leads, vocabulary)
    imported = _plan(engine, workspace, frames)
    assert imported is not first
    assert imported.campaigns[0].total == first.campaigns[0].total + 5
    assert imported == plan_preview(engine, workspace, "spring-guide", DAYS, now=imported.planned_at)

    with engine.begin() as conn:
        suppress(conn, _a_member(engine), "complaint")
    suppressed = _plan(engine, workspace, frames)
    assert suppressed is not imported
    assert suppressed.campaigns[0].total == imported.campaigns[0].total - 1

    campaign = workspace.campaigns_dir / "spring-guide.yaml"
    campaign.write_text(campaign.read_text().replace("segment: all-leads", "segment: acne"))
    edited = _plan(engine, workspace, frames)
    assert edited is not suppressed
    assert edited.campaigns[0].segment == "acne"
    assert edited.campaigns[0].total < suppressed.campaigns[0].total


def test_the_kept_segment_summary_and_home_figures_follow_the_audience(
    engine: Engine, workspace: Workspace, tmp_path: Path
) -> None:
    vocabulary = load_vocabulary_for(workspace)
    import_file(engine, workspace.audiences_dir / "sample.csv", vocabulary)
    frames = FrameCache(engine)
    summary = segment_summaries(engine, workspace, frames)
    assert segment_summaries(engine, workspace, frames) is summary
    today = home.clinic_today(workspace)
    grown = home.growth(engine, workspace, today, frames=frames)
    assert home.growth(engine, workspace, today, frames=frames) is grown

    leads = tmp_path / "later.csv"
    leads.write_text(LATER_LEADS)
    import_file(engine, leads, vocabulary)
    after_import = segment_summaries(engine, workspace, frames)
    assert after_import.contacts == summary.contacts + 5
    assert after_import == segment_summaries(engine, workspace)  # the same figures as counted afresh
    assert home.growth(engine, workspace, today, frames=frames) == home.growth(engine, workspace, today)

    with engine.begin() as conn:
        suppress(conn, "later0@example.org", "unsubscribed")
    after_suppression = segment_summaries(engine, workspace, frames)
    assert after_suppression != after_import
    assert after_suppression == segment_summaries(engine, workspace)
    assert home.growth(engine, workspace, today, frames=frames) == home.growth(engine, workspace, today)

    segments = workspace.audiences_dir / "segments.yaml"
    segments.write_text(segments.read_text() + "\n")  # an edit that changes nothing counted: counted again all the same
    assert segment_summaries(engine, workspace, frames) is not after_suppression


def test_the_kept_calendar_and_campaigns_follow_a_schedule(engine: Engine, workspace: Workspace) -> None:
    from needlecast.accounts.roles import cli_actor
    from needlecast.actions import campaigns as campaign_actions

    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    frames = FrameCache(engine)
    now = datetime.now(UTC)
    before = home.load_campaigns(engine, workspace, now, frames=frames)
    assert home.load_campaigns(engine, workspace, now, frames=frames) is before
    calendar = home.calendar(engine, workspace, "month", None, now, frames=frames, campaigns=before)
    assert calendar.planned == 0  # nothing live
    campaign_actions.schedule(engine, workspace, cli_actor(), "spring-guide")
    after = home.load_campaigns(engine, workspace, datetime.now(UTC), frames=frames)
    assert after is not before
    assert {o.id: o.state for o in after.overviews}["spring-guide"] == "active"
    shown = home.calendar(engine, workspace, "month", None, datetime.now(UTC), frames=frames, campaigns=after)
    fresh = home.calendar(engine, workspace, "month", None, datetime.now(UTC), campaigns=after)
    assert shown.planned == fresh.planned
