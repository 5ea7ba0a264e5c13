"""The notebook API and docs/analysis.ipynb: the example notebook executed with nbclient on the demo's data
(the sample broadcast sent, the demo's simulated SendGrid events and bookings), its headline figures checked
against the send report's; and `needlecast.reports.open` on a workspace and on a database URL giving the
tables the faces show."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest

import needlecast.reports as nr
from needlecast.audience.events import store_events, validate_event
from needlecast.audience.importer import import_file
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.send.runner import Runner
from needlecast.config import open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.delivery.outbox import OutboxBackend
from needlecast.devtools.events import simulate, simulate_bookings
from needlecast.reports import load_report
from needlecast.reports.compare import Filters, catalogue_of, load_comparison
from needlecast.store.engine import open_store
from needlecast.tracking.events import parse_sendgrid
from needlecast.tracking.webhook import ingest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def demo_data(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The workspace's store (its URL) with the demo's data: the sample broadcast sent, simulated events and
    bookings."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    workspace = open_workspace(workspace_dir)
    engine = open_store(url)
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    Runner(workspace, engine, partial(OutboxBackend, workspace.settings, workspace.outbox_dir)).run_broadcast(
        "spring-guide", send_now=True
    )
    events = simulate(engine, workspace.settings)
    ingest(engine, parse_sendgrid(json.dumps(events).encode()))
    bookings = [validate_event(b, n) for n, b in enumerate(simulate_bookings(events))]
    with engine.begin() as conn:
        store_events(conn, bookings, "test", datetime.now(UTC))  # type: ignore[arg-type]
    engine.dispose()
    return url


def test_the_example_notebook_runs_on_the_demos_data_and_agrees_with_the_report(
    workspace_dir: Path, demo_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("NEEDLECAST_WORKSPACE", str(workspace_dir))  # the kernel inherits the environment
    notebook = nbformat.read(REPO / "docs" / "analysis.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(REPO / "docs")}}
    ).execute()
    for cell in notebook.cells:
        errors = [o for o in cell.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, errors
    headline = next(c for c in notebook.cells if "headline" in c.metadata.get("tags", []))
    text = "".join(o.get("text", "") for o in headline.outputs)
    found = re.fullmatch(r"sent (\d+), delivered (\d+), bookings (\d+), value GBP ([\d.]+)\n", text)
    assert found, text
    engine = open_store(demo_data)
    report = load_report(engine, min_group=0, attribution=open_workspace(workspace_dir).settings.attribution)
    engine.dispose()
    totals = report.totals.sum(numeric_only=True)
    assert int(found.group(1)) == int(totals["sent"]) > 0
    assert int(found.group(2)) == int(totals["delivered"])
    assert int(found.group(3)) == int(totals["conversions"]) > 0
    assert float(found.group(4)) == pytest.approx(float(totals["value_GBP"]))


def test_open_reads_a_workspace_or_a_url_and_gives_the_faces_tables(workspace_dir: Path, demo_data: str) -> None:
    workspace = open_workspace(workspace_dir)
    clinic = nr.open(workspace_dir)
    engine = open_store(demo_data)
    try:
        assert clinic.time_zone == workspace.settings.clinic.time_zone
        shown = load_comparison(
            engine,
            catalogue_of(CampaignContext.load(workspace)),
            Filters(),
            time_zone=workspace.settings.clinic.time_zone,
            attribution=workspace.settings.attribution,
        )
        compared = clinic.compare()
        assert compared.iloc[:-1].equals(shown.campaigns) and compared.iloc[-1]["campaign_id"] == "All campaigns"
        assert compared.iloc[0]["name"] == "Spring skin guide"  # the campaign files' names: a workspace's
        assert clinic.trends("article").equals(shown.trend_article)
        assert clinic.funnel("spring-guide")["sent"].sum() == compared.iloc[-1]["sent"]
        raw = clinic.events("spring-guide")
        assert "email" not in raw.columns and raw["email_hash"].str.fullmatch(r"[0-9a-f]{64}").all()
        assert str(raw["occurred_at"].dt.tz) == workspace.settings.clinic.time_zone
        by_url = nr.open(demo_data)  # a URL: UTC, the default rules, no campaign files
        assert by_url.time_zone == "UTC" and by_url.compare().iloc[0]["name"] == "spring-guide"
        assert by_url.revenue().equals(clinic.revenue())
        by_url.close()
    finally:
        clinic.close()
        engine.dispose()
