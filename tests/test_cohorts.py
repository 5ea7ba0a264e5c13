"""Cohorts and revenue against counts made here, independently, from the generated contacts, consents, emails,
SendGrid events and bookings (on SQLite and PostgreSQL); a hand-computed cohort table with a frozen clock; and
the faces: `needlecast cohorts` in every format, and the console's Cohorts page and downloads.

Hypothesis generates leads who signed up in three months (one at a month's edge on the clinic's clock),
each with a first consent from one of two sources (or none), a concern with or without consent for it, and
bookings before signing up, on the day and 29 to 100 days after; and, for revenue, the ledgers and event
streams of `test_report_figures` with bookings in two currencies and without a value.
"""

from __future__ import annotations

import io
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert

from needlecast.addresses import email_hash
from needlecast.audience.events import store_events, validate_event
from needlecast.reports.cohorts import load_cohorts
from needlecast.reports.metrics import COHORT_DAYS
from needlecast.reports.revenue import TOTAL, load_revenue
from needlecast.store.engine import open_store
from needlecast.store.helpers import hash_key
from needlecast.store.schema import consent_events, contact_events, contacts, deliveries, events
from tests.cli_runner import run
from tests.test_report_figures import WINDOW, Email, emails, fate, store

LONDON = ZoneInfo("Europe/London")
START = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)  # 23:30 UTC is still January in London (GMT)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SOURCES = ("import:leads.csv", "form:spring", None)


@dataclass
class Lead:
    day: int  # days after START it signed up
    source: str | None  # of its first consent (None: no consent event)
    concern: str  # "" for none
    consented: bool  # to the use of its concern
    bookings: list[int] = field(default_factory=list)  # days after signing up


leads = st.lists(
    st.builds(
        Lead,
        day=st.sampled_from([0, 1, 20, 45, 70, 100]),
        source=st.sampled_from(SOURCES),
        concern=st.sampled_from(["acne", "rosacea", ""]),
        consented=st.booleans(),
        bookings=st.lists(st.sampled_from([-3, 0, 29, 31, 59, 61, 89, 91, 100]), max_size=3),
    ),
    min_size=1,
    max_size=14,
)


def _contact(person: int, key: bytes, signed: datetime, lead: Lead) -> dict[str, Any]:
    return {
        "id": person + 1,
        "email": f"lead{person}@example.com",
        "email_hash": email_hash(key, f"lead{person}@example.com"),
        "first_name": "",
        "last_name": "",
        "concerns": f"{lead.concern};acne" if lead.concern else "",
        "time_zone": "",
        "locale": "",
        "tags": "",
        "status": "active",
        "marketing_consent": True,
        "concern_consent": lead.consented,
        "attributes": {},
        "signed_up_at": signed,
        "created_at": signed,
        "updated_at": signed,
    }


def store_leads(engine: Engine, generated: list[Lead]) -> None:
    """The contacts, their consent histories (the first one's source, then a later one elsewhere) and bookings."""
    with engine.begin() as conn:
        for table in (consent_events, contact_events, events, deliveries, contacts):
            conn.execute(delete(table))
        key = hash_key(conn)
        for person, lead in enumerate(generated):
            signed = START + timedelta(days=lead.day)
            conn.execute(insert(contacts).values(**_contact(person, key, signed, lead)))
            if lead.source:
                for source, later in ((lead.source, 0), ("api:later", 5)):
                    conn.execute(
                        insert(consent_events).values(
                            contact_id=person + 1,
                            purpose="marketing",
                            action="granted",
                            source=source,
                            wording_version="",
                            recorded_at=signed + timedelta(days=later),
                        )
                    )
    bookings = [
        validate_event(
            {
                "id": f"lead{person}-{n}",
                "email": f"lead{person}@example.com",
                "type": "booked",
                "occurred_at": (START + timedelta(days=lead.day + days, hours=1)).isoformat(),
            },
            n,
        )
        for person, lead in enumerate(generated)
        for n, days in enumerate(lead.bookings)
    ]
    with engine.begin() as conn:
        store_events(conn, bookings, "test", NOW)  # type: ignore[arg-type]


def expected_cohorts(generated: list[Lead], by: str) -> dict[tuple[str, str], dict[str, float]]:
    """Per (month, source or concern): leads, booked within each window, and the share where it is shown."""
    groups: dict[tuple[str, str], list[Lead]] = defaultdict(list)
    for lead in generated:
        signed = START + timedelta(days=lead.day)
        group = (
            (lead.source or "unknown")
            if by == "source"
            else lead.concern
            if lead.consented and lead.concern
            else "general"
        )
        groups[(signed.astimezone(LONDON).strftime("%Y-%m"), group)].append(lead)
    out: dict[tuple[str, str], dict[str, float]] = {}
    for key, members in groups.items():
        figures: dict[str, float] = {"leads": len(members)}
        last = max(START + timedelta(days=lead.day) for lead in members)
        for n in COHORT_DAYS:
            # A booking at +n days (and an hour) is later than n days: only whole days before n count.
            booked = sum(any(0 <= d < n for d in lead.bookings) for lead in members)
            figures[f"booked_{n}d"] = booked
            figures[f"booked_{n}d_rate"] = booked / len(members) if last + timedelta(days=n) <= NOW else float("nan")
        out[key] = figures
    return out


def found_cohorts(table: pd.DataFrame, by: str) -> dict[tuple[str, str], dict[str, float]]:
    return {
        (row["month"], row[by]): {c: float(row[c]) for c in table.columns if c not in ("month", by)}
        for _, row in table.iterrows()
    }


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=leads)
def test_cohort_figures_match_an_independent_count(engine: Engine, generated: list[Lead]) -> None:
    store_leads(engine, generated)
    for by in ("source", "concern"):
        table = load_cohorts(engine, by, now=NOW, time_zone="Europe/London", min_group=0)
        found, wanted = found_cohorts(table, by), expected_cohorts(generated, by)
        assert set(found) == set(wanted), by
        for key, figures in wanted.items():
            assert found[key] == pytest.approx(figures, nan_ok=True), (by, key)


def test_a_cohort_table_by_hand_with_a_frozen_clock(store_url: str) -> None:
    """Three January leads by one source (one booked on day 10, one on day 40, one before signing up), a
    February lead without consent events, whose concern was given without consent for its use."""
    generated = [
        Lead(0, "import:leads.csv", "acne", True, [10]),  # 23:30 UTC on 31 January: January in London
        Lead(1, "import:leads.csv", "acne", True, [40, 50]),
        Lead(1, "import:leads.csv", "rosacea", False, [-3]),
        Lead(20, None, "acne", False, [95]),
    ]
    engine = open_store(store_url)
    try:
        store_leads(engine, generated)
        by_source = load_cohorts(engine, "source", now=NOW, time_zone="Europe/London", min_group=0)
        assert by_source.to_dict("records") == [
            {
                "month": "2026-01",
                "source": "import:leads.csv",
                "leads": 1,
                "booked_30d": 1,
                "booked_60d": 1,
                "booked_90d": 1,
                "booked_30d_rate": 1.0,
                "booked_60d_rate": 1.0,
                "booked_90d_rate": 1.0,
            },
            {
                "month": "2026-02",
                "source": "import:leads.csv",
                "leads": 2,
                "booked_30d": 0,
                "booked_60d": 1,
                "booked_90d": 1,
                "booked_30d_rate": 0.0,
                "booked_60d_rate": 0.5,
                "booked_90d_rate": 0.5,
            },
            {
                "month": "2026-02",
                "source": "unknown",
                "leads": 1,
                "booked_30d": 0,
                "booked_60d": 0,
                "booked_90d": 0,
                "booked_30d_rate": 0.0,
                "booked_60d_rate": 0.0,
                "booked_90d_rate": 0.0,
            },
        ]
        by_concern = load_cohorts(engine, "concern", now=START + timedelta(days=75), time_zone="Europe/London")
        assert [(r["month"], r["concern"], r["leads"]) for r in by_concern.to_dict("records")] == [
            ("2026-01", "acne", 1),
            ("2026-02", "acne", 1),
            ("2026-02", "general", 2),  # a concern without consent for its use is never used, not even to count
        ]
        assert by_concern["booked_30d_rate"].isna().all()  # groups under 10 leads: counts without rates
    finally:
        engine.dispose()


# -- revenue ----------------------------------------------------------------------------------------------


def valued(rows: list[dict[str, Any]], engine: Engine) -> dict[str, tuple[str, float | None]]:
    """Give the stored bookings two currencies and some no value, as a booking system may; returns each
    booking's (currency, value) by id."""
    prices: dict[str, tuple[str, float | None]] = {}
    with engine.begin() as conn:
        for row in rows:
            for n, _ in enumerate(row["bookings"]):
                booking = f"b{row['id']}-{n}"
                price = [("GBP", 60.0), ("EUR", 75.5), ("", None)][(row["id"] + n) % 3]
                prices[booking] = price
                conn.execute(
                    contact_events.update()
                    .where(contact_events.c.source_id == booking)
                    .values(currency=price[0], value=price[1])
                )
    return prices


def credits(rows: list[dict[str, Any]], *, clicks: bool, sends: bool) -> dict[str, int]:
    """Booking id -> the credited email, by last click and/or last delivered (the oracle of
    `test_report_figures.credited`, each rule switchable)."""
    mine: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["sent"]:
            mine[row["contact"]].append(row)
    out: dict[str, int] = {}
    for row in rows:
        for n, hours in enumerate(row["bookings"]):
            moment = row["sent_at"] + timedelta(hours=hours)
            clicked = [
                (r["sent_at"] + timedelta(seconds=o), r["id"])
                for r in mine[row["contact"]]
                for k, o, _ in r["events"]
                if k == "click" and moment - WINDOW <= r["sent_at"] + timedelta(seconds=o) <= moment
            ]
            sent = [
                (r["sent_at"], r["id"])
                for r in mine[row["contact"]]
                if moment - WINDOW <= r["sent_at"] <= moment and not (fate(r)["bounced"] or fate(r)["dropped"])
            ]
            chosen = (clicked if clicks else []) or (sent if sends else [])
            if chosen:
                out[f"b{row['id']}-{n}"] = max(chosen)[1]
    return out


def tally(
    rows: list[dict[str, Any]], credited: dict[str, int], prices: dict[str, tuple[str, float | None]]
) -> dict[tuple[str, str], tuple[int, float]]:
    """(campaign, currency) -> (bookings, value) of the credited bookings."""
    campaign = {row["id"]: row["campaign"] for row in rows}
    out: dict[tuple[str, str], tuple[int, float]] = {}
    for booking, email in credited.items():
        currency, value = prices[booking]
        key = (campaign[email], currency if value is not None else "")
        count, total = out.get(key, (0, 0.0))
        out[key] = (count + 1, total + (value or 0.0))
    return out


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=emails, seed=st.integers(0, 1000))
def test_revenue_and_attribution_models_match_an_independent_count(
    engine: Engine, generated: list[Email], seed: int
) -> None:
    rows = store(engine, generated, set(), random.Random(seed))
    prices = valued(rows, engine)
    revenue = load_revenue(engine, min_group=0)
    wanted = tally(rows, credits(rows, clicks=True, sends=True), prices)
    table = revenue.campaigns
    per = table[table["campaign_id"] != TOTAL]
    found = {
        (r.campaign_id, r.currency): (int(r.bookings), float(r.value))
        for r in per.itertuples()
        if r.bookings or r.currency
    }
    assert found == {k: pytest.approx(v) for k, v in wanted.items()}
    for campaign in {row["campaign"] for row in rows if row["sent"]}:
        mine = [row for row in rows if row["campaign"] == campaign and row["sent"]]
        delivered = sum(fate(row)["delivered"] for row in mine)
        mailed = len({row["contact"] for row in mine})
        for r in per[per["campaign_id"] == campaign].itertuples():
            assert (r.delivered, r.mailed) == (delivered, mailed)
            share = r.value / delivered if delivered else float("nan")
            assert r.value_per_delivered == pytest.approx(share, nan_ok=True)
            assert r.value_per_recipient == pytest.approx(r.value / mailed)
    totals = table[table["campaign_id"] == TOTAL]
    per_currency: Counter[str] = Counter()
    for (_, currency), (_, value) in wanted.items():
        per_currency[currency] += value  # type: ignore[assignment]
    for r in totals.itertuples():
        assert r.value == pytest.approx(per_currency[r.currency])
        assert r.mailed == len({row["contact"] for row in rows if row["sent"]})
    models = revenue.attribution
    by_click = tally(rows, credits(rows, clicks=True, sends=False), prices)
    by_send = tally(rows, credits(rows, clicks=False, sends=True), prices)
    found_click = {(r.campaign_id, r.currency): (r.last_click, r.last_click_value) for r in models.itertuples()}
    found_send = {(r.campaign_id, r.currency): (r.last_delivered, r.last_delivered_value) for r in models.itertuples()}
    assert {k: v for k, v in found_click.items() if v[0]} == {k: pytest.approx(v) for k, v in by_click.items()}
    assert {k: v for k, v in found_send.items() if v[0]} == {k: pytest.approx(v) for k, v in by_send.items()}


# -- the faces ----------------------------------------------------------------------------------------------


def test_the_cohorts_command_writes_every_format_and_refuses_bad_options(
    workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cohorts.db'}"
    engine = open_store(url)
    store_leads(engine, [Lead(0, "import:leads.csv", "acne", True, [10]), Lead(40, "form:spring", "", False, [])])
    engine.dispose()
    env = {"NEEDLECAST_DATABASE_URL": url}
    shown = run(monkeypatch, workspace_dir, "cohorts", **env)
    assert shown.code == 0, shown.stderr
    assert "Lead cohorts" in shown.stdout and "Imported from leads.csv" in shown.stdout
    assert "Signup form “spring”" in shown.stdout
    assert "import:leads.csv" not in shown.stdout
    assert "Revenue per campaign" in shown.stdout and "Attribution models" in shown.stdout
    text = run(monkeypatch, workspace_dir, "cohorts", "--by", "concern", "--format", "csv", **env)
    assert text.code == 0, text.stderr
    table = pd.read_csv(io.StringIO(text.stdout))
    assert list(table["Concern"]) == ["acne", "general"] and list(table["Booked within 30 days"]) == [1, 0]
    answer = run(monkeypatch, workspace_dir, "cohorts", "--format", "json", **env)
    assert set(json.loads(answer.stdout)) == {"cohorts", "revenue", "attribution"}
    out = tmp_path / "cohorts.xlsx"
    assert run(monkeypatch, workspace_dir, "cohorts", "--format", "xlsx", "--out", str(out), **env).code == 0
    assert openpyxl.load_workbook(out).sheetnames == ["Lead cohorts", "Revenue per campaign", "Attribution models"]
    out = tmp_path / "cohorts.parquet"
    assert run(monkeypatch, workspace_dir, "cohorts", "--format", "parquet", "--out", str(out), **env).code == 0
    assert str(pq.read_table(out).schema.field("leads").type) == "int64"
    bad = run(monkeypatch, workspace_dir, "cohorts", "--by", "postcode", **env)
    assert bad.code == 1 and "by: 'postcode' is not a grouping; choose source or concern" in bad.stderr
    html = run(monkeypatch, workspace_dir, "cohorts", "--format", "html", **env)
    assert html.code == 1 and "the console's Cohorts page shows them" in html.stderr


def test_the_console_cohorts_page_and_downloads(workspace_dir: Path, tmp_path: Path) -> None:
    from tests.console_site import site

    url = f"sqlite:///{tmp_path / 'cohorts.db'}"
    engine = open_store(url)
    store_leads(engine, [Lead(0, "import:leads.csv", "acne", True, [10])])
    engine.dispose()
    with site(workspace_dir, url, import_sample=False) as running:
        analyst = running.login("analyst")
        page = analyst.get("/console/reports/cohorts")
        assert page.status_code == 200 and 'id="table-cohorts"' in page.text and "Imported from leads.csv" in page.text
        assert "import:leads.csv" not in page.text
        assert "lead0@example.com" not in page.text
        assert analyst.get("/console/reports/cohorts?by=postcode").status_code == 400
        download = analyst.get("/console/reports/cohorts.csv?by=concern")
        assert download.status_code == 200 and download.text.splitlines()[1].startswith("2026-01,acne,1,1")
        assert analyst.get("/console/reports/cohorts.pdf").status_code == 404
        assert running.client().get("/console/reports/cohorts").status_code == 303  # log in first
