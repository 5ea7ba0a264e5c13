"""Warming the web app's kept figures (`readmodels.kept`) when it starts, so that the first views find them.

Contract: `warm_figures(engine, workspace, frames, plan_days)` works out, one after the other in the calling
thread (the web app runs it in a thread of its own when it starts), what the heavy pages show, under the
names and inputs the pages ask for: the campaigns' overviews (home, campaign list), the sent emails' figures
(home, reports) and the reports' comparison without filters (Reports), every segment's summary (Audiences),
the audience's growth (home), each campaign's page (its files, content checks and ledger counts), every
campaign's plan over `plan_days` days on the clinic's clock (its page), the web app's own audience frame (a
segment's page) and this week's calendar (home). The plans, the calendar, the segment sizes and the
comparison are worked out in the kept figures' process (`readmodels.kept`), this thread waiting for each. A
figure that fails is logged (its kind and the error's type: no personal data) and the next one is warmed;
nothing is raised. A page asked before its figure is warm shows a placeholder (`Kept.look`), never waits.
`ON_START` (True) says whether the web app warms them; the tests turn it off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import Engine

from needlecast.audience.frame_cache import FrameCache
from needlecast.config import Workspace

ON_START = True
log = logging.getLogger("needlecast.kept")


def _each(kind: str, work: Callable[[], object]) -> None:
    try:
        work()
    except Exception as error:  # one figure that fails must not keep the others cold
        log.warning("a kept figure (%s) could not be warmed: %s", kind, type(error).__name__)


def _audience(engine: Engine, frames: FrameCache) -> None:
    """The web app's own audience frame (a segment's page, the contact list by segment): the plans and the
    segment sizes are worked out in the kept figures' process, which reads its own."""
    with engine.connect() as conn:
        frames.frame(conn)


def warm_figures(engine: Engine, workspace: Workspace, frames: FrameCache, plan_days: int) -> None:
    """Work the heavy pages' figures out now (see the module contract)."""
    from needlecast.readmodels import campaigns, home, plans, reports, segments

    now = datetime.now(UTC)
    zone = workspace.settings.clinic.time_zone
    loaded: list[home.Campaigns] = []
    _each("campaigns", lambda: loaded.append(home.load_campaigns(engine, workspace, now, frames=frames)))
    ids = sorted(loaded[0].ctx.campaigns) if loaded else []
    _each("sent emails", lambda: home.sent_emails(engine, workspace, frames=frames))
    _each("comparison", lambda: reports.kept_comparison(engine, workspace, reports.comparison_filters()))
    _each("segments", lambda: segments.segment_summaries(engine, workspace, frames))
    _each("growth", lambda: home.growth(engine, workspace, home.clinic_today(workspace, now), frames=frames))
    for campaign_id in ids:  # its page's files, checks and counts (the plan is started there, off this thread)
        _each(
            "campaign page", partial(campaigns.campaign_page, engine, workspace, campaign_id, plan_days, frames=frames)
        )
    for campaign_id in ids:  # each plan waited for in turn: one at a time, not every campaign's at once
        plan = partial(plans.plan_preview, engine, workspace, campaign_id, plan_days, frames=frames, time_zone=zone)
        _each("plan", plan)
    _each("audience", lambda: _audience(engine, frames))
    if loaded:
        _each(
            "calendar", lambda: home.calendar(engine, workspace, "week", None, now, frames=frames, campaigns=loaded[0])
        )
