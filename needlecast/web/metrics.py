"""`GET /metrics`: Prometheus metrics of the store, read when scraped (prometheus-client).

Contract: the endpoint exists only when `NEEDLECAST_METRICS_TOKEN` is set (otherwise 404: a campaign's
volume is nobody else's business), and answers only a scrape that sends it as `Authorization: Bearer TOKEN`
(401 otherwise, compared in constant time). The app's own registry (never the process-wide default) holds
one collector that, at each scrape, reads the ledger's emails by campaign and state, the queue's depth and
the oldest queued email's age, and the stored provider events by kind; and the fleet's heartbeat ages
(`telemetry.FleetCollector`). Labels are campaign ids and states
only: no personal data.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from needlecast.store.helpers import utcnow
from needlecast.store.schema import deliveries, delivery_queue, events


class StoreCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        emails = GaugeMetricFamily("needlecast_emails", "Emails in the delivery ledger", labels=["campaign", "status"])
        depth = GaugeMetricFamily("needlecast_queue_depth", "Queued emails", labels=["campaign"])
        age = GaugeMetricFamily(
            "needlecast_queue_oldest_due_seconds",
            "Seconds since the earliest queued email fell due (0 when none is due)",
            labels=["campaign"],
        )
        kinds = GaugeMetricFamily("needlecast_provider_events", "Provider events stored", labels=["kind"])
        now = utcnow()
        with self.engine.connect() as conn:
            for campaign, status, count in conn.execute(
                select(deliveries.c.campaign_id, deliveries.c.status, func.count()).group_by(
                    deliveries.c.campaign_id, deliveries.c.status
                )
            ):
                emails.add_metric([campaign, status], int(count))
            for campaign, size, first in conn.execute(
                select(
                    delivery_queue.c.campaign_id, func.sum(delivery_queue.c.size), func.min(delivery_queue.c.due_at)
                ).group_by(delivery_queue.c.campaign_id)
            ):
                depth.add_metric([campaign], int(size or 0))
                first_due = first if getattr(first, "tzinfo", None) else None
                age.add_metric([campaign], max(0.0, (now - first_due).total_seconds()) if first_due else 0.0)
            for kind, count in conn.execute(select(events.c.kind, func.count()).group_by(events.c.kind)):
                kinds.add_metric([kind], int(count))
        yield from (emails, depth, age, kinds)


def metrics_routes(engine: Engine, lease_seconds: float = 30.0) -> list[Route]:
    from needlecast.telemetry import FleetCollector

    registry = CollectorRegistry()
    registry.register(StoreCollector(engine))
    registry.register(FleetCollector(engine, lease_seconds))

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
