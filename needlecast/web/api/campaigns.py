"""/segments and /campaigns: each segment's size, every campaign's overview, one campaign's plan, and pause,
resume and cancel.

Changes go through `needlecast.actions.campaigns` (checked and audited as the key); reads through
`needlecast.readmodels` (the same segment summary and campaign overview as the console and the command line).
Notes are in words (`wording.for_people`: no command, flag or file; times in the campaign's zone), as the
console says them: an API's client shows them to people, who have no command line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query

import needlecast.web.api.schemas as s
from needlecast.actions import campaigns as campaigns_actions
from needlecast.readmodels import campaigns as campaigns_read
from needlecast.readmodels.plans import plan_preview
from needlecast.readmodels.segments import segment_summaries
from needlecast.web.actors import Actor
from needlecast.web.api.deps import Api, ApiState, CampaignId, Key, allowed
from needlecast.web.api.errors import ERRORS
from needlecast.wording import for_people

router = APIRouter(responses=ERRORS)
Handler = TypeVar("Handler", bound=Callable[..., s.CampaignOut])


@router.get("/segments", response_model=list[s.SegmentOut], tags=["segments"], summary="Each segment's size")
def segment_list(api: Api, actor: Annotated[Actor, Depends(allowed("audiences.view"))]) -> list[s.SegmentOut]:
    summary = segment_summaries(api.engine, api.workspace, api.frames)
    return [
        s.SegmentOut(segment=row.segment, members=row.members, variants=row.variants, excluded=row.excluded)
        for row in summary.segments
    ]


def campaign_out(item: campaigns_read.Overview) -> s.CampaignOut:
    return s.CampaignOut(
        id=item.id,
        name=item.name,
        kind=item.kind,
        segment=item.segment,
        file=item.file,
        state=item.state,
        note=for_people(item.note),
        counts=item.counts,
        next_send=item.next_send,
        next_send_note=for_people(item.next_send_note),
        ab_tests=[for_people(test) for test in item.ab_tests],
    )


@router.get("/campaigns", response_model=list[s.CampaignOut], tags=["campaigns"], summary="Every campaign")
def campaign_list(api: Api, actor: Annotated[Actor, Depends(allowed("campaigns.view"))]) -> list[s.CampaignOut]:
    return [campaign_out(item) for item in campaigns_read.campaign_list(api.engine, api.workspace)]


@router.get(
    "/campaigns/{campaign_id}",
    response_model=s.CampaignOut,
    tags=["campaigns"],
    summary="One campaign with its ledger counts",
)
def campaign_get(
    campaign_id: CampaignId, api: Api, actor: Annotated[Actor, Depends(allowed("campaigns.view"))]
) -> s.CampaignOut:
    return campaign_out(campaigns_read.campaign_overview_of(api.engine, api.workspace, campaign_id))


@router.get(
    "/campaigns/{campaign_id}/plan",
    response_model=s.PlanOut,
    tags=["campaigns"],
    summary="Who gets what and when, and what would stop it",
)
def campaign_plan(
    campaign_id: CampaignId,
    api: Api,
    actor: Annotated[Actor, Depends(allowed("campaigns.view"))],
    days: Annotated[int, Query(ge=1, le=3650)] = 14,
) -> s.PlanOut:
    plan = plan_preview(api.engine, api.workspace, campaign_id, days, frames=api.frames).campaigns[0]
    return s.PlanOut(
        id=campaign_id,
        days=days,
        emails=[s.PlanRow(**row) for row in plan.emails],
        forecast=[s.ForecastRow(**row) for row in plan.forecast],
        new_enrolments=plan.new_enrolments,
        excluded=plan.excluded,
        deferred=plan.deferred,
        notes=[for_people(note) for note in plan.notes],
    )


def _set_status(api: ApiState, actor: Actor, campaign_id: str, status: str) -> s.CampaignOut:
    """Every status change's one body: the action (checked and audited as the key), then the overview."""
    campaigns_actions.set_campaign_status(api.engine, api.workspace, actor, campaign_id, status)
    return campaign_out(campaigns_read.campaign_overview_of(api.engine, api.workspace, campaign_id))


def _status_route(change: str) -> Callable[[Handler], Handler]:
    """The route of one status change: POST `/campaigns/{campaign_id}/<change>`, answered with the campaign."""
    said = f"{change.capitalize()} a scheduled campaign"
    return router.post(
        f"/campaigns/{{campaign_id}}/{change}", response_model=s.CampaignOut, tags=["campaigns"], summary=said
    )


Scheduler = Annotated[Actor, Depends(allowed("campaigns.schedule"))]


@_status_route("pause")
def campaign_pause(campaign_id: CampaignId, api: Api, actor: Scheduler, idempotency_key: Key = None) -> s.CampaignOut:
    return _set_status(api, actor, campaign_id, campaigns_actions.PAUSED)


@_status_route("resume")
def campaign_resume(campaign_id: CampaignId, api: Api, actor: Scheduler, idempotency_key: Key = None) -> s.CampaignOut:
    return _set_status(api, actor, campaign_id, campaigns_actions.ACTIVE)


@_status_route("cancel")
def campaign_cancel(campaign_id: CampaignId, api: Api, actor: Scheduler, idempotency_key: Key = None) -> s.CampaignOut:
    return _set_status(api, actor, campaign_id, campaigns_actions.CANCELLED)
