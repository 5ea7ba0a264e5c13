"""Send reports: counts reconcile with the ledger and events; privacy; spreadsheet safety; the HTML report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from needlecast.audience.importer import import_file
from needlecast.campaign.runner import Runner
from needlecast.config import open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.delivery.outbox import OutboxBackend
from needlecast.reports import load_report
from needlecast.reports.data import delivery_flags, funnel, health, z_test
from needlecast.reports.export import write_csv, write_html, write_xlsx
from needlecast.store.engine import open_store
from needlecast.store.schema import deliveries, events
from needlecast.tracking.events import parse_sendgrid
from needlecast.tracking.webhook import ingest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture()
def sent(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The sample broadcast sent to the outbox, then a known set of provider events."""
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    workspace = open_workspace(workspace_dir)
    engine = open_store(store_url)
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    Runner(workspace, engine, OutboxBackend(workspace.settings, workspace.outbox_dir)).run_broadcast(
        "spring-guide", send_now=True
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.id, deliveries.c.campaign_id)
            .where(deliveries.c.status == "sent")
            .order_by(deliveries.c.id)
        ).all()
    items = []
    for n, (delivery_id, campaign) in enumerate(rows):
        base = {
            "email": f"x{n}@example.com",
            "timestamp": 1795000000 + n,
            "delivery_id": str(delivery_id),
            "campaign": campaign,
            "step": "guide",
        }
        items.append({**base, "event": "delivered", "sg_event_id": f"d{n}"})
        if n % 3 == 0:  # every third recipient opens, three times
            items += [{**base, "event": "open", "sg_event_id": f"o{n}-{k}"} for k in range(3)]
        if n % 10 == 0:
            items.append({**base, "event": "click", "sg_event_id": f"c{n}", "url": '=HYPERLINK("http://x")'})
    items.append(
        {
            "email": "bounced@example.com",
            "timestamp": 1795000000,
            "event": "bounce",
            "type": "bounce",
            "sg_event_id": "b0",
            "delivery_id": str(rows[1][0]),
            "campaign": "spring-guide",
            "step": "guide",
        }
    )
    ingest(engine, parse_sendgrid(json.dumps(items).encode()))
    return engine


def test_report_counts_reconcile_with_the_ledger_and_events(sent: Engine) -> None:
    report = load_report(sent)
    with sent.connect() as conn:
        sent_rows = conn.execute(
            select(func.count()).select_from(deliveries).where(deliveries.c.status == "sent")
        ).scalar()
        openers = conn.execute(
            select(func.count(func.distinct(events.c.delivery_id))).where(events.c.kind == "opened")
        ).scalar()
        opens = conn.execute(select(func.count()).select_from(events).where(events.c.kind == "opened")).scalar()
    table = report.funnel
    assert int(table["sent"].sum()) == sent_rows == 257
    assert int(table["opened"].sum()) == openers and opens == 3 * openers  # unique opens: once per recipient
    assert int(table["delivered"].sum()) == sent_rows  # every row got a delivered event (one also bounced)
    assert int(table["bounced_hard"].sum()) == 1
    assert int(table["clicked"].sum()) == int(report.links["unique_clickers"].sum()) == 26
    assert set(report.ab["arm"]) == {"A", "B"}
    assert {"period", "delivered", "opened", "clicked"} <= set(report.timeline.columns)


def test_health_thresholds_fire() -> None:
    def flags_for(sent_: int, complaints: int, bounces: int) -> str:
        ledger = pd.DataFrame(
            {
                "id": range(sent_),
                "campaign_id": "c",
                "step_id": "s",
                "segment": "g",
                "variant": "general",
                "arm": "",
                "status": "sent",
                "outcome": "delivered",
                "contact_id": range(sent_),
                "sent_at": None,
            }
        )
        frame = delivery_flags(ledger, pd.DataFrame())
        frame.loc[: complaints - 1, "complained"] = complaints > 0
        frame.loc[sent_ - bounces :, "bounced_hard"] = bounces > 0
        return str(health(frame)["flag"].iloc[0])

    assert flags_for(1000, 0, 0) == "ok"
    assert flags_for(1000, 2, 0) == "complaints over 0.1 %"
    assert flags_for(1000, 4, 0) == "complaints over 0.3 % (critical)"
    assert flags_for(1000, 0, 25) == "bounces over 2 %"


def test_small_groups_show_counts_but_not_rates() -> None:
    ledger = pd.DataFrame(
        {
            "id": range(12),
            "campaign_id": "c",
            "step_id": "s",
            "segment": "g",
            "variant": ["acne"] * 9 + ["ageing"] * 3,
            "arm": "",
            "status": "sent",
            "outcome": "delivered",
            "contact_id": range(12),
            "sent_at": None,
        }
    )
    table = funnel(delivery_flags(ledger, pd.DataFrame()), min_group=5).set_index("variant")
    assert table.loc["acne", "delivery_rate"] == 1.0 and table.loc["acne", "rates"] == "shown"
    assert pd.isna(table.loc["ageing", "opened_rate"]) and table.loc["ageing", "rates"].startswith("suppressed")
    assert table.loc["ageing", "sent"] == 3


def test_z_test_matches_a_known_value() -> None:
    # 200/1000 vs 250/1000 opens: pooled 0.225, z = 2.677, two-sided p = 0.0074
    assert z_test(200, 1000, 250, 1000) == pytest.approx(0.0074, abs=0.0002)
    assert z_test(10, 100, 10, 100) == pytest.approx(1.0)


def test_hostile_values_are_neutralised_in_csv_and_xlsx(sent: Engine, tmp_path: Path) -> None:
    report = load_report(sent)
    report.funnel.loc[0, "segment"] = '=HYPERLINK("http://evil.example","click")'
    csv_path, xlsx_path = tmp_path / "r.csv", tmp_path / "r.xlsx"
    write_csv(report, csv_path)
    write_xlsx(report, xlsx_path)
    assert "'=HYPERLINK" in csv_path.read_text()
    book = openpyxl.load_workbook(xlsx_path)
    cells = [c.value for sheet in book.worksheets for row in sheet.iter_rows() for c in row]
    assert all(not (isinstance(v, str) and v.startswith("=")) for v in cells)
    assert sum(1 for v in cells if isinstance(v, str) and v.startswith("'=HYPERLINK")) >= 2  # funnel and links
    assert {s.title for s in book.worksheets} == {
        "Funnel",
        "Totals per campaign",
        "Deliverability health",
        "A-B test",
        "Timeline",
        "Links",
        "Conversions",
    }


def test_spreadsheets_have_readable_titles_rounded_rates_percent_formats_and_a_frozen_header(
    sent: Engine, tmp_path: Path
) -> None:
    report = load_report(sent)
    xlsx_path, csv_path = tmp_path / "r.xlsx", tmp_path / "r.csv"
    write_xlsx(report, xlsx_path)
    write_csv(report, csv_path)
    sheet = openpyxl.load_workbook(xlsx_path)["Funnel"]
    header = [c.value for c in sheet[1]]
    assert {"Campaign", "Unique opens", "Total opens", "Open rate", "Click-to-open rate"} <= set(header)
    assert sheet.freeze_panes == "A2"
    rate = header.index("Open rate") + 1
    cell = sheet.cell(row=2, column=rate)
    assert cell.number_format == "0.0%" and isinstance(cell.value, float) and round(cell.value, 3) == cell.value
    rows = pd.read_csv(csv_path)
    assert list(rows.columns[:2]) == ["Campaign", "Step"]
    assert all(round(v, 3) == v for v in rows["Open rate"].dropna())


def test_the_funnel_counts_every_open_beside_unique_ones_and_the_click_to_open_rate(sent: Engine) -> None:
    report = load_report(sent, min_group=0)
    table = report.funnel
    assert int(table["opens"].sum()) == 3 * int(table["opened"].sum())  # every third recipient opened three times
    totals = report.totals.set_index("campaign_id").loc["spring-guide"]
    assert int(totals["sent"]) == int(table["sent"].sum()) == 257
    assert totals["click_to_open_rate"] == pytest.approx(totals["clicked"] / totals["opened"])


def test_the_ab_table_names_each_arms_subject_and_a_winner_only_when_significant() -> None:
    from needlecast.reports.data import ab_test

    def ledger(opens_a: int, opens_b: int, per_arm: int = 1000) -> pd.DataFrame:
        rows = []
        for arm, opens in (("A", opens_a), ("B", opens_b)):
            for n in range(per_arm):
                rows.append(
                    {
                        "campaign_id": "c",
                        "step_id": "s",
                        "segment": "g",
                        "variant": "general",
                        "arm": arm,
                        "sent": True,
                        "delivered": True,
                        "opened": n < opens,
                        "clicked": False,
                        "bounced_hard": False,
                        "bounced_soft": False,
                        "dropped": False,
                        "unsubscribed": False,
                        "complained": False,
                    }
                )
        return pd.DataFrame(rows)

    subjects = {("c", "s", "A"): "First subject", ("c", "s", "B"): "{{ first_name }}, second"}
    clear = ab_test(ledger(200, 260), subjects).set_index("arm")
    assert clear.loc["A", "subject"] == "First subject" and clear.loc["B", "subject"] == "{{ first_name }}, second"
    assert clear.loc["A", "open_winner"].startswith("B (p = ")
    close = ab_test(ledger(200, 205), subjects)
    assert set(close["open_winner"]) == {"no significant difference"}


def test_report_cli_formats_and_masked_recipients(sent: Engine, workspace_dir: Path, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEEDLECAST_")},
        "NEEDLECAST_DATABASE_URL": str(sent.url.render_as_string(hide_password=False)),
    }
    cli = [sys.executable, "-m", "needlecast.cli", "-w", str(workspace_dir), "report"]
    out = subprocess.run(
        [*cli, "--format", "json", "--include-recipients"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"funnel", "health", "ab_test", "timeline", "links", "recipients"} <= set(data)
    assert all("***@" in r["email"] for r in data["recipients"])
    plain = subprocess.run([*cli, "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert "@" not in plain.stdout  # aggregates only by default
    table = subprocess.run([*cli], capture_output=True, text=True, env={**env, "COLUMNS": "200"}, timeout=120)
    assert "deliverability health" in table.stdout and "A/B test" in table.stdout


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_report_renders_with_charts_in_headless_chromium(sent: Engine, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = tmp_path / "report.html"
    write_html(load_report(sent), page, "Send report")
    html = page.read_text()
    # Self-contained: no script, stylesheet, image or font is fetched from anywhere.
    assert "<script" not in html and "<link" not in html and "@import" not in html and " src=" not in html
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1000,1400",
    ]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert '<div class="chart" id="funnel-chart"><svg' in dom.stdout.replace("\n", "")
    assert 'id="timeline-chart"' in dom.stdout and "table-funnel" in dom.stdout
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    subprocess.run(["chromium", *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000 and shot.read_bytes()[:4] == b"\x89PNG"
