"""/reports: a campaign's funnel, A/B test, deliverability health and conversions, as records."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

import needlecast.web.api.schemas as s
from needlecast.readmodels.campaigns import campaign_report
from needlecast.web.actors import Actor
from needlecast.web.api.deps import Api, CampaignId, allowed
from needlecast.web.api.errors import ERRORS

router = APIRouter(responses=ERRORS)


@router.get(
    "/reports/{campaign_id}",
    response_model=s.ReportOut,
    tags=["reports"],
    summary="A campaign's funnel, A/B test, deliverability health and conversions",
)
def report_get(
    campaign_id: CampaignId, api: Api, actor: Annotated[Actor, Depends(allowed("reports.view"))]
) -> s.ReportOut:
    tables = campaign_report(api.engine, api.workspace, campaign_id)
    return s.ReportOut(campaign=campaign_id, **tables)
