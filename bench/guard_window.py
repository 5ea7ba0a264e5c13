"""Benchmark: the deliverability guard's rolling window on a large ledger, before and after its indexes.

    python bench/guard_window.py --rows 1000000                     # SQLite
    python bench/guard_window.py --rows 1000000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/needlecast_bench

A ledger of `rows` deliveries in 20 campaigns of equal size, enqueued one after another; the measured one
("winter") is the 10th, half of it handed over (sent, with a hard bounce on every 40th and a `delivered`
event on each), half still queued, and every other campaign sent with a `delivered` event per email. The
window (1,000) is read the way the guard read it before migration 0015 (`campaign_id = ?`, newest id first,
without the indexes) and the way it reads it now (`store.guardwindow.window_counts`, with them): the median
of 5 runs of each, the query plans, and whether the figures agree. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine, case, distinct, func, select, text

from needlecast.store.engine import open_store
from needlecast.store.guardwindow import HANDED, explain_window, window_counts
from needlecast.store.schema import deliveries, events

CAMPAIGNS = 20
WINDOW = 1000


def _fill(engine: Engine, rows: int) -> None:
    per = rows // CAMPAIGNS
    postgres = engine.dialect.name == "postgresql"
    series = "generate_series(0, :n - 1) AS g(i)" if postgres else "s"
    recursive = "" if postgres else "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < :n - 1) "
    name = "CASE WHEN i / :per = 9 THEN 'winter' ELSE 'c' || (i / :per) END"
    status = "CASE WHEN i / :per = 9 AND i % :per >= :per / 2 THEN 'queued' ELSE 'sent' END"
    at = "now()" if postgres else "'2026-11-24 12:00:00.000000'"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"{recursive}INSERT INTO deliveries (campaign_id, step_id, contact_id, segment, variant, arm, "
                "status, due_at, claim_token, message_id, error, attempts, created_at, updated_at, outcome, timing, "
                f"request_id) SELECT {name}, 's', i % :per, 'all', 'general', '', {status}, {at}, '', '', '', 1, "
                f"{at}, {at}, '', '', '' FROM {series}"
            ),
            {"n": per * CAMPAIGNS, "per": per},
        )
        kind = "CASE WHEN campaign_id = 'winter' AND contact_id % 40 = 0 THEN 'bounced' ELSE 'delivered' END"
        raw = "'{}'::json" if postgres else "'{}'"
        conn.execute(
            text(
                "INSERT INTO events (provider_event_id, kind, delivery_id, campaign_id, step_id, message_id, "
                f"email_hash, occurred_at, received_at, detail, raw) SELECT 'e' || id, {kind}, id, campaign_id, 's', "
                f"'', '', {at}, {at}, '', {raw} FROM deliveries WHERE status = 'sent'"
            )
        )
        conn.execute(text("ANALYZE"))


def _before(conn: Connection) -> tuple[int, int, int, int]:
    """The guard's window as it read it before migration 0015 (its query then)."""
    handed = (
        select(deliveries.c.id, deliveries.c.status, deliveries.c.outcome)
        .where(deliveries.c.campaign_id == "winter", deliveries.c.status.in_(HANDED), deliveries.c.id > 0)
        .order_by(deliveries.c.id.desc())
        .limit(WINDOW)
        .subquery()
    )
    refused = case((handed.c.status == "failed", 1), (handed.c.outcome == "dropped", 1), else_=0)
    emails, errors = conn.execute(select(func.count(), func.coalesce(func.sum(refused), 0)).select_from(handed)).one()
    kinds = dict(
        conn.execute(
            select(events.c.kind, func.count(distinct(events.c.delivery_id)))
            .where(events.c.delivery_id.in_(select(handed.c.id)), events.c.kind.in_(("bounced", "complained")))
            .group_by(events.c.kind)
        ).all()
    )
    return int(emails), int(errors), int(kinds.get("bounced", 0)), int(kinds.get("complained", 0))


def _timed(engine: Engine, read: Callable[[Connection], tuple[int, int, int, int]]) -> tuple[float, tuple]:
    times, result = [], ()
    with engine.connect() as conn:
        read(conn)  # warm the cache: both runs read from memory
        for _ in range(5):
            start = time.perf_counter()
            result = read(conn)
            times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 2), result


def _plan(engine: Engine, explain: str) -> list[str]:
    with engine.connect() as conn:
        compiled = select(func.count()).select_from(
            select(deliveries.c.id)
            .where(deliveries.c.campaign_id == "winter", deliveries.c.status.in_(HANDED), deliveries.c.id > 0)
            .order_by(deliveries.c.id.desc())
            .limit(WINDOW)
            .subquery()
        )
        sql = str(compiled.compile(conn, compile_kwargs={"literal_binds": True}))
        return [str(row[-1]) for row in conn.exec_driver_sql(f"{explain} {sql}").all()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='guard-bench-')) / 'store.db'}"
    engine = open_store(url)
    postgres = engine.dialect.name == "postgresql"
    explain = "EXPLAIN (ANALYZE, BUFFERS)" if postgres else "EXPLAIN QUERY PLAN"
    _fill(engine, args.rows)
    with engine.begin() as conn:  # before: the ledger without migration 0015's indexes
        conn.execute(text("DROP INDEX ix_deliveries_campaign_window"))
        conn.execute(text("DROP INDEX ix_events_bad"))
        conn.execute(text("ANALYZE"))
    before_ms, before = _timed(engine, _before)
    before_plan = _plan(engine, explain)
    with engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_deliveries_campaign_window ON deliveries (campaign_id, id)"))
        bad = "kind IN ('bounced', 'complained', 'dropped')"
        conn.execute(text(f"CREATE INDEX ix_events_bad ON events (delivery_id) WHERE {bad}"))
        conn.execute(text("ANALYZE"))
    after_ms, after = _timed(engine, lambda conn: window_counts(conn, "winter", WINDOW, 0))
    with engine.connect() as conn:
        after_plan = explain_window(conn, "winter", WINDOW, 0, analyze=postgres)
    result = {
        "database": engine.dialect.name,
        "rows": args.rows,
        "window": WINDOW,
        "before_ms": before_ms,
        "after_ms": after_ms,
        "same_figures": before == after,
        "figures": after,
        "before_plan": before_plan,
        "after_plan": after_plan,
    }
    print(json.dumps(result))
    engine.dispose()


if __name__ == "__main__":
    main()
