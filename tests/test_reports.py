"""Send reports: counts reconcile with the ledger and events; privacy; spreadsheet safety; the HTML report."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import uuid
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, func, make_url, select, text

from needlecast.audience.events import store_events, validate_event
from needlecast.audience.importer import import_file
from needlecast.campaign.send.runner import Runner
from needlecast.config import open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.delivery.outbox import OutboxBackend
from needlecast.errors import ConfigurationError
from needlecast.reports import load_report
from needlecast.reports.data import delivery_flags, funnel, health, z_test
from needlecast.reports.export import (
    funnel_chart,
    html_tables,
    timeline_chart,
    to_json,
    write_csv,
    write_html,
    write_xlsx,
)
from needlecast.reports.export import title as export_title
from needlecast.store.engine import open_store
from needlecast.store.schema import contacts, deliveries, events
from needlecast.tracking.events import parse_sendgrid
from needlecast.tracking.webhook import ingest
from tests.browser import GuardedBrowser, chromium_path, picture
from tests.cli_runner import run
from tests.conftest import _DROPPER, empty_store, make_workspace, postgres_url
from tests.console_site import site


class Prepared:
    """Stores prepared once per module and database, each test getting a copy of its own (a file copy on SQLite,
    `CREATE DATABASE ... TEMPLATE` on PostgreSQL): importing the sample, sending the broadcast and posting the
    events took seconds per test. A test may change its copy; the prepared store is never opened again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.made: dict[tuple[str, str], str] = {}  # (what, database kind) -> the prepared store's URL
        self._stores = contextlib.ExitStack()

    def copy(self, what: str, kind: str, prepare: Callable[[Path, str], None], target: str) -> str:
        """The URL of a copy of the store `prepare(workspace folder, url)` fills (once per `what` and `kind`), at
        `target` on SQLite (an empty store made for the test) or in a new database on PostgreSQL."""
        if (what, kind) not in self.made:
            folder = self.folder / f"{what}-{kind}"
            folder.mkdir()
            url = self._stores.enter_context(empty_store(kind, folder))
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("NEEDLECAST_DATABASE_URL", url)
                patch.setenv("NEEDLECAST_QUIET_HOURS", "off")
                prepare(make_workspace(folder / "ws"), url)
            self.made[(what, kind)] = url
        source = self.made[(what, kind)]
        if kind == "sqlite":  # `prepare` disposed its engine: the file is whole, no -wal beside it
            shutil.copy(source.removeprefix("sqlite:///"), target.removeprefix("sqlite:///"))
            return target
        base = postgres_url()
        assert base
        name = f"t_{uuid.uuid4().hex[:12]}"
        template = make_url(source).database
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        admin.dispose()
        self._stores.callback(_DROPPER.drop, base, name)  # dropped before the prepared one, by conftest's thread
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        self._stores.close()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prepared]:
    made = Prepared(tmp_path_factory.mktemp("prepared"))
    yield made
    made.close()


def _kind(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


def _send_with_events(root: Path, url: str) -> None:
    """The sample broadcast sent to the outbox, then a known set of provider events."""
    workspace = open_workspace(root)
    engine = open_store(url)
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    Runner(workspace, engine, partial(OutboxBackend, workspace.settings, workspace.outbox_dir)).run_broadcast(
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
    engine.dispose()


@pytest.fixture()
def sent(prepared: Prepared, workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A copy of the store `_send_with_events` fills."""
    url = prepared.copy("sent", _kind(store_url), _send_with_events, store_url)
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    engine = open_store(url)
    yield engine
    engine.dispose()


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
    # Every row got a delivered event; one also bounced, and an email has one fate: that one counts as bounced.
    assert int(table["delivered"].sum()) == sent_rows - 1
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


def test_report_cli_formats_and_masked_recipients(
    sent: Engine, workspace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(sent.url.render_as_string(hide_password=False))
    out = run(
        monkeypatch, workspace_dir, "report", "--format", "json", "--include-recipients", NEEDLECAST_DATABASE_URL=url
    )
    assert out.code == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"funnel", "health", "ab_test", "timeline", "links", "recipients"} <= set(data)
    assert all("***@" in r["email"] for r in data["recipients"])
    plain = run(monkeypatch, workspace_dir, "report", "--format", "json", NEEDLECAST_DATABASE_URL=url)
    assert "@" not in plain.stdout  # aggregates only by default
    table = run(monkeypatch, workspace_dir, "report", NEEDLECAST_DATABASE_URL=url, COLUMNS="200")
    assert "Deliverability health" in table.stdout and "A-B test" in table.stdout


def test_the_terminal_shows_the_columns_of_the_html_report_with_conversions(
    sent: Engine, workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from needlecast.cli.common import console

    url = str(sent.url.render_as_string(hide_password=False))
    monkeypatch.setattr(console, "width", 1000)  # every title on one line, to be found whole
    shown = run(monkeypatch, workspace_dir, "report", NEEDLECAST_DATABASE_URL=url)
    assert shown.code == 0, shown.stderr
    page = tmp_path / "r.html"
    assert run(monkeypatch, workspace_dir, "report", "--format", "html", "--out", str(page),
               NEEDLECAST_DATABASE_URL=url).code == 0  # fmt: skip
    html = page.read_text()
    for heading in ("Totals per campaign", "Funnel"):
        assert heading in shown.stdout
    for column in ("Unsubscribed", "Unsubscribe rate", "Complaints", "Conversions", "Conversion rate"):
        # the same tables, with the same columns, on both faces
        assert column in shown.stdout and f'<th scope="col">{column}</th>' in html, column


@pytest.mark.skipif(chromium_path() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_report_renders_with_charts_in_headless_chromium(
    sent: Engine, tmp_path: Path, browser: GuardedBrowser
) -> None:
    """In the session's Chromium (guarded: a console error or CSP violation in the report fails the test)."""
    report = tmp_path / "report.html"
    write_html(load_report(sent), report, "Send report")
    html = report.read_text()
    # Self-contained: no script, stylesheet, image or font is fetched from anywhere.
    assert "<script" not in html and "<link" not in html and "@import" not in html and " src=" not in html
    page = browser.new_context(viewport={"width": 1000, "height": 1400}).new_page()
    page.goto(report.as_uri())
    dom = page.content()
    assert '<div class="chart" id="funnel-chart"><svg' in dom.replace("\n", "")
    assert 'id="timeline-chart"' in dom and "table-funnel" in dom
    shot = picture(page, "report", full_page=False)
    assert len(shot) > 20_000 and shot[:4] == b"\x89PNG"


# -- issue 25: bounces per email, unique opens in the timeline, times on the clinic's clock ---------------------

CLINIC_ZONE = "Asia/Kolkata"  # UTC+05:30 all year: a day starts at 18:30 UTC, and minutes show the offset
FIRST_OPEN = datetime(2026, 11, 2, 20, 0, tzinfo=UTC)  # 2026-11-03 01:30 in Kolkata: the UTC day is the day before
BOOKED_AT = "2026-11-03T09:15:30.507775+00:00"  # 14:45 in Kolkata


def _in_kolkata(root: Path) -> None:
    config = root / "needlecast.toml"
    config.write_text(config.read_text().replace('time_zone = "Europe/London"', f'time_zone = "{CLINIC_ZONE}"'))


def _settle(root: Path, url: str) -> None:
    """`settled`'s store and its raw events (kept in the store's folder, as JSON)."""
    _in_kolkata(root)
    workspace = open_workspace(root)
    assert workspace.settings.clinic.time_zone == CLINIC_ZONE
    engine = open_store(url)
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    Runner(workspace, engine, partial(OutboxBackend, workspace.settings, workspace.outbox_dir)).run_broadcast(
        "spring-guide", send_now=True
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.id, contacts.c.email)
            .join(contacts, contacts.c.id == deliveries.c.contact_id)
            .where(deliveries.c.status == "sent")
            .order_by(deliveries.c.id)
        ).all()
    start = int(FIRST_OPEN.timestamp()) - 3600
    items: list[dict] = []

    def add(n: int, event: str, minutes: float, **extra: object) -> None:
        delivery_id, email = rows[n]
        stamp = start + int(minutes * 60)
        base = {"email": email, "delivery_id": str(delivery_id), "campaign": "spring-guide", "step": "guide"}
        items.append({**base, "event": event, "timestamp": stamp, "sg_event_id": f"e{len(items)}", **extra})

    add(0, "bounce", 1, type="blocked")
    add(1, "bounce", 1, type="bounce")
    add(2, "bounce", 1, type="blocked")
    add(2, "bounce", 2, type="bounce")
    add(3, "bounce", 1, type="bounce")
    add(3, "bounce", 2, type="blocked")
    add(4, "deferred", 1)
    add(4, "deferred", 5)
    add(4, "delivered", 30)
    add(5, "dropped", 1)
    for n in range(6, len(rows)):
        add(n, "delivered", 1)
        if n % 3 == 0:  # opened three times: twice on its first day, once the next
            for minutes in (60 + n, 120 + n, 60 + 24 * 60):
                add(n, "open", minutes)
        if n % 10 == 0:
            add(n, "click", 90, url="https://lumen-clinic.example.com/book")
    ingest(engine, parse_sendgrid(json.dumps(items).encode()))
    booking = validate_event(
        {"id": "b1", "email": rows[9][1], "type": "booked", "occurred_at": BOOKED_AT, "value": 60, "currency": "GBP"}, 0
    )
    with engine.begin() as conn:
        store_events(conn, [booking], "test", datetime.now(UTC))  # type: ignore[list-item]
    engine.dispose()
    (root.parent / "items.json").write_text(json.dumps(items))


@pytest.fixture()
def settled(
    prepared: Prepared, workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Engine, list[dict]]]:
    """The sample broadcast sent, with the clinic in Kolkata, then provider events fixed in the data: a soft
    bounce alone, a hard bounce alone, soft-then-hard and hard-then-soft bounces, deferred-then-delivered, a
    drop; every other email delivered, every third opened three times over two days, every tenth clicked;
    and one booking. Returns a copy of the store (`_settle`) and the raw events; the test's workspace is in
    Kolkata too."""
    _in_kolkata(workspace_dir)
    url = prepared.copy("settled", _kind(store_url), _settle, store_url)
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    engine = open_store(url)
    kind = _kind(store_url)
    yield engine, json.loads((prepared.folder / f"settled-{kind}" / "items.json").read_text())
    engine.dispose()


def _fates(items: list[dict]) -> dict[str, set[str]]:
    """Each email's fate from the raw events, as a clinic reads them: bounced (hard when any bounce was hard),
    else dropped, else delivered (an open or a click proves it); deferral is no fate."""
    kinds: dict[str, set[str]] = {}
    for item in items:
        kinds.setdefault(item["delivery_id"], set()).add(item.get("type") or item["event"])
    hard = {d for d, k in kinds.items() if "bounce" in k}
    soft = {d for d, k in kinds.items() if "blocked" in k} - hard
    dropped = {d for d, k in kinds.items() if "dropped" in k} - hard - soft
    delivered = {d for d, k in kinds.items() if k & {"delivered", "open", "click"}} - hard - soft - dropped
    return {"hard": hard, "soft": soft, "dropped": dropped, "delivered": delivered}


def test_bounces_count_per_email_a_hard_one_winning_and_deferred_then_delivered_is_delivered(
    settled: tuple[Engine, list[dict]],
) -> None:
    engine, items = settled
    fates = _fates(items)
    report = load_report(engine, "spring-guide", time_zone=CLINIC_ZONE)
    totals = report.totals.set_index("campaign_id").loc["spring-guide"]
    sent_count = len({i["delivery_id"] for i in items})
    assert (len(fates["hard"]), len(fates["soft"]), len(fates["dropped"])) == (3, 1, 1)  # the data as designed
    assert int(totals["sent"]) == sent_count
    assert int(totals["bounced_hard"]) == len(fates["hard"])
    assert int(totals["bounced_soft"]) == len(fates["soft"])
    assert int(totals["dropped"]) == len(fates["dropped"])
    assert int(totals["delivered"]) == len(fates["delivered"]) == sent_count - 5  # deferred-then-delivered counts
    bounced = len(fates["hard"] | fates["soft"])
    assert totals["bounce_rate"] == pytest.approx(bounced / sent_count)
    assert report.health.set_index("campaign_id").loc["spring-guide", "bounce_rate"] == pytest.approx(
        bounced / sent_count
    )
    # Each email has one fate: the fates add up to what was sent.
    assert int(totals[["delivered", "bounced_hard", "bounced_soft", "dropped"]].sum()) == sent_count
    funnel_ = report.funnel
    assert int(funnel_["bounced_hard"].sum() + funnel_["bounced_soft"].sum()) == bounced


def test_the_timelines_unique_opens_are_emails_first_opened_in_each_day_of_the_clinic(
    settled: tuple[Engine, list[dict]],
) -> None:
    engine, items = settled
    zone = ZoneInfo(CLINIC_ZONE)
    first: dict[str, int] = {}
    for item in items:
        if item["event"] == "open":
            first[item["delivery_id"]] = min(first.get(item["delivery_id"], item["timestamp"]), item["timestamp"])
    expected = Counter(f"{datetime.fromtimestamp(t, zone):%Y-%m-%d}" for t in first.values())
    every = Counter(f"{datetime.fromtimestamp(i['timestamp'], zone):%Y-%m-%d}" for i in items if i["event"] == "open")
    report = load_report(engine, "spring-guide", time_zone=CLINIC_ZONE)
    timeline = report.timeline.set_index("period")
    opened = {p: int(v) for p, v in timeline["opened"].items() if v}
    assert opened == dict(expected) == {"2026-11-03": len(first)}  # Kolkata's day, not UTC's 2026-11-02
    assert {p: int(v) for p, v in timeline["opens"].items() if v} == dict(every)
    assert int(timeline["opened"].sum()) == int(report.totals["opened"].sum()) == len(first)
    assert int(timeline["opens"].sum()) == 3 * len(first) != len(first)
    assert int(timeline["bounced_hard"].sum()) == 3 and int(timeline["bounced_soft"].sum()) == 1
    assert export_title("opened") == "Unique opens" and export_title("opens") == "Total opens"


def test_xlsx_writes_times_on_the_clinics_clock_without_a_zone_as_dates(
    settled: tuple[Engine, list[dict]], tmp_path: Path
) -> None:
    engine, _ = settled
    path = tmp_path / "r.xlsx"
    write_xlsx(load_report(engine, time_zone=CLINIC_ZONE), path)
    sheet = openpyxl.load_workbook(path)["Conversions"]
    header = [c.value for c in sheet[1]]
    when = sheet.cell(row=2, column=header.index(f"When ({CLINIC_ZONE})") + 1)
    local = datetime.fromisoformat(BOOKED_AT).astimezone(ZoneInfo(CLINIC_ZONE)).replace(tzinfo=None)
    assert abs(when.value - local) < timedelta(milliseconds=1) and when.value.hour == 14  # 09:15 UTC
    assert when.number_format == "yyyy-mm-dd hh:mm"


def test_conversion_times_show_on_the_clinics_clock_to_the_minute_in_every_format(
    settled: tuple[Engine, list[dict]], workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = settled
    shown = f"{datetime.fromisoformat(BOOKED_AT).astimezone(ZoneInfo(CLINIC_ZONE)):%Y-%m-%d %H:%M}"
    assert shown == "2026-11-03 14:45"
    report = load_report(engine, time_zone=CLINIC_ZONE)
    page = tmp_path / "r.html"
    write_html(report, page, "Send report")
    html = page.read_text()
    assert f"<td>{shown}</td>" in html and f"When ({CLINIC_ZONE})" in html and "09:15" not in html
    tables = dict((name, (columns, rows)) for name, _, columns, rows in html_tables(report))
    columns, rows = tables["conversions"]
    assert rows[0][columns.index(f"When ({CLINIC_ZONE})")] == shown
    data = json.loads(to_json(report))
    assert data["conversions"][0]["occurred_at"] == "2026-11-03T14:45:30.507775+05:30"  # for machines: exact
    out = run(
        monkeypatch,
        workspace_dir,
        "report",
        "--format",
        "xlsx",
        "--out",
        str(tmp_path / "cli.xlsx"),
        NEEDLECAST_DATABASE_URL=str(engine.url.render_as_string(hide_password=False)),
    )
    assert out.code == 0, out.stderr
    assert openpyxl.load_workbook(tmp_path / "cli.xlsx")["Conversions"].cell(row=2, column=3).value.hour == 14


def test_the_console_serves_the_report_page_without_inline_styles_and_its_xlsx_and_html_downloads(
    settled: tuple[Engine, list[dict]], workspace_dir: Path
) -> None:
    url = settled[0].url.render_as_string(hide_password=False)
    with site(workspace_dir, url, import_sample=False) as running:
        analyst = running.login("analyst")
        page = analyst.get("/console/reports/spring-guide")
        assert page.status_code == 200 and 'style="' not in page.text and "<style" not in page.text
        every = analyst.get("/console/reports/spring-guide/report.xlsx")
        assert every.status_code == 200, every.text[:300]
        book = openpyxl.load_workbook(io.BytesIO(every.content))
        assert book["Totals per campaign"]["A1"].value == "Campaign"
        html = analyst.get("/console/reports/spring-guide/report.html")
        assert html.status_code == 200 and "Hard bounces" in html.text


def test_a_report_of_an_unknown_campaign_is_an_error_naming_it_and_the_campaigns(
    settled: tuple[Engine, list[dict]], workspace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _ = settled
    url = str(engine.url.render_as_string(hide_password=False))
    out = run(monkeypatch, workspace_dir, "report", "nope", NEEDLECAST_DATABASE_URL=url)
    assert out.code == 1 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0, out.stderr  # one line
    assert "'nope'" in out.stderr and "new-lead-nurture, spring-guide" in out.stderr
    assert run(monkeypatch, workspace_dir, "report", "spring-guide", NEEDLECAST_DATABASE_URL=url).code == 0


def test_charts_carry_no_inline_style_so_a_strict_csp_draws_them(settled: tuple[Engine, list[dict]]) -> None:
    engine, _ = settled
    report = load_report(engine, "spring-guide", time_zone=CLINIC_ZONE)
    for chart in (funnel_chart(report), timeline_chart(report)):
        assert chart is not None
        root = ElementTree.fromstring(str(chart))
        styled = [e.tag for e in root.iter() if "style" in e.attrib or e.tag.endswith("}style")]
        assert styled == []
        fills = {e.get("fill") for e in root.iter()}
        assert "#ffffff" in fills  # the background is white, not the black a blocked style leaves
        assert root.get("role") == "img" and root.get("aria-label")
    bars = {e.get("fill") for e in ElementTree.fromstring(str(funnel_chart(report))).iter()}
    assert {"#2f4858", "#55828b", "#b5654a", "#e0a458"} <= bars


def test_a_clinic_time_zone_that_names_no_zone_is_a_configuration_error_saying_what_to_write(
    workspace_dir: Path,
) -> None:
    config = workspace_dir / "needlecast.toml"
    config.write_text(config.read_text().replace('time_zone = "Europe/London"', 'time_zone = "Bristol"'))
    with pytest.raises(ConfigurationError, match=r"\[clinic\] time_zone must be an IANA time zone.*'Bristol'"):
        open_workspace(workspace_dir)
