"""The console's kept figures (`readmodels.kept`): a plan, the segment summary and the home page's figures are
computed once and read from memory while nothing they depend on changed, and computed again at once after an
import, a suppression or an edit to a campaign file; an old figure is given at once and refreshed off the
request."""

from __future__ import annotations

import logging
import threading
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
from needlecast.readmodels.kept import KEPT, Kept, Shown
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


class Runs:
    """A `run_later` that starts each refresh in a thread of its own and keeps the threads, so a test can
    wait for them (join) instead of sleeping."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def __call__(self, work: Callable[[], None]) -> None:
        thread = threading.Thread(target=work, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)
            assert not thread.is_alive()


def _counter() -> tuple[list[str], Callable[[str, threading.Event | None], Callable[[], str]]]:
    computed: list[str] = []

    def compute(value: str, gate: threading.Event | None = None) -> Callable[[], str]:
        def work() -> str:
            if gate is not None:
                assert gate.wait(60)
            computed.append(value)
            return value

        return work

    return computed, compute


def test_a_changed_input_shows_the_kept_figure_while_one_refresh_works_it_out_then_the_new_one() -> None:
    runs = Runs()
    kept = Kept(max_age=3600, run_later=runs)
    computed, compute = _counter()
    first, first_at = kept.get("n", "a", compute("A", None))  # nothing kept: worked out for the caller
    assert first == "A" and kept.look("n", "a", compute("X", None)) == Shown("A", first_at, False)

    gate = threading.Event()
    shown = kept.look("n", "b", compute("B", gate))  # the inputs changed: the kept figure, at once
    assert shown.figure == "A" and shown.computed_at == first_at and shown.updating and shown.ready
    again = kept.look("n", "c", compute("C", gate))  # changed again while the refresh runs: no second one
    assert again.figure == "A" and again.updating and len(runs.threads) == 1
    assert kept.get("n", "b", compute("B2", None))[0] == "A"  # a caller that needs a figure does not wait either

    gate.set()
    runs.join()
    fresh = kept.look("n", "b", compute("X", None))
    assert fresh.figure == "B" and not fresh.updating and fresh.computed_at is not None
    assert fresh.computed_at >= first_at and computed == ["A", "B"]


def test_an_old_figure_is_shown_at_once_and_worked_out_again_once() -> None:
    runs = Runs()
    kept = Kept(max_age=3600, run_later=runs)
    computed, compute = _counter()
    kept.get("n", "a", compute("A", None))
    kept.max_age = 0  # old: shown at once, worked out again off the request
    gate = threading.Event()
    assert kept.look("n", "a", compute("A2", gate)).figure == "A"
    assert kept.look("n", "a", compute("A3", gate)).figure == "A" and len(runs.threads) == 1
    gate.set()
    runs.join()
    kept.max_age = 3600
    assert kept.look("n", "a", compute("X", None)).figure == "A2" and computed == ["A", "A2"]


def test_a_failing_refresh_keeps_the_old_figure_and_logs_no_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    runs = Runs()
    kept = Kept(max_age=3600, run_later=runs)
    kept.get(("plan", "/clinic"), "a", lambda: "A")

    def fails() -> str:
        raise ValueError("ana@example.org has no consent")

    with caplog.at_level(logging.WARNING, logger="needlecast.kept"):
        assert kept.look(("plan", "/clinic"), "b", fails).figure == "A"
        runs.join()
    shown = kept.look(("plan", "/clinic"), "b", fails)
    assert shown.figure == "A" and not shown.updating  # kept, and not tried again at once for the same inputs
    assert len(runs.threads) == 1
    assert "plan" in caplog.text and "ValueError" in caplog.text
    assert "ana@example.org" not in caplog.text and "/clinic" not in caplog.text
    gate = threading.Event()
    assert kept.look(("plan", "/clinic"), "c", lambda: "C" if gate.wait(60) else "").figure == "A"
    assert len(runs.threads) == 2  # other inputs: tried again
    gate.set()
    runs.join()
    assert kept.look(("plan", "/clinic"), "c", lambda: "X").figure == "C"


def test_nothing_kept_yet_shows_no_figure_and_works_it_out_once_off_the_request() -> None:
    runs = Runs()
    kept = Kept(max_age=3600, run_later=runs)
    computed, compute = _counter()
    gate = threading.Event()
    shown = kept.look("n", "a", compute("A", gate))
    assert not shown.ready and shown.figure is None and shown.updating
    assert not kept.look("n", "a", compute("A2", gate)).ready and len(runs.threads) == 1
    waiting: list[object] = []
    waiter = threading.Thread(target=lambda: waiting.append(kept.get("n", "a", compute("A3", None))[0]))
    waiter.start()  # a caller that needs the figure waits for the one being worked out, not a second one
    gate.set()
    runs.join()
    waiter.join(60)
    assert waiting == ["A"] and computed == ["A"]
    assert kept.look("n", "a", compute("X", None)).figure == "A"


def test_a_first_figure_that_fails_reaches_the_page_as_its_error() -> None:
    runs = Runs()
    kept = Kept(max_age=3600, run_later=runs)

    def fails() -> str:
        raise LookupError("no such segment")

    assert not kept.look("n", "a", fails).ready
    runs.join()
    with pytest.raises(LookupError):  # the same inputs failed: worked out in line, so the page shows why
        kept.look("n", "a", fails)


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
