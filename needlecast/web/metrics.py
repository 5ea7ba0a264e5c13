"""`GET /metrics`: Prometheus metrics of the store, read when scraped (prometheus-client).

Contract: the endpoint exists only when `NEEDLECAST_METRICS_TOKEN` is set (otherwise 404: a campaign's
volume is nobody else's business), and answers only a scrape that sends it as `Authorization: Bearer TOKEN`
(401 otherwise, compared in constant time). The app's own registry (never the process-wide default) holds
the store's collector (`telemetry.StoreCollector`: the ledger's emails by campaign and state, the queue's
depth and the oldest queued email's age per campaign and as unlabelled totals that read 0 when the queue is
empty, the stored provider events by kind, read at each scrape) and the fleet's heartbeat ages
(`telemetry.FleetCollector`), and the campaigns the deliverability guard paused, with the threshold and
its figures (`guardrails.GuardCollector`). Labels are campaign ids and states
only: no personal data.
"""

from __future__ import annotations

import hmac
import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from needlecast.campaign.send.guardrails import GuardCollector
from needlecast.fleet.telemetry import FleetCollector, StoreCollector


def metrics_routes(engine: Engine, lease_seconds: float = 30.0) -> list[Route]:
    registry = CollectorRegistry()
    registry.register(StoreCollector(engine))
    registry.register(FleetCollector(engine, lease_seconds))
    registry.register(GuardCollector(engine))

    async def metrics(request: Request) -> Response:
        token = os.environ.get("NEEDLECAST_METRICS_TOKEN", "")
        if not token:
            raise HTTPException(404)
        offered = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(offered.encode(), token.encode()):
            return Response(
                "send the metrics token as Authorization: Bearer TOKEN\n",
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", metrics)]
