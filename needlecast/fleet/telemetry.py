"""Prometheus metrics of a sending process (`needlecast worker` and `needlecast scheduler`, `--metrics-port`).

Contract: `SenderMetrics(engine, lease_seconds)` owns a registry (never the process-wide default) with
- `needlecast_emails_recorded_total{campaign,status}`: outcomes this process recorded (sent, failed,
  unknown, deferred);
- `needlecast_provider_requests_total{status}`: attempts by the provider's HTTP status ("transport" when
  no answer came) and `needlecast_provider_request_seconds`: their latency;
- `needlecast_rate_limit_waits_total` and `needlecast_rate_limit_wait_seconds_total`: pacing;
- the store's gauges read at each scrape (`StoreCollector`: emails by campaign and state, queue
  depth and the oldest due email's age per campaign, and unlabelled queue totals that read 0 when the queue
  is empty) and the fleet's (`FleetCollector`: each sender's heartbeat age, the
  leader, the live workers).
`observe` is the observer a worker's backends are built with, `waited` its dispatcher's `on_rate_wait`,
`record` the dispatcher's `on_recorded`; `serve` starts the HTTP endpoint. Labels are campaign ids, states
and sender ids only: no personal data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, func, select

from needlecast.campaign.send.guardrails import GuardCollector
from needlecast.store import fleet
from needlecast.store.delivery import delivery_store
from needlecast.store.helpers import utcnow
from needlecast.store.schema import deliveries, events


class FleetCollector(Collector):
    """The senders' heartbeat ages, who leads, and how many workers are alive (read at each scrape)."""

    def __init__(self, engine: Engine, lease_seconds: float) -> None:
        self.engine = engine
        self.lease_seconds = lease_seconds

    def collect(self) -> Iterator[GaugeMetricFamily]:
        age = GaugeMetricFamily(
            "needlecast_sender_heartbeat_age_seconds",
            "Seconds since each live sender's last heartbeat",
            labels=["sender", "kind", "leader"],
        )
        workers = GaugeMetricFamily("needlecast_workers_alive", "Workers heard from within the lease")
        with self.engine.connect() as conn:
            now = fleet.clock(conn)
            senders = fleet.live(conn, now - self.lease_seconds)
        for sender in senders:
            age.add_metric([sender.id, sender.kind, "1" if sender.leader else "0"], max(0.0, now - sender.beat_at))
        workers.add_metric([], sum(1 for sender in senders if sender.kind == "worker"))
        yield from (age, workers)


class SenderMetrics:
    def __init__(self, engine: Engine, lease_seconds: float) -> None:
        self.registry = CollectorRegistry()
        self.emails = Counter(
            "needlecast_emails_recorded",
            "Emails whose outcome this process recorded",
            ["campaign", "status"],
            registry=self.registry,
        )
        self.requests = Counter(
            "needlecast_provider_requests",
            "Requests to the provider by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "needlecast_provider_request_seconds",
            "Seconds per request to the provider",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.rate_waits = Counter(
            "needlecast_rate_limit_waits", "Requests held back by a rate limit", registry=self.registry
        )
        self.rate_wait_seconds = Counter(
            "needlecast_rate_limit_wait_seconds", "Seconds spent waiting for a rate limit", registry=self.registry
        )
        self.registry.register(StoreCollector(engine))
        self.registry.register(FleetCollector(engine, lease_seconds))
        self.registry.register(GuardCollector(engine))  # campaigns the deliverability guard paused

    def record(self, campaign_id: str, status: str, count: int) -> None:
        if count:
            self.emails.labels(campaign_id, status).inc(count)

    def observe(self, seconds: float, status: str) -> None:
        self.requests.labels(status).inc()
        self.latency.observe(seconds)

    def waited(self, seconds: float) -> None:
        self.rate_waits.inc()
        self.rate_wait_seconds.inc(seconds)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)


class StoreCollector(Collector):
    """The ledger's emails by campaign and state, the queue, and the stored provider events (read at each
    scrape). The queue has per-campaign series (`needlecast_queue_depth{campaign}`,
    `needlecast_queue_oldest_due_seconds{campaign}`: only campaigns with queued emails) and unlabelled totals
    that always have a sample, 0 when nothing is queued, for alerts and dashboards:
    `needlecast_queue_emails` (every queued email), `needlecast_queue_due_emails` (those due now: the backlog)
    and `needlecast_queue_lag_seconds` (how long the earliest due email has waited). `clock` is "now" (UTC)."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        emails = GaugeMetricFamily("needlecast_emails", "Emails in the delivery ledger", labels=["campaign", "status"])
        kinds = GaugeMetricFamily("needlecast_provider_events", "Provider events stored", labels=["kind"])
        now = self.clock()
        with self.engine.connect() as conn:
            for campaign, status, count in conn.execute(
                select(deliveries.c.campaign_id, deliveries.c.status, func.count()).group_by(
                    deliveries.c.campaign_id, deliveries.c.status
                )
            ):
                emails.add_metric([campaign, status], int(count))
            queue = _queue_families(conn, now)
            for kind, count in conn.execute(select(events.c.kind, func.count()).group_by(events.c.kind)):
                kinds.add_metric([kind], int(count))
        yield from (emails, *queue, kinds)


def _queue_families(conn: Connection, now: datetime) -> list[GaugeMetricFamily]:
    """The queue's gauges: per campaign, and the unlabelled totals (always sampled, 0 when empty)."""
    depth = GaugeMetricFamily("needlecast_queue_depth", "Queued emails", labels=["campaign"])
    age = GaugeMetricFamily(
        "needlecast_queue_oldest_due_seconds",
        "Seconds since the earliest queued email fell due (0 when none is due)",
        labels=["campaign"],
    )
    store = delivery_store(conn)
    lag = 0.0
    for campaign, size, first_due in store.queue_by_campaign(conn):
        waited = max(0.0, (now - first_due).total_seconds())
        depth.add_metric([campaign], size)
        age.add_metric([campaign], waited)
        lag = max(lag, waited)
    queued, due = store.queue_depth(conn, now)
    return [
        depth,
        age,
        GaugeMetricFamily("needlecast_queue_emails", "Queued emails of every campaign (0 when none)", value=queued),
        GaugeMetricFamily(
            "needlecast_queue_due_emails", "Queued emails already due, of every campaign (0 when none)", value=due
        ),
        GaugeMetricFamily(
            "needlecast_queue_lag_seconds",
            "Seconds since the earliest queued email of any campaign fell due (0 when none is due)",
            value=lag,
        ),
    ]
