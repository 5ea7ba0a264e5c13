"""Conversions: each booking credited by last click within the window, else last delivered, else nothing; then
counted per campaign, step, segment, variant and arm, with values per currency, reconciling with the ledger and
the events stored (SQLite and PostgreSQL). Every time is fixed in the data: no clock is read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from needlecast.audience.events import store_events, validate_event
from needlecast.audience.importer import import_file
from needlecast.campaign.send.runner import Runner
from needlecast.config import AttributionSettings, open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.delivery.outbox import OutboxBackend
from needlecast.reports import load_report
from needlecast.statistics.attribution import LAST_CLICK, LAST_DELIVERED, NONE, attribute
from needlecast.store.engine import open_store
from needlecast.store.schema import contacts, deliveries
from needlecast.tracking.events import parse_sendgrid
from needlecast.tracking.webhook import ingest

T0 = pd.Timestamp("2026-11-02 09:00", tz="UTC")
GROUP = {"campaign_id": "c", "step_id": "s", "segment": "all", "variant": "general", "arm": ""}


def _deliveries(*rows: tuple[int, int, pd.Timedelta, str]) -> pd.DataFrame:
    """(delivery id, contact id, sent after T0, outcome)."""
    return pd.DataFrame(
        [
            {"id": d, "contact_id": c, "sent_at": T0 + after, "status": "sent", "outcome": outcome, **GROUP}
            for d, c, after, outcome in rows
        ]
    )


def _clicks(*rows: tuple[int, pd.Timedelta]) -> pd.DataFrame:
    return pd.DataFrame([{"delivery_id": d, "kind": "clicked", "occurred_at": T0 + after} for d, after in rows])


def _bookings(*rows: tuple[str, float | None, pd.Timedelta]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "conversion_id": n,
                "contact_id": c,
                "type": "booked",
                "occurred_at": T0 + after,
                "value": 60.0,
                "currency": "GBP",
            }
            for n, c, after in rows
        ]
    )


H, D = pd.Timedelta(hours=1), pd.Timedelta(days=1)


def _credit(window_days: int = 7) -> dict[str, tuple[str, int | None]]:
    sent = _deliveries(
        (1, 1, 0 * D, "delivered"),
        (2, 1, 2 * D, "delivered"),  # person 1: clicked the first, received a second
        (3, 2, 0 * D, "delivered"),  # person 2: clicked, booked nine days later
        (4, 3, 0 * D, "delivered"),  # person 3: never clicked
        (5, 4, 0 * D, "bounced"),  # person 4: the email bounced
        (6, 5, 0 * D, "delivered"),  # person 5: clicked only after booking
        (7, 6, 0 * D, "delivered"),
        (8, 6, 1 * D, "delivered"),  # person 6: clicked both
    )
    clicks = _clicks((1, H), (3, H), (6, 5 * D), (7, H), (8, D + H))
    bookings = _bookings(
        ("b1", 1, 3 * D),
        ("b2", 2, 9 * D),
        ("b3", 3, 2 * D),
        ("b4", 4, 1 * D),
        ("b5", 5, 1 * D),
        ("b6", 6, 2 * D),
        ("b7", None, 1 * D),  # someone who is not a contact
    )
    credited = attribute(sent, clicks, bookings, window_days)
    return {
        row.conversion_id: (row.rule, None if pd.isna(row.delivery_id) else int(row.delivery_id))
        for row in credited.itertuples()
    }


def test_each_booking_is_credited_by_last_click_else_last_delivered_within_the_window() -> None:
    assert _credit() == {
        "b1": (LAST_CLICK, 1),  # a click beats a later delivery
        "b2": (NONE, None),  # the click and the email are older than seven days
        "b3": (LAST_DELIVERED, 4),
        "b4": (NONE, None),  # a bounced email earned nothing
        "b5": (LAST_DELIVERED, 6),  # a click after the booking did not cause it
        "b6": (LAST_CLICK, 8),  # the latest click wins
        "b7": (NONE, None),
    }


def test_a_longer_window_reaches_further_back() -> None:
    assert _credit(window_days=10)["b2"] == (LAST_CLICK, 3)


@pytest.fixture()
def sent(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The sample broadcast sent to the outbox (every arm and variant), with no events yet."""
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    workspace = open_workspace(workspace_dir)
    engine = open_store(store_url)
    import_file(engine, workspace.audiences_dir / "sample.csv", load_vocabulary_for(workspace))
    Runner(workspace, engine, partial(OutboxBackend, workspace.settings, workspace.outbox_dir)).run_broadcast(
        "spring-guide", send_now=True
    )
    return engine


def test_report_counts_conversions_per_group_with_values_and_the_ab_test_and_they_reconcile(sent: Engine) -> None:
    with sent.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.id, deliveries.c.sent_at, contacts.c.email)
            .join(contacts, contacts.c.id == deliveries.c.contact_id)
            .where(deliveries.c.status == "sent")
            .order_by(deliveries.c.id)
        ).all()
    clicks, bookings = [], []
    for n, (delivery_id, sent_at, email) in enumerate(rows):
        at = sent_at.replace(tzinfo=UTC)
        base = {"email": email, "delivery_id": str(delivery_id), "campaign": "spring-guide", "step": "guide"}
        clicks.append({**base, "event": "delivered", "sg_event_id": f"d{n}", "timestamp": int(at.timestamp()) + 60})
        if n % 4 == 0:
            stamp = int((at + timedelta(hours=1)).timestamp())
            clicks.append({**base, "event": "click", "sg_event_id": f"c{n}", "timestamp": stamp, "url": "https://x"})
        if n % 8 == 0:  # half the clickers book the next day
            bookings.append((f"click-{n}", email, at + timedelta(days=1), "180"))
        elif n % 8 == 1:  # some who only received it book within the week
            bookings.append((f"sent-{n}", email, at + timedelta(days=3), "60"))
        elif n % 8 == 2:  # a booking long after the email: not ours
            bookings.append((f"late-{n}", email, at + timedelta(days=30), "60"))
    ingest(sent, parse_sendgrid(json.dumps(clicks).encode()))
    events = [
        validate_event(
            {"id": i, "email": e, "type": "booked", "occurred_at": when.isoformat(), "value": v, "currency": "GBP"}, k
        )
        for k, (i, e, when, v) in enumerate(bookings)
    ]
    with sent.begin() as conn:
        assert store_events(conn, events, "test", datetime.now(UTC)).stored == len(bookings)  # type: ignore[arg-type]

    report = load_report(sent, "spring-guide", attribution=AttributionSettings(("booked",), 7))
    rules = report.conversions["rule"].value_counts().to_dict()
    by_click = sum(1 for b in bookings if b[0].startswith("click"))
    by_send = sum(1 for b in bookings if b[0].startswith("sent"))
    late = sum(1 for b in bookings if b[0].startswith("late"))
    assert rules == {LAST_CLICK: by_click, LAST_DELIVERED: by_send}  # a campaign's report: what it earned
    every = load_report(sent, attribution=AttributionSettings(("booked",), 7)).conversions
    assert every["rule"].value_counts().to_dict() == {LAST_CLICK: by_click, LAST_DELIVERED: by_send, NONE: late}
    funnel = report.funnel
    assert int(funnel["conversions"].sum()) == by_click + by_send == int(funnel["converted"].sum())
    assert float(funnel["value_GBP"].sum()) == 180.0 * by_click + 60.0 * by_send
    assert int(funnel["sent"].sum()) == len(rows)
    shown = funnel[funnel["rates"] == "shown"]
    assert (shown["conversion_rate"] == shown["converted"] / shown["delivered"]).all()
    assert {"variant", "arm"} <= set(funnel.columns) and set(funnel["arm"]) == {"A", "B"}
    assert {"conversion_rate", "conversion_p_value", "conversion_winner"} <= set(report.ab.columns)
