"""The deliverability guard's rolling window on SQLite and PostgreSQL: read through the ledger's index of a
campaign's delivery ids (the query plan says so, on a ledger of several campaigns with statistics), never a
scan of the whole ledger, and the same figures as the window counted by hand."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, text

from needlecast.campaign.send.guardrails import window_figures
from needlecast.store.guardwindow import HANDED, explain_window, newest_handed
from needlecast.store.schema import deliveries, events

AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ROWS = {"winter": 3000} | {f"c{n}": 800 for n in range(9)}  # winter: 2,000 handed over, 1,000 not yet


def _status(campaign: str, n: int) -> str:
    """winter: its first 2,000 handed over (every 97th refused, every 13th unknown), the rest queued or
    skipped; the other campaigns all sent."""
    if campaign != "winter":
        return "sent"
    if n >= 2000:
        return "skipped" if n % 50 == 0 else "queued"
    return "failed" if n % 97 == 0 else ("unknown" if n % 13 == 0 else "sent")


def _ledger(engine: Engine) -> None:
    """Ten campaigns' rows interleaved in the ledger in slices (as campaigns enqueued in turns are), with
    bounces, complaints and drops on some of winter's."""
    rows = []
    for part in range(4):
        for campaign, count in ROWS.items():
            for n in range(part * count // 4, (part + 1) * count // 4):
                rows.append(
                    {
                        "campaign_id": campaign,
                        "step_id": "s",
                        "contact_id": n,
                        "segment": "all",
                        "variant": "general",
                        "arm": "",
                        "status": _status(campaign, n),
                        "due_at": AT,
                        "claim_token": "",
                        "message_id": "",
                        "error": "",
                        "attempts": 0,
                        "created_at": AT,
                        "updated_at": AT,
                        "outcome": "dropped" if campaign == "winter" and n % 89 == 0 and n < 2000 else "",
                    }
                )
    with engine.begin() as conn:
        conn.execute(insert(deliveries), rows)
        winter = conn.execute(
            select(deliveries.c.id, deliveries.c.contact_id).where(deliveries.c.campaign_id == "winter")
        ).all()
        bad = [
            {
                "provider_event_id": f"e{delivery_id}-{kind}",
                "kind": kind,
                "delivery_id": delivery_id,
                "campaign_id": "winter",
                "step_id": "s",
                "message_id": "",
                "email_hash": "",
                "occurred_at": AT,
                "received_at": AT,
                "detail": "",
                "raw": {},
            }
            for delivery_id, n in winter
            for kind in ("bounced", "complained")
            if (kind == "bounced" and n % 31 == 0) or (kind == "complained" and n % 211 == 0)
        ]
        sent = conn.execute(
            select(deliveries.c.id, deliveries.c.campaign_id).where(deliveries.c.status == "sent")
        ).all()
        delivered = [  # every campaign's other events: what the events' index spares the guard from reading
            {**bad[0], "provider_event_id": f"e{d}-{kind}", "kind": kind, "delivery_id": d, "campaign_id": c}
            for d, c in sent
            for kind in ("delivered",)
        ]
        conn.execute(insert(events), bad + delivered)
        conn.execute(text("ANALYZE"))


def _by_hand(engine: Engine, window: int, floor: int) -> tuple[int, int, int, int]:
    """The window counted in Python from every row: (emails, hard bounces, complaints, refused or dropped)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.id, deliveries.c.status, deliveries.c.outcome).where(
                deliveries.c.campaign_id == "winter"
            )
        ).all()
        kinds = conn.execute(select(events.c.delivery_id, events.c.kind)).all()
    handed = sorted((r for r in rows if r.status in HANDED and r.id > floor), key=lambda r: -r.id)[:window]
    ids = {r.id for r in handed}
    bounced = {d for d, k in kinds if k == "bounced" and d in ids}
    complained = {d for d, k in kinds if k == "complained" and d in ids}
    refused = sum(1 for r in handed if r.status == "failed" or r.outcome == "dropped")
    return len(handed), len(bounced), len(complained), refused


def test_the_window_is_read_through_the_campaigns_index_with_the_figures_counted_by_hand(engine: Engine) -> None:
    _ledger(engine)
    with engine.connect() as conn:
        plan = explain_window(conn, "winter", 1000, 0)
    said = "\n".join(plan)
    if engine.dialect.name == "sqlite":
        assert "SEARCH deliveries USING INDEX ix_deliveries_campaign_window" in said, said
        # through an index of the events by delivery (the bad events' own, or a covering one the reports use)
        assert re.search(r"SEARCH events USING (COVERING )?INDEX", said), said
        assert not [line for line in plan if line.strip().startswith(("SCAN deliveries", "SCAN events"))], said
    else:
        # the ledger walked backwards from the campaign's newest row, stopping at the window; the events read
        # through the index of bounces, complaints and drops
        assert "Limit" in said and "Index Scan Backward using ix_deliveries_campaign_window on deliveries" in said
        assert "using ix_events_bad on events" in said, said
        assert "Seq Scan" not in said and "deliveries_pkey" not in said, said
    # The same figures as the window counted by hand from every row: a window smaller than what was handed
    # over, the smallest window, one larger than the whole campaign, and one above a resume's floor.
    with engine.connect() as conn:
        newest = newest_handed(conn, "winter")
    assert newest == max(r for r in _winter_handed(engine))
    for window, floor in [(1000, 0), (200, 0), (5000, 0), (1000, newest - 700)]:
        with engine.connect() as conn:
            figures = window_figures(conn, "winter", window, floor)
        counted = _by_hand(engine, window, floor)
        got = (figures.emails, figures.hard_bounces, figures.complaints, figures.provider_errors)
        assert got == counted, (window, floor)
        assert counted[0] == min(window, 2000 if floor == 0 else counted[0]) and counted[1] and counted[3]


def _winter_handed(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(deliveries.c.id).where(deliveries.c.campaign_id == "winter", deliveries.c.status.in_(HANDED))
            ).scalars()
        )
