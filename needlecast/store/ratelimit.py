"""Rate limits for a whole fleet of senders, kept in the database (`rate_limits`).

One row per limit holds the next free moment for a request and for an email (database clock, epoch
seconds). `acquire(emails)` books the next slot with one UPDATE ... RETURNING, which the database serialises
(a row lock on PostgreSQL, the write lock on SQLite), then sleeps until the slot. Booked slots are spaced by
`1 / requests_per_second` and by `emails * 3600 / emails_per_hour`, whichever machine books them, so the
fleet's rate holds the configured limit.

Contract: the same as `delivery.base.RateLimiter` (0 disables a limit; with both at 0 no database call is
made); `on_wait(seconds)`, given when it is built, hears of every wait (metrics).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, Engine

from needlecast.store import fleet
from needlecast.store.driver import is_sqlite, marker
from needlecast.store.turns import write_turn


class FleetRateLimiter:
    def __init__(
        self,
        engine: Engine,
        requests_per_second: float,
        emails_per_hour: int,
        *,
        name: str = "provider",
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.name = name
        self.interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self.per_email = 3600.0 / emails_per_hour if emails_per_hour > 0 else 0.0
        self._sleep = sleep
        self.on_wait = on_wait  # metrics: called with each wait's seconds

    def acquire(self, emails: int) -> None:
        if not self.interval and not self.per_email:
            return
        with write_turn(self.engine), self.engine.begin() as conn:
            now = fleet.clock(conn)
            start = self._book(conn, now, emails)
            if start is None:  # the limit's first use in this store: make its row (once, whoever is first)
                m = marker(conn)
                insert = "INSERT OR IGNORE INTO" if is_sqlite(conn) else "INSERT INTO"
                conflict = "" if is_sqlite(conn) else " ON CONFLICT (name) DO NOTHING"
                conn.exec_driver_sql(
                    f"{insert} rate_limits (name, next_request, next_email) VALUES ({m}, 0, 0){conflict}", (self.name,)
                )
                start = self._book(conn, now, emails)
                assert start is not None  # the row exists now
        wait = float(start) - now
        if wait > 0:
            if self.on_wait is not None:
                self.on_wait(wait)
            self._sleep(wait)

    def _book(self, conn: Connection, now: float, emails: int) -> float | None:
        """Book the next slot; its start (None when the limit has no row yet)."""
        m = marker(conn)
        top = "max" if is_sqlite(conn) else "greatest"
        # SET reads the row's old values on both databases: the slot starts at the later of now and the
        # two next free moments; the request after it may start one interval later.
        row = conn.exec_driver_sql(
            f"UPDATE rate_limits SET next_request = {top}({m}, next_request, next_email) + {m}, "
            f"next_email = {top}(next_email, {m}) + {m} WHERE name = {m} RETURNING next_request - {m}",
            (now, self.interval, now, emails * self.per_email, self.name, self.interval),
        ).first()
        return None if row is None else float(row[0])
