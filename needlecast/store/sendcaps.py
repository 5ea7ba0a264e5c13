"""Counted caps for a whole fleet of senders, kept in the fleet rate limit's table (`rate_limits`).

The warm-up (`campaign.send.warmup`) caps the emails of a day and of an hour, whichever machine sends them.
Each window is a row of `rate_limits` named after it (`warmup:2027-01-10`, `warmup:2027-01-10T09`), whose
`next_email` column holds the emails booked in it so far and `next_request` the count before the last
booking (so that one UPDATE ... RETURNING says how many it granted). A window's row is made the first time
it is booked. The UPDATE is serialised by the database (a row lock on PostgreSQL, the write lock on SQLite),
so the bookings of all senders add up to at most the cap.

Contract: `book(conn, windows, wanted)` books up to `wanted` emails in every window at once, in the caller's
transaction, and returns how many it booked (at most the least room of any window; 0 when one is full) and
the room each window has left after it. Nothing is booked twice: what a narrower window refused is given
back to the wider ones before the transaction ends. `booked(conn, names)` is what each window holds so far
(0 for a window never booked): a deferred email looks ahead for a window with room.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from needlecast.store.driver import is_sqlite, marker


def _ensure(conn: Connection, name: str) -> None:
    m = marker(conn)
    insert = "INSERT OR IGNORE INTO" if is_sqlite(conn) else "INSERT INTO"
    conflict = "" if is_sqlite(conn) else " ON CONFLICT (name) DO NOTHING"
    conn.exec_driver_sql(f"{insert} rate_limits (name, next_request, next_email) VALUES ({m}, 0, 0){conflict}", (name,))


def _take(conn: Connection, name: str, wanted: int, cap: int) -> tuple[int, int]:
    """Book up to `wanted` in the window `name` of `cap`: (granted, room left)."""
    m = marker(conn)
    low, high = ("min", "max") if is_sqlite(conn) else ("least", "greatest")
    # SET reads the row's old values on both databases: next_request keeps the count before this booking.
    row = conn.exec_driver_sql(
        f"UPDATE rate_limits SET next_request = next_email, "
        f"next_email = {high}(next_email, {low}(next_email + {m}, {m})) "
        f"WHERE name = {m} RETURNING next_email - next_request, next_email",
        (wanted, cap, name),
    ).one()
    return int(row[0]), max(0, cap - int(row[1]))


def book(conn: Connection, windows: Sequence[tuple[str, int]], wanted: int) -> tuple[int, list[int]]:
    """Book up to `wanted` emails in every window (name, cap); (booked, room left in each window)."""
    granted = max(0, wanted)
    taken: list[tuple[str, int]] = []
    for name, cap in windows:
        _ensure(conn, name)
        got, _ = _take(conn, name, granted, cap)
        taken.append((name, got))
        granted = min(granted, got)
    m = marker(conn)
    room = []
    for (name, got), (_, cap) in zip(taken, windows, strict=True):
        if got > granted:  # a narrower window refused part of it: give the difference back
            conn.exec_driver_sql(
                f"UPDATE rate_limits SET next_email = next_email - {m} WHERE name = {m}", (got - granted, name)
            )
        used = conn.exec_driver_sql(f"SELECT next_email FROM rate_limits WHERE name = {m}", (name,)).scalar_one()
        room.append(max(0, cap - int(used)))
    return granted, room


def booked(conn: Connection, names: Sequence[str]) -> dict[str, int]:
    """The emails booked so far in each named window (0 for one never booked)."""
    if not names:
        return {}
    m = marker(conn)
    listed = ", ".join([m] * len(names))
    rows = conn.exec_driver_sql(
        f"SELECT name, next_email FROM rate_limits WHERE name IN ({listed})", tuple(names)
    ).all()
    held = {str(name): int(used) for name, used in rows}
    return {name: held.get(name, 0) for name in names}
