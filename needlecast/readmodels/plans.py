"""The plan preview: who gets what and when, who is excluded and why, what would stop a send. Sends nothing.

Contract: `plan_preview(engine, workspace, campaign_id, days, ...)` plans one campaign (or, with None, every
campaign) for the next `days` days from `now` (default: now) as the planner would
(`campaign.plan.preview.build_plans`, with the web app's `frames` cache when given) and returns, per campaign
(`CampaignPlan`), its emails per day (in `time_zone`, UTC by default), step, variant and arm, the new
enrolments, the exclusions and deferrals by reason, the notes (A/B winners, a cap's earlier effect, why nothing
new is planned) and the article each step draws on; when every campaign is planned, the campaign files that do
not load are `problems` (one asked for by id is its error: `NotFound` for an unknown id). With `csv`, every
planned email (with its address: the file is for the team) is written there and `csv_emails` says how many.
A journey's or a sequence's plan is the journey engine's `forecast`: its expected emails per day and send
node from where people are now (`at_most` marks an upper bound).
The console's campaign page, the API's plan and the command line's `plan` all read this one preview.

Kept: with the web app's `frames`, a preview (without `csv`) is kept (`readmodels.kept.KEPT`) and planned again
off the request when what it depends on changes (`plan_inputs`: the workspace's campaign, segment and settings
files by content, its articles and templates, the audience's fingerprint, the ledger's newest row, the
campaigns' states, the A/B decisions and enrolments) or when it is `KEPT.max_age` seconds old (the clock);
meanwhile the kept one is shown, and `planned_at` says when it was planned. `plan_shown` never waits (a page:
nothing planned yet shows as such); `plan_preview` waits only for a first plan (the API). Without `frames`
(the command line, tests, and every count a send, a schedule or a resume confirms), planned every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from needlecast.audience.frame_cache import FrameCache, fingerprint
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.plan.preview import build_plans, step_articles, summary_rows, write_plan_csv
from needlecast.config import CONFIG_FILE, Workspace
from needlecast.readmodels.elsewhere import Where, opened
from needlecast.readmodels.kept import KEPT, Remote, Shown, files_digest, tree_marks
from needlecast.store.schema import (
    ab_decisions,
    campaign_state,
    contact_events,
    deliveries,
    enrolments,
    events,
    journey_positions,
)


@dataclass(frozen=True)
class CampaignPlan:
    """One campaign's plan over the preview's days."""

    id: str
    kind: str
    segment: str
    emails: list[dict[str, Any]]  # day, step, variant, arm (text; "" for none), recipients (queued emails)
    new_enrolments: int
    excluded: dict[str, int] = field(default_factory=dict)  # not sent, by reason
    deferred: dict[str, int] = field(default_factory=dict)  # sent later, by reason
    notes: list[str] = field(default_factory=list)  # what would stop or hold it (`wording.Note`s)
    articles: dict[str, str] = field(default_factory=dict)  # step -> the article it draws on
    # journeys and sequences: day, node, emails expected, at_most (an upper bound), from the journey engine
    forecast: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(int(row["recipients"]) for row in self.emails)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "segment": self.segment,
            "emails": self.emails,
            "new_enrolments": self.new_enrolments,
            "excluded": self.excluded,
            "deferred": self.deferred,
            "notes": self.notes,
            "articles": self.articles,
            "forecast": self.forecast,
        }


@dataclass(frozen=True)
class PlanPreview:
    days: int
    campaigns: list[CampaignPlan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # campaign files that did not load, with their fix
    csv_emails: int | None = None  # emails written to the CSV, when one was asked for
    planned_at: datetime | None = None  # when it was planned (UTC): a kept preview may be up to a minute old


def forecast_rows(rows: pd.DataFrame | None, time_zone: str) -> list[dict[str, Any]]:
    """A journey's forecast (`journeys.forecast`) as emails per day (in `time_zone`) and send node, in day
    order; `at_most` when the count is an upper bound (after a wait-until or a branch)."""
    if rows is None or rows.empty:
        return []
    days = pd.to_datetime(rows["due_at"], utc=True).dt.tz_convert(time_zone).dt.strftime("%Y-%m-%d")
    by_day = rows.assign(day=days).groupby(["day", "node"], sort=False)  # the rows come in moment order
    grouped = by_day.agg(emails=("emails", "sum"), at_most=("at_most", "any"))
    return [
        {"day": str(day), "node": str(node), "emails": int(r.emails), "at_most": bool(r.at_most)}
        for (day, node), r in grouped.iterrows()
    ]


PLAN_DAYS, JOURNEY_PLAN_DAYS = 14, 30  # `needlecast plan`'s horizon: a broadcast's, a journey's per node


def plan_days(workspace: Workspace, campaign_id: str | None) -> int:
    """How many days `needlecast plan` looks ahead when not told: 30 for a journey or a sequence named alone
    (its forecast per node, as the campaign's page shows it), else 14."""
    if campaign_id is None:
        return PLAN_DAYS
    campaign = CampaignContext.load(workspace).campaigns.get(campaign_id)
    return JOURNEY_PLAN_DAYS if campaign is not None and campaign.journey is not None else PLAN_DAYS


def workspace_marks(workspace: Workspace) -> tuple[object, ...]:
    """What a plan reads from the workspace: the campaign and segment files and the settings by content, the
    articles and templates by modification time and size."""
    files = [*workspace.campaigns_dir.glob("*.y*ml"), *workspace.audiences_dir.glob("*.y*ml")]
    return (
        files_digest([*files, workspace.root / CONFIG_FILE]),
        tree_marks(workspace.content_dir),
        tree_marks(workspace.templates_dir),
    )


def heard_marks(conn: Connection) -> tuple[object, ...]:
    """What a report reads beyond the ledger, each cheaply: the newest provider event, and the clinic's own
    events (bookings) by their newest id and how many there are."""
    heard = conn.execute(select(func.max(events.c.id))).scalar()
    booked = conn.execute(select(func.max(contact_events.c.id), func.count()).select_from(contact_events)).one()
    return (heard, tuple(booked))


def ledger_marks(conn: Connection) -> tuple[object, ...]:
    """What a plan reads from the ledger and the scheduler, each cheaply: the newest ledger row (rows are never
    deleted; an enqueue or a send adds rows), each campaign's state, the A/B decisions, the enrolments, the
    journey positions."""
    newest = conn.execute(select(func.max(deliveries.c.id))).scalar()
    states = conn.execute(
        select(campaign_state.c.campaign_id, campaign_state.c.status, campaign_state.c.digest).order_by(
            campaign_state.c.campaign_id
        )
    ).all()
    decided = conn.execute(select(func.count()).select_from(ab_decisions)).scalar()
    enrolled = conn.execute(select(func.count(), func.max(enrolments.c.enrolled_at))).one()
    # A journey's forecast starts from where people are: a move changes `since` (a scan of the positions,
    # which only journeys fill).
    placed = conn.execute(select(func.count(), func.max(journey_positions.c.since))).one()
    return (newest, tuple(tuple(row) for row in states), decided, *enrolled, *placed)


def kept_context(workspace: Workspace) -> CampaignContext:
    """The workspace's campaigns and content, loaded once and kept (`readmodels.kept`) until a file changes
    (parsing every article takes a while). Shared: read-only."""
    return KEPT.get(
        ("context", str(workspace.root)), workspace_marks(workspace), lambda: CampaignContext.load(workspace)
    )[0]


def plan_inputs(engine: Engine, workspace: Workspace) -> tuple[object, ...]:
    """Everything a kept plan is planned again for at once (see the module contract)."""
    with engine.connect() as conn:
        return (workspace_marks(workspace), fingerprint(conn), ledger_marks(conn))


def plan_preview(
    engine: Engine,
    workspace: Workspace,
    campaign_id: str | None,
    days: int,
    *,
    now: datetime | None = None,
    frames: FrameCache | None = None,
    time_zone: str = "UTC",
    csv: Path | None = None,
) -> PlanPreview:
    """The plan of `campaign_id` (None: every campaign) for `days` days from `now` (see the module contract);
    kept for the web app (`frames` given, no `now`, no `csv`)."""
    if frames is None or csv is not None or now is not None:
        return _planned(engine, workspace, campaign_id, days, now, frames, time_zone, csv)
    name, inputs, compute, remote = _kept_plan(engine, workspace, campaign_id, days, frames, time_zone)
    return KEPT.get(name, inputs, compute, remote=remote)[0]


def plan_shown(
    engine: Engine, workspace: Workspace, campaign_id: str | None, days: int, frames: FrameCache, time_zone: str
) -> Shown[PlanPreview]:
    """The kept plan as a page shows it, never waiting for it to be planned (`kept.Kept.look`): the kept
    preview (perhaps older than a change, while it is planned again: `updating`), or none yet (`ready`
    False: planned off the request; the page says so and updates itself). Never for a count a send confirms."""
    name, inputs, compute, remote = _kept_plan(engine, workspace, campaign_id, days, frames, time_zone)
    return KEPT.look(name, inputs, compute, remote=remote)


def _kept_plan(
    engine: Engine, workspace: Workspace, campaign_id: str | None, days: int, frames: FrameCache, time_zone: str
) -> tuple[tuple[object, ...], tuple[object, ...], Callable[[], PlanPreview], Remote | None]:
    """(name, inputs, compute, remote) of a kept plan (`remote`: the same plan in another process, see
    `plan_elsewhere`; None where that process could not open the same workspace and database)."""
    name = ("plan", str(workspace.root), str(engine.url), campaign_id, days, time_zone)

    def plan_now() -> PlanPreview:
        return _planned(engine, workspace, campaign_id, days, None, frames, time_zone, None)

    where = Where.of(engine, workspace)
    remote = Remote(plan_elsewhere, (where, campaign_id, days, time_zone)) if where is not None else None
    return name, plan_inputs(engine, workspace), plan_now, remote


def plan_elsewhere(where: Where, campaign_id: str | None, days: int, time_zone: str) -> PlanPreview:
    """A kept plan, worked out in the kept figures' process (`kept.Remote`) from its own engine, workspace and
    audience cache (`elsewhere.opened`)."""
    engine, workspace, frames = opened(where)
    return _planned(engine, workspace, campaign_id, days, None, frames, time_zone, None)


def _planned(
    engine: Engine,
    workspace: Workspace,
    campaign_id: str | None,
    days: int,
    now: datetime | None,
    frames: FrameCache | None,
    time_zone: str,
    csv: Path | None,
) -> PlanPreview:
    """The plan, planned now."""
    now = now or datetime.now(UTC)
    ctx = CampaignContext.load(workspace)  # once: the plans and each step's article read the same files
    result = build_plans(workspace, engine, campaign_id, days, now, audience=frames, context=ctx)
    written = write_plan_csv(result.plans, csv) if csv else None
    campaigns = [
        CampaignPlan(
            item.campaign.id,
            item.campaign.kind,
            item.campaign.segment,
            [
                {
                    "day": str(row["day"]),
                    "step": str(row["step"]),
                    "variant": str(row["variant"]),
                    "arm": str(row["arm"]),
                    "recipients": int(row["recipients"]),
                }
                for row in summary_rows(item, time_zone).to_dict("records")
            ],
            len(item.new_enrolments),
            {reason: int(count) for reason, count in item.excluded.items()},
            {reason: int(count) for reason, count in item.deferred.items()},
            list(item.notes),
            step_articles(ctx, item.campaign),
            forecast_rows(item.forecast, time_zone),
        )
        for item in result.plans
    ]
    return PlanPreview(days, campaigns, [str(p) for p in result.problems], written, now)
