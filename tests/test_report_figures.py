"""Every figure of every report format against a count made here, independently, from generated ledgers and events.

Hypothesis generates emails (two campaigns, two concerns, some still queued, some to contacts since erased) and
their SendGrid events, posted through the webhook's `ingest` in shuffled batches: repeats (the same event twice,
and several opens or clicks), events out of time order, machine opens (marked, or within 10 s of delivery), a
hard and a soft bounce for one email, deferred-then-delivered, and bookings inside and outside the 7-day
attribution window. The test counts each figure from the generated data by the definitions in the README
(`needlecast.reports.metrics`), then reads it back from the report's DataFrames, JSON, CSV, XLSX (openpyxl),
Parquet (pyarrow), the HTML tables and the comparison of every campaign (and its CSV): all must agree. The
comparison is counted in the database (`reports.groups`); every one of its tables must equal the same tables
computed email by email in pandas.
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

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert

from needlecast.addresses import email_hash
from needlecast.audience.events import store_events, validate_event
from needlecast.reports import load_report
from needlecast.reports.compare import Catalogue, Filters, annotate, compare, email_flags, load_comparison
from needlecast.reports.export import (
    SHEETS,
    html_tables,
    title,
    to_json,
    write_csv,
    write_parquet,
    write_xlsx,
)
from needlecast.reports.metrics import METRICS
from needlecast.store.engine import open_store
from needlecast.store.helpers import hash_key
from needlecast.store.schema import contact_events, contacts, deliveries, events
from needlecast.tracking.events import parse_sendgrid
from needlecast.tracking.webhook import ingest

BASE = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CAMPAIGNS = ("spring", "autumn")
WINDOW = timedelta(days=7)
KINDS = ("delivered", "deferred", "bounce", "blocked", "dropped", "open", "machine_open", "click", "unsub", "spam")
ITEM = {
    "delivered": {"event": "delivered"},
    "deferred": {"event": "deferred"},
    "bounce": {"event": "bounce", "type": "bounce"},
    "blocked": {"event": "bounce", "type": "blocked"},
    "dropped": {"event": "dropped"},
    "open": {"event": "open"},
    "machine_open": {"event": "open", "sg_machine_open": True},
    "click": {"event": "click", "url": "https://clinic.example/book"},
    "unsub": {"event": "unsubscribe"},
    "spam": {"event": "spamreport"},
}
FIGURES = [m.column for m in METRICS if m.tables == "emails" and m.column != "value_XXX"] + ["value_GBP"]


@dataclass
class Email:
    campaign: str
    variant: str
    sent: bool
    events: list[tuple[str, int, bool]]  # kind, seconds after sending, posted twice
    bookings: list[int] = field(default_factory=list)  # hours after sending (only for contacts not erased)
    day: int = 0  # days after BASE that it was sent


event = st.tuples(st.sampled_from(KINDS), st.sampled_from([0, 3, 9, 30, 600, 86_400, 200_000]), st.booleans())
emails = st.lists(
    st.builds(
        Email,
        campaign=st.sampled_from(CAMPAIGNS),
        variant=st.sampled_from(["acne", "general"]),
        sent=st.sampled_from([True, True, True, False]),
        events=st.lists(event, max_size=7),
        bookings=st.lists(st.sampled_from([-30, 1, 50, 160, 170, 200]), max_size=2),
    ),
    min_size=1,
    max_size=12,
)


def store(engine: Engine, generated: list[Email], erased: set[int], order: random.Random) -> list[dict[str, Any]]:
    """The ledger (contact `i // 2`: a person gets up to one email per campaign), the events posted in shuffled
    batches (the repeated ones again in a later batch) and the bookings; the rows as stored, for the oracle."""
    with engine.begin() as conn:
        for table in (events, contact_events, deliveries, contacts):
            conn.execute(delete(table))
        key = hash_key(conn)
        people = {i // 2 for i in range(len(generated))} - erased
        for person in sorted(people):
            conn.execute(
                insert(contacts).values(
                    id=person + 1,
                    email=f"p{person}@example.com",
                    email_hash=email_hash(key, f"p{person}@example.com"),
                    first_name="",
                    last_name="",
                    concerns="acne",
                    time_zone="Europe/London",
                    locale="",
                    tags="",
                    status="active",
                    marketing_consent=True,
                    concern_consent=True,
                    attributes={},
                    signed_up_at=BASE,
                    created_at=BASE,
                    updated_at=BASE,
                )
            )
    rows, items, again = [], [], []
    used: set[tuple[str, int]] = set()
    with engine.begin() as conn:
        for i, email in enumerate(generated):
            person = i // 2
            # Person `i // 2` has at most two emails: the second goes to the other campaign when both chose one.
            campaign = (
                email.campaign
                if (email.campaign, person) not in used
                else CAMPAIGNS[1 - CAMPAIGNS.index(email.campaign)]
            )
            used.add((campaign, person))
            sent_at = BASE + timedelta(days=email.day, minutes=7 * i)
            row = {
                "id": i + 1,
                "campaign": campaign,
                "variant": email.variant,
                "contact": person + 1,
                "sent": email.sent,
                "sent_at": sent_at,
                "events": email.events if email.sent else [],
                "bookings": [] if person in erased else email.bookings,
            }
            conn.execute(
                insert(deliveries).values(
                    id=row["id"],
                    campaign_id=campaign,
                    step_id="only",
                    contact_id=person + 1,
                    segment="everyone",
                    variant=email.variant,
                    arm="",
                    status="sent" if email.sent else "queued",
                    due_at=sent_at,
                    claim_token="",
                    sent_at=sent_at if email.sent else None,
                    message_id=f"m{i}" if email.sent else "",
                    error="",
                    attempts=1,
                    created_at=sent_at,
                    updated_at=sent_at,
                    outcome="",
                    timing="",
                    request_id="",
                )
            )
            rows.append(row)
            for n, (kind, offset, twice) in enumerate(row["events"]):
                item = {
                    **ITEM[kind],
                    "email": f"p{person}@example.com",
                    "timestamp": int((sent_at + timedelta(seconds=offset)).timestamp()),
                    "sg_event_id": f"e{i}-{n}",
                    "delivery_id": str(row["id"]),
                    "campaign": campaign,
                    "step": "only",
                }
                items.append(item)
                if twice:
                    again.append(item)
    order.shuffle(items)
    half = len(items) // 2
    for batch in (items[:half], items[half:], again):
        if batch:
            ingest(engine, parse_sendgrid(json.dumps(batch).encode()))
    bookings = [
        validate_event(
            {
                "id": f"b{row['id']}-{n}",
                "email": f"p{row['contact'] - 1}@example.com",
                "type": "booked",
                "occurred_at": (row["sent_at"] + timedelta(hours=hours)).isoformat(),
                "value": 60,
                "currency": "GBP",
            },
            n,
        )
        for row in rows
        for n, hours in enumerate(row["bookings"])
    ]
    with engine.begin() as conn:
        store_events(conn, bookings, "test", BASE + timedelta(days=30))  # type: ignore[arg-type]
    return rows


def fate(row: dict[str, Any]) -> dict[str, bool]:
    """One email's flags by the README's definitions."""
    kinds = {k for k, _, _ in row["events"]}
    hard = "bounce" in kinds
    soft = "blocked" in kinds and not hard
    dropped = "dropped" in kinds and not (hard or soft)
    engaged = {"delivered", "open", "machine_open", "click"} & kinds
    delivered = bool(engaged) and not (hard or soft or dropped)
    arrivals = [o for k, o, _ in row["events"] if k == "delivered"]
    arrival = min(arrivals) if arrivals else 0
    human = any(k == "open" and o - arrival > 10 for k, o, _ in row["events"])
    opened = bool({"open", "machine_open"} & kinds)
    return {
        "sent": row["sent"],
        "delivered": delivered,
        "bounced": hard or soft,
        "bounced_hard": hard,
        "bounced_soft": soft,
        "dropped": dropped,
        "opened": opened,
        "opened_human": human,
        "opened_machine": opened and not human,
        "clicked": "click" in kinds,
        "unsubscribed": "unsub" in kinds,
        "complained": "spam" in kinds,
    }


def credited(rows: list[dict[str, Any]]) -> Counter[int]:
    """Bookings per email: the last email the person clicked within 7 days before, else the last one sent to
    them (and not bounced or dropped) within 7 days before; ties go to the later email."""
    mine: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["sent"]:
            mine[row["contact"]].append(row)
    counts: Counter[int] = Counter()
    for row in rows:
        for hours in row["bookings"]:
            moment = row["sent_at"] + timedelta(hours=hours)
            clicks = [
                (r["sent_at"] + timedelta(seconds=o), r["id"])
                for r in mine[row["contact"]]
                for k, o, _ in r["events"]
                if k == "click" and moment - WINDOW <= r["sent_at"] + timedelta(seconds=o) <= moment
            ]
            sends = [
                (r["sent_at"], r["id"])
                for r in mine[row["contact"]]
                if moment - WINDOW <= r["sent_at"] <= moment and not (fate(r)["bounced"] or fate(r)["dropped"])
            ]
            if clicks or sends:
                counts[max(clicks or sends)[1]] += 1
    return counts


def expected(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Every figure per campaign, counted here."""
    bookings = credited(rows)
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        figures = out.setdefault(row["campaign"], dict.fromkeys(FIGURES, 0.0))
        flags = fate(row) if row["sent"] else dict.fromkeys(fate(row), False)
        for name, value in flags.items():
            figures[name] += int(value)
        counted = Counter(k for k, _, _ in row["events"])
        figures["opens"] += counted["open"] + counted["machine_open"]
        figures["clicks"] += counted["click"]
        figures["conversions"] += bookings[row["id"]]
        figures["converted"] += int(bookings[row["id"]] > 0)
        figures["value_GBP"] += 60 * bookings[row["id"]]
    return out


def by_campaign(table: pd.DataFrame, campaign_column: str, columns: dict[str, str]) -> dict[str, dict[str, float]]:
    """{campaign: {figure: summed value}} from a table whose figure columns are named by `columns`."""
    present = {figure: name for figure, name in columns.items() if name in table.columns}
    summed = table.groupby(campaign_column)[list(present.values())].sum()
    return {str(c): {f: float(summed.loc[c, n]) for f, n in present.items()} for c in summed.index}


def agrees(found: dict[str, dict[str, float]], wanted: dict[str, dict[str, float]], face: str) -> None:
    for campaign, figures in wanted.items():
        for figure, value in figures.items():
            if figure in found.get(campaign, {}):
                assert found[campaign][figure] == pytest.approx(value), f"{face}: {campaign} {figure}"


def check_every_face(engine: Engine, rows: list[dict[str, Any]], folder: Path) -> None:
    wanted = expected(rows)
    report = load_report(engine, min_group=0)
    raw = {f: f for f in FIGURES}
    titled = {f: title(f) for f in FIGURES}
    agrees(by_campaign(report.totals, "campaign_id", raw), wanted, "DataFrame")
    assert set(report.totals["campaign_id"]) == set(wanted)
    for row in report.totals.itertuples():
        if row.delivered:
            assert row.opened_rate == pytest.approx(row.opened / row.delivered)
            assert row.conversion_rate == pytest.approx(row.converted / row.delivered)
    agrees(by_campaign(pd.DataFrame(json.loads(to_json(report))["totals"]), "campaign_id", raw), wanted, "JSON")
    text = io.StringIO()
    write_csv(report, text)
    agrees(by_campaign(pd.read_csv(io.StringIO(text.getvalue())), "Campaign", titled), wanted, "CSV")
    write_parquet(report, folder / "r.parquet")
    agrees(by_campaign(pq.read_table(folder / "r.parquet").to_pandas(), "campaign_id", raw), wanted, "Parquet")
    write_xlsx(report, folder / "r.xlsx")
    sheet = openpyxl.load_workbook(folder / "r.xlsx")[SHEETS["totals"]]
    cells = list(sheet.values)
    agrees(by_campaign(pd.DataFrame(cells[1:], columns=cells[0]), "Campaign", titled), wanted, "XLSX")
    shown = {name: (columns, body) for name, _, columns, body in html_tables(report)}
    columns, body = shown["totals"]
    html = pd.DataFrame(body, columns=columns).map(lambda v: 0 if v == "–" else v)
    numeric = html.set_index("Campaign").apply(pd.to_numeric, errors="coerce").reset_index()
    agrees(by_campaign(numeric, "Campaign", titled), wanted, "HTML")
    comparison = load_comparison(engine, Catalogue(), Filters(), time_zone="Europe/London", min_group=0)
    agrees(by_campaign(comparison.campaigns, "campaign_id", raw), wanted, "comparison")
    one_by_one = compare(annotate(email_flags(engine), Catalogue(), "Europe/London"), Filters(), "Europe/London", 0)
    for name, table in one_by_one.tables().items():  # counted in SQL, or email by email in pandas: the same
        pd.testing.assert_frame_equal(
            comparison.tables()[name].reset_index(drop=True), table.reset_index(drop=True), check_dtype=False, obj=name
        )
    total = comparison.totals.iloc[0]
    for figure in ("sent", "delivered", "bounced", "opened", "clicked", "conversions"):
        assert float(total[figure]) == sum(w[figure] for w in wanted.values()), f"totals row: {figure}"
    text = io.StringIO()
    write_csv(comparison, text)
    compared = pd.read_csv(io.StringIO(text.getvalue()))
    agrees(by_campaign(compared[compared["Campaign"] != "All campaigns"], "Campaign", titled), wanted, "compare CSV")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=emails, erased=st.sets(st.integers(0, 5), max_size=2), seed=st.integers(0, 1000))
def test_every_figure_of_every_format_matches_an_independent_count(
    engine: Engine, tmp_path: Path, generated: list[Email], erased: set[int], seed: int
) -> None:
    rows = store(engine, generated, erased, random.Random(seed))
    check_every_face(engine, rows, tmp_path)


def test_one_email_with_a_hard_and_a_soft_bounce_and_deferred_then_delivered(store_url: str, tmp_path: Path) -> None:
    """The named cases, fixed: a hard and a soft bounce for one email count one hard bounce; deferred then
    delivered is delivered; a marked machine open and an open 3 s after delivery are machine opens."""
    generated = [
        Email("spring", "acne", True, [("blocked", 30, False), ("bounce", 600, True)]),
        Email("spring", "acne", True, [("deferred", 0, False), ("delivered", 600, False), ("open", 86_400, True)]),
        Email("spring", "general", True, [("delivered", 0, False), ("open", 3, False), ("machine_open", 600, False)]),
    ]
    engine = open_store(store_url)
    try:
        rows = store(engine, generated, set(), random.Random(1))
        wanted = Counter[str]()
        for figures in expected(rows).values():  # the first two emails are one person's: one per campaign
            wanted.update(figures)
        assert (wanted["bounced_hard"], wanted["bounced_soft"], wanted["delivered"]) == (1, 0, 2)
        assert (wanted["opened_human"], wanted["opened_machine"], wanted["opens"]) == (1, 1, 3)
        check_every_face(engine, rows, tmp_path)
    finally:
        engine.dispose()


def test_the_readme_documents_every_metric() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    from needlecast.reports.metrics import readme_table

    assert readme_table() in readme


def test_a_booking_is_not_credited_to_an_email_dropped_before_a_later_deferral(store_url: str) -> None:
    """The ledger's outcome is the latest report (a deferral after the drop hides it); the email's fate is
    dropped, so it earns no booking as "last delivered"."""
    generated = [Email("spring", "acne", True, [("dropped", 0, False), ("deferred", 600, False)], [2])]
    engine = open_store(store_url)
    try:
        store(engine, generated, set(), random.Random(0))
        report = load_report(engine, min_group=0)
        assert report.conversions["rule"].tolist() == ["none"]
        assert int(report.totals["conversions"].sum()) == 0 and int(report.totals["dropped"].sum()) == 1
    finally:
        engine.dispose()


def test_the_report_of_a_ledger_with_nothing_sent_yet_is_empty_not_an_error(store_url: str) -> None:
    engine = open_store(store_url)
    try:
        store(engine, [Email("spring", "acne", False, [], [])], set(), random.Random(0))
        report = load_report(engine, min_group=0)
        assert report.timeline.empty and int(report.totals["sent"].sum()) == 0
    finally:
        engine.dispose()
