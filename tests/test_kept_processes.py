"""Kept figures worked out in another process (`readmodels.kept.Remote`, `readmodels.elsewhere`): the figure
really comes from another process, a failure there keeps the old figure, a plan worked out there is the one
worked out here, and the web app allows the processes from its start to its end. (The rest of the suite works
kept figures out in its own process: tests/conftest.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import select
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine

from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.importer import import_file
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.readmodels import cohorts as cohorts_read
from needlecast.readmodels import home, kept
from needlecast.readmodels import reports as reports_read
from needlecast.readmodels.elsewhere import Where, process_id
from needlecast.readmodels.kept import KEPT, Kept, Remote, run_inline
from needlecast.readmodels.plans import _kept_plan, plan_preview
from needlecast.readmodels.segments import _kept_summaries, segment_summaries
from needlecast.web.app import create_app
from tests.conftest import REPO
from tests.test_compare import LEDGER
from tests.test_report_figures import store

pytestmark = pytest.mark.database_independent  # what runs in which process, not what a database does
DAYS = 200  # spring-guide sends on 2 March 2027


class Refused(ValueError):
    """What the failing computation raises (module-level: it travels back from the process by pickle)."""


def _refuse() -> int:
    raise Refused("refused, in another process")


@pytest.fixture()
def in_processes() -> Iterator[Kept]:
    """A `Kept` that works figures with a `remote` out in one other process, in the asking thread (so a test
    has its figure when `look` returns, without waiting on time)."""
    figures = Kept(run_later=run_inline)
    figures.start_processes(1)
    yield figures
    figures.stop_processes()


def test_a_figure_with_a_remote_is_worked_out_in_another_process(in_processes: Kept) -> None:
    shown = in_processes.look("pid", 1, os.getpid, remote=Remote(process_id))
    assert shown.ready
    assert isinstance(shown.figure, int)
    assert shown.figure != os.getpid()
    # the same process the next time (the pool is kept), and this process's own without a remote
    assert in_processes.look("pid", 2, os.getpid, remote=Remote(process_id)).figure == shown.figure
    assert in_processes.look("here", 1, os.getpid).figure == os.getpid()


def test_a_computation_that_fails_in_the_process_keeps_the_old_figure(
    in_processes: Kept, caplog: pytest.LogCaptureFixture
) -> None:
    first = in_processes.look(("plan", "/a/private/path"), 1, os.getpid, remote=Remote(process_id)).figure
    with caplog.at_level(logging.WARNING, logger="needlecast.kept"):
        shown = in_processes.look(("plan", "/a/private/path"), 2, os.getpid, remote=Remote(_refuse))
    assert shown.figure == first
    assert not shown.updating
    assert [r.getMessage() for r in caplog.records] == ["a kept figure (plan) could not be worked out again: Refused"]
    # tried again only once its inputs change: then worked out in the process again
    assert in_processes.look(("plan", "/a/private/path"), 3, os.getpid, remote=Remote(process_id)).figure == first


def test_without_processes_a_remote_is_ignored_and_the_figure_worked_out_here() -> None:
    figures = Kept(run_later=run_inline)
    assert figures.look("pid", 1, os.getpid, remote=Remote(process_id)).figure == os.getpid()
    figures.start_processes(0)  # no workers: still here
    assert figures.look("pid", 2, os.getpid, remote=Remote(process_id)).figure == os.getpid()


def test_where_is_none_for_a_database_another_process_cannot_open(workspace: Workspace) -> None:
    memory = create_engine("sqlite://")
    assert Where.of(memory, workspace) is None
    assert Where.of(create_engine("sqlite:///:memory:"), workspace) is None


def test_settings_given_in_code_travel_to_the_process(workspace: Workspace, engine: Engine) -> None:
    clinic = dataclasses.replace(workspace.settings.clinic, name="A clinic named in code")
    given = Workspace(root=workspace.root, settings=dataclasses.replace(workspace.settings, clinic=clinic))
    where = Where.of(engine, given)
    assert where is not None
    assert where.settings.clinic.name == "A clinic named in code"
    assert where.url == engine.url.render_as_string(hide_password=False)


def test_a_plan_and_the_segments_worked_out_in_another_process_are_the_ones_worked_out_here(
    engine: Engine, workspace: Workspace, in_processes: Kept
) -> None:
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    frames = FrameCache(engine)
    name, inputs, compute, remote = _kept_plan(engine, workspace, "spring-guide", DAYS, frames, "UTC")
    assert remote is not None
    elsewhere = in_processes.look(name, inputs, compute, remote=remote).figure
    assert elsewhere is not None and elsewhere.campaigns[0].total > 0
    here = plan_preview(engine, workspace, "spring-guide", DAYS, now=elsewhere.planned_at)
    assert dataclasses.replace(elsewhere, planned_at=None) == dataclasses.replace(here, planned_at=None)

    name, inputs, compute, remote = _kept_summaries(engine, workspace, frames)
    assert remote is not None
    assert in_processes.look(name, inputs, compute, remote=remote).figure == segment_summaries(engine, workspace)


def test_the_home_pages_sent_emails_and_growth_worked_out_in_another_process_are_the_ones_worked_out_here(
    engine: Engine, workspace: Workspace, in_processes: Kept
) -> None:
    """During a send the ledger changes all the time: the home page's counts are worked out in the kept
    figures' process, and they are the ones worked out here."""
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    store(engine, LEDGER, set(), random.Random(0))
    name, inputs, compute, remote = home._kept_sent(engine, workspace)
    assert remote is not None
    elsewhere = in_processes.look(name, inputs, compute, remote=remote).figure
    assert elsewhere is not None and int(elsewhere["emails"].sum()) > 0
    pd.testing.assert_frame_equal(elsewhere, home.sent_emails(engine, workspace))

    today = date(2026, 12, 7)
    name, inputs, compute, remote = home._kept_growth(engine, workspace, today)
    assert remote is not None
    grown = in_processes.look(name, inputs, compute, remote=remote).figure
    assert grown == home.growth(engine, workspace, today)


def test_a_campaigns_report_and_the_cohorts_worked_out_in_another_process_are_the_ones_worked_out_here(
    engine: Engine, workspace: Workspace, in_processes: Kept
) -> None:
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    store(engine, LEDGER, set(), random.Random(0))
    where = Where.of(engine, workspace)
    assert where is not None
    report = Remote(reports_read.report_elsewhere, (where, "spring-guide"))
    elsewhere = in_processes.look(("report",), 1, os.getpid, remote=report).figure
    here = reports_read.report_page(reports_read.campaign_report(engine, workspace, "spring-guide"))
    assert elsewhere == here and here.tables
    cohorts = Remote(cohorts_read.cohorts_elsewhere, (where, "source"))
    tables = in_processes.look(("cohorts",), 1, os.getpid, remote=cohorts).figure
    assert tables is not None
    here_tables = cohorts_read.cohort_tables(engine, workspace, "source", datetime.now(UTC))
    pd.testing.assert_frame_equal(tables.cohorts, here_tables.cohorts)
    pd.testing.assert_frame_equal(tables.revenue, here_tables.revenue)


def test_the_web_app_allows_processes_from_its_start_to_its_end(
    engine: Engine, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kept, "WORKERS", 1)
    app = create_app(workspace, engine)
    assert KEPT._users == 0

    async def running() -> None:
        async with app.router.lifespan_context(app):
            assert KEPT._users == 1 and KEPT._workers == 1
            assert KEPT._pool is None  # made when a figure first needs it

    # In a thread of its own: a browser test before this one in the same worker leaves Playwright's event loop
    # running in this thread, where `asyncio.run` refuses to start another.
    with ThreadPoolExecutor(1) as own:
        own.submit(asyncio.run, running()).result()
    assert KEPT._users == 0 and KEPT._pool is None


def test_warming_works_out_the_comparison_and_the_web_apps_own_audience_frame(
    engine: Engine, workspace: Workspace
) -> None:
    """The figures the first views ask for are warm, including the two worked out in another process while the
    web app runs (the comparison) or read by the web app itself (its audience frame, for a segment's page)."""
    from needlecast.readmodels.warm import warm_figures

    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    frames = FrameCache(engine)
    read: list[object] = []
    original = frames.frame

    def noted(conn: object) -> object:
        read.append(conn)
        return original(conn)  # type: ignore[arg-type]

    frames.frame = noted  # type: ignore[method-assign]
    warm_figures(engine, workspace, frames, 14)
    kinds = {name[0] for name in KEPT._entries if isinstance(name, tuple)}
    assert {"campaigns", "sent emails", "comparison", "segments", "plan", "calendar"} <= kinds
    assert read  # the web app's own frame was read


ORPHAN_SCRIPT = """
import os, sys
from needlecast.readmodels.elsewhere import process_id
from needlecast.readmodels.kept import Kept, Remote, run_inline
figures = Kept(run_later=run_inline)
figures.start_processes(1)
print(figures.look("pid", 1, os.getpid, remote=Remote(process_id)).figure, flush=True)
sys.stdin.read()  # until the test kills this process
"""


def test_a_pool_process_ends_when_the_process_that_made_it_is_killed(tmp_path: Path) -> None:
    """A SIGKILL gives the web app no chance to shut its pool down: the pool's process must not live on."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=tmp_path,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert child != parent.pid
        ended = os.pidfd_open(child)  # readable once that process has ended
    finally:
        parent.kill()
        parent.wait()
    try:
        readable, _, _ = select.select([ended], [], [], 120)
        assert readable, "the pool's process outlived the process that made it"
    finally:
        os.close(ended)
