"""/journeys: put one person or a selection into a journey, by contact id (the journey's `manual` entry, or any
journey's people added by hand).

The change goes through `needlecast.actions.journeys.enter` (checked as `campaigns.schedule`, the key's
`campaigns:write` scope, and audited as the key with the counts): the journey's re-entry rule applies, and the
sweeper checks consent and suppression before anything is sent. A campaign that is not a journey is refused
(404: no journey has that id), as is an unknown one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

import needlecast.web.api.schemas as s
from needlecast.actions import journeys as journeys_actions
from needlecast.web.actors import Actor
from needlecast.web.api.deps import Api, CampaignId, Key, allowed
from needlecast.web.api.errors import ERRORS

router = APIRouter(responses=ERRORS)
Scheduler = Annotated[Actor, Depends(allowed("campaigns.schedule"))]


@router.post(
    "/journeys/{campaign_id}/entries",
    response_model=s.JourneyEntriesOut,
    tags=["journeys"],
    summary="Put people into a journey at its first step",
)
def journey_entries(
    campaign_id: CampaignId, body: s.JourneyEntriesIn, api: Api, actor: Scheduler, idempotency_key: Key = None
) -> s.JourneyEntriesOut:
    done = journeys_actions.enter(api.engine, api.workspace, actor, campaign_id, body.contact_ids)
    return s.JourneyEntriesOut(entered=done.entered, not_entered=done.already_in, unknown=done.unknown)
