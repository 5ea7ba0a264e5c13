"""/events: bookings and other events from the clinic's systems, stored once per id, through
`needlecast.actions.events` (each bad item rejected on its own, the batch audited as the key)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

import needlecast.web.api.schemas as s
from needlecast.actions.events import record_events
from needlecast.web.actors import Actor
from needlecast.web.api.deps import Api, Key, allowed
from needlecast.web.api.errors import ERRORS

router = APIRouter(responses=ERRORS)


@router.post(
    "/events",
    response_model=s.EventsOut,
    tags=["events"],
    summary="Bookings and other events from the clinic's systems, stored once per id",
)
def events_add(
    body: s.EventsIn, api: Api, actor: Annotated[Actor, Depends(allowed("events.write"))], idempotency_key: Key = None
) -> s.EventsOut:
    done = record_events(api.engine, actor, body.events, source=f"api:{actor.name}")
    return s.EventsOut(
        stored=done.stored,
        duplicates=done.duplicates,
        dropped=done.dropped,
        rejected=[s.EventProblemOut(index=p.index, field=p.field, message=p.message) for p in done.rejected],
    )
