"""The deliverability guard's rolling window (`campaign.send.guardrails`), read through an index.

The window is a campaign's last `window` emails handed to the provider (ledger rows `sent`, `unknown` or
`failed`) with a delivery id above its floor, newest id first. `ix_deliveries_campaign_window`
(`campaign_id`, `id`; migration 0015) serves it on both databases: the database walks the campaign's entries
backwards from its newest delivery id and stops once it has the window, so it never reads another
campaign's rows, nor the campaign's own rows older than the window. The rows it passes over on the way are
the campaign's newer ones not handed over yet (queued, sending, skipped). Neither column of the index ever
changes once a row is written, so claiming and marking a row stay HOT updates on PostgreSQL (migration 0005).

Contract:
- `window_counts(conn, campaign_id, window, floor)`: (emails in the window, those refused or dropped,
  those with a hard bounce, those with a complaint), each email counted once whatever its events.
- `newest_handed(conn, campaign_id)`: the newest delivery id handed over (0 when none): where a resumed
  campaign's window starts.
- `explain_window(conn, campaign_id, window, floor)`: the database's query plans of the window's two reads,
  as text lines (`EXPLAIN` on PostgreSQL, `EXPLAIN QUERY PLAN` on SQLite), for tests and benchmarks.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, Subquery, case, distinct, func, select

from needlecast.store.driver import is_sqlite
from needlecast.store.schema import deliveries, events

HANDED = ("sent", "unknown", "failed")  # ledger states of an email the provider may have taken


def _newest_first(query: Select[Any], campaign_id: str) -> Select[Any]:
    """`query` limited to the campaign's rows, newest delivery id first, in the order of the index.

    The campaign is named as a range of one value (`>= id AND <= id`, the same rows as `= id` under the
    column's deterministic collation), and the order is the index's (`campaign_id`, `id`): with `= id`,
    PostgreSQL's planner drops the campaign from the order (a constant) and may walk the whole primary key
    backwards instead, filtering out every other campaign's rows (it did, on a ledger of ten campaigns: 28,500
    rows read for a window of 1,000). Only the campaign's index gives this order, so the walk starts at the
    campaign's newest row and stops at the window."""
    campaign = deliveries.c.campaign_id
    return query.where(campaign >= campaign_id, campaign <= campaign_id).order_by(
        campaign.desc(), deliveries.c.id.desc()
    )


def _handed(campaign_id: str, window: int, floor: int) -> Subquery:
    query = select(deliveries.c.id, deliveries.c.status, deliveries.c.outcome).where(
        deliveries.c.id > floor, deliveries.c.status.in_(HANDED)
    )
    return _newest_first(query, campaign_id).limit(window).subquery()


def _statements(campaign_id: str, window: int, floor: int) -> tuple[Select[Any], Select[Any]]:
    """The window's two reads: its emails and those refused or dropped; its emails with a hard bounce or a
    complaint, by kind (through the events' index of delivery ids)."""
    handed = _handed(campaign_id, window, floor)
    refused = case((handed.c.status == "failed", 1), (handed.c.outcome == "dropped", 1), else_=0)
    counts = select(func.count(), func.coalesce(func.sum(refused), 0)).select_from(handed)
    kinds = (
        select(events.c.kind, func.count(distinct(events.c.delivery_id)))
        .where(events.c.delivery_id.in_(select(handed.c.id)), events.c.kind.in_(("bounced", "complained")))
        .group_by(events.c.kind)
    )
    return counts, kinds


def window_counts(conn: Connection, campaign_id: str, window: int, floor: int = 0) -> tuple[int, int, int, int]:
    """(emails, refused or dropped, hard-bounced, complained of) in the campaign's window."""
    counts, kinds = _statements(campaign_id, window, floor)
    emails, errors = conn.execute(counts).one()
    by_kind: dict[str, int] = dict(conn.execute(kinds).all())
    return int(emails), int(errors), int(by_kind.get("bounced", 0)), int(by_kind.get("complained", 0))


def newest_handed(conn: Connection, campaign_id: str) -> int:
    """The newest delivery id of the campaign handed over (0 when none), read backwards through the index."""
    query = select(deliveries.c.id).where(deliveries.c.status.in_(HANDED))
    newest = conn.execute(_newest_first(query, campaign_id).limit(1)).scalar()
    return int(newest or 0)


def explain_window(
    conn: Connection, campaign_id: str, window: int, floor: int = 0, *, analyze: bool = False
) -> list[str]:
    """The query plans of the window's two reads (see the module contract), one after the other; `analyze`
    (PostgreSQL): run them, with the rows and buffers each step really read."""
    lines: list[str] = []
    for statement in _statements(campaign_id, window, floor):
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        if is_sqlite(conn):
            lines += [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()]
        else:
            explain = "EXPLAIN (ANALYZE, BUFFERS)" if analyze else "EXPLAIN"
            lines += [str(row[0]) for row in conn.exec_driver_sql(f"{explain} {compiled}").all()]
    return lines
