"""The store's Prometheus gauges: queue totals without labels that read 0 when the queue is empty (alerts
need the zero), the per-campaign series beside them, on both databases, scraped from the web app's `/metrics`
over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from needlecast import ledger
from needlecast.fleet.telemetry import StoreCollector
from needlecast.store.delivery import delivery_store
from needlecast.store.helpers import utcnow
from tests.console_site import ConsoleSite, site

TOKEN = "scrape-token-for-tests"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _enqueue(engine: Engine, campaign: str, count: int, due_at: datetime) -> None:
    with delivery_store(engine).writing() as conn:
        ledger.enqueue_columns(
            delivery_store(conn),
            conn,
            {
                "campaign_id": campaign,
                "step_id": "s1",
                "contact_id": list(range(1, count + 1)),
                "segment": "all",
                "variant": "general",
                "arm": "",
                "due_at": due_at,
                "status": "queued",
                "error": "",
            },
        )


@pytest.fixture()
def app(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_METRICS_TOKEN", TOKEN)
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    with site(workspace_dir, store_url, import_sample=False) as running:
        yield running


def _scrape(app: ConsoleSite) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{app.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert answer.status_code == 200
    return _samples(answer.text)


def test_an_empty_queue_scrapes_as_zero_totals_without_labels(app: ConsoleSite) -> None:
    samples = _scrape(app)
    for name in ("needlecast_queue_emails", "needlecast_queue_due_emails", "needlecast_queue_lag_seconds"):
        assert samples[(name, ())] == 0.0, name
    assert not [key for key in samples if key[0] == "needlecast_queue_depth"]  # no campaign, no series


def test_totals_and_per_campaign_series_follow_what_is_queued(app: ConsoleSite) -> None:
    now = utcnow()
    _enqueue(app.engine, "overdue", 1200, now - timedelta(minutes=10))
    _enqueue(app.engine, "later", 10, now + timedelta(hours=3))
    samples = _scrape(app)
    assert samples[("needlecast_queue_emails", ())] == 1210
    assert samples[("needlecast_queue_due_emails", ())] == 1200
    assert samples[("needlecast_queue_depth", (("campaign", "overdue"),))] == 1200
    assert samples[("needlecast_queue_depth", (("campaign", "later"),))] == 10
    assert samples[("needlecast_queue_oldest_due_seconds", (("campaign", "later"),))] == 0.0  # not due yet
    # ten minutes overdue, however long the scrape took to come
    overdue = samples[("needlecast_queue_oldest_due_seconds", (("campaign", "overdue"),))]
    assert 600 <= overdue < 600 + (utcnow() - now).total_seconds() + 1
    assert samples[("needlecast_queue_lag_seconds", ())] == overdue


def test_the_queue_lag_is_the_age_of_the_earliest_due_email_on_the_collectors_clock(engine: Engine) -> None:
    _enqueue(engine, "a", 3, NOW - timedelta(seconds=90))
    _enqueue(engine, "b", 2, NOW - timedelta(seconds=30))
    registry = CollectorRegistry()
    registry.register(StoreCollector(engine, clock=lambda: NOW))
    samples = _samples(generate_latest(registry).decode())
    assert samples[("needlecast_queue_lag_seconds", ())] == 90.0
    assert samples[("needlecast_queue_oldest_due_seconds", (("campaign", "b"),))] == 30.0
    assert (samples[("needlecast_queue_emails", ())], samples[("needlecast_queue_due_emails", ())]) == (5, 5)
