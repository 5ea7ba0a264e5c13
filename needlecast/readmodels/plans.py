"""The plan preview: who gets what and when, who is excluded and why, what would stop a send. Sends nothing.

Contract: `plan_preview(workspace, engine, campaign_id, days, now, csv)` plans every campaign (or one) for the
next `days` days from `now` as the planner would (`campaign.plan.preview.build_plans`) and returns, per
campaign, its emails per day (UTC), step, variant and arm, the new enrolments, the exclusions and deferrals
by reason, the notes (A/B winners, a cap's earlier effect, why nothing new is planned) and the article each
step draws on; campaign files that do not load are `problems`. With `csv`, every planned email (with its
address: the file is for the team) is written there and `csv_emails` says how many.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.plan.preview import build_plans, step_articles, summary_rows, write_plan_csv
from needlecast.config import Workspace


@dataclass(frozen=True)
class CampaignPlan:
    id: str
    kind: str
    segment: str
    emails: list[dict[str, Any]]  # day (UTC), step, variant, arm, recipients
    new_enrolments: int
    excluded: dict[str, int]  # reason -> emails
    deferred: dict[str, int]
    notes: list[str]
    articles: dict[str, str]  # step -> the article it draws on

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
        }


@dataclass(frozen=True)
class PlanPreview:
    days: int
    campaigns: list[CampaignPlan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # campaign files that did not load, with their fix
    csv_emails: int | None = None  # emails written to the CSV, when one was asked for


def plan_preview(
    workspace: Workspace, engine: Engine, campaign_id: str | None, days: int, now: datetime, csv: Path | None = None
) -> PlanPreview:
    """The plan of `campaign_id` (None: every campaign) for `days` days from `now` (see the module contract)."""
    result = build_plans(workspace, engine, campaign_id, days, now)
    ctx = CampaignContext.load(workspace)
    written = write_plan_csv(result.plans, csv) if csv else None
    campaigns = [
        CampaignPlan(
            item.campaign.id,
            item.campaign.kind,
            item.campaign.segment,
            summary_rows(item).to_dict("records"),
            len(item.new_enrolments),
            dict(item.excluded),
            dict(item.deferred),
            list(item.notes),
            step_articles(ctx, item.campaign),
        )
        for item in result.plans
    ]
    return PlanPreview(days, campaigns, [str(p) for p in result.problems], written)
