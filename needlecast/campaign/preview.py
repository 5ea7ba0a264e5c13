"""`needlecast plan`: who gets what, when, without sending or writing anything."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from needlecast.audience.segments import load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.model import BROADCAST
from needlecast.campaign.planner import Plan, load_ledger_view, plan_broadcast, plan_sequence
from needlecast.config import Workspace


def build_plans(workspace: Workspace, engine: Engine, campaign_id: str | None, days: int, now: datetime) -> list[Plan]:
    """The plan of one campaign (or every campaign) for the next `days` days."""
    ctx = CampaignContext.load(workspace)
    campaigns = [ctx.campaign(campaign_id)] if campaign_id else list(ctx.campaigns.values())
    horizon = now + timedelta(days=days)
    plans = []
    with engine.connect() as conn:
        frame = load_frame(conn)
        for campaign in campaigns:
            view = load_ledger_view(conn, campaign.id, now)
            if campaign.kind == BROADCAST:
                plan = plan_broadcast(ctx, campaign, frame, view.keys, view.history, now)
                plan.emails = (
                    plan.emails[plan.emails["due_at"] <= pd.Timestamp(horizon)]
                    if not plan.emails.empty
                    else plan.emails
                )
            else:
                plan = plan_sequence(
                    ctx, campaign, frame, view.enrolled, view.keys, view.history, now, view.started_at or now, horizon
                )
            plans.append(plan)
    return plans


def summary_rows(plan: Plan) -> pd.DataFrame:
    """Recipients per day, step, variant and arm (queued emails; skipped ones are in the exclusions)."""
    emails = plan.emails
    if emails.empty:
        return pd.DataFrame(columns=["day", "step", "variant", "arm", "recipients"])
    queued = emails[emails["status"] == "queued"].copy()
    queued["day"] = pd.to_datetime(queued["due_at"], utc=True).dt.strftime("%Y-%m-%d")
    grouped = queued.groupby(["day", "step_id", "variant", "arm"]).size().reset_index(name="recipients")
    return grouped.rename(columns={"step_id": "step"})


def write_plan_csv(plans: list[Plan], path: Path) -> int:
    """Every planned email, one row each (with the address: this file is for the team, not for logs)."""
    frames = [p.emails for p in plans if not p.emails.empty]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not table.empty:
        table = table.assign(due_at=pd.to_datetime(table["due_at"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return len(table)
