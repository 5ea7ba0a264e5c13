"""The log-in throttle's counters (`login_throttle`): each decision is one atomic statement.

Rows are keyed by keyed hashes (of an account, a network address, or the pair), so the table holds no
address and no account name. Times are epoch seconds from the caller's clock.

Contract:
- `count(conn, key, now, window)` counts one attempt in the key's fixed window (a new window starts when the
  last one has ended) and returns the attempts in the window with this one, the window's start and the
  key's `trusted_at`. It is one INSERT ... ON CONFLICT DO UPDATE ... RETURNING, which the database
  serialises per row (a row lock on PostgreSQL, the write lock on SQLite): N concurrent attempts are given
  the counts 1..N, each exactly once, so a limit holds however many arrive at once.
- `take_turn(conn, key, now, quiet, free, first, most)` is the account's pace: it books this attempt when the
  key's `next_at` has come (one UPDATE ... WHERE next_at <= now RETURNING: of concurrent attempts exactly
  one gets each turn) and returns the pause now set before the next turn, or None when the turn has not
  come (then nothing is booked, so refused attempts never push the next turn further away). The first
  `free` attempts pause 0; each further one doubles the pause, from `first` up to `most`. After `quiet`
  seconds without an attempt the count starts again.
- `next_turn(conn, key)`: the moment of the key's next turn (0 for an unknown key).
- `trust(conn, key, now)`: a successful log-in for a pair: its attempts start again and it is known.
- `uncount(conn, key)`: takes back one attempt (a success is not a failure).
- `forget(conn, now, window, trusted)`: deletes rows that no longer hold anything: the window ended, the
  pace caught up, and trusted long ago (or never).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from needlecast.store.driver import is_sqlite


def count(conn: Connection, key: str, now: float, window: float) -> tuple[int, float, float | None]:
    ended = "login_throttle.since <= :now - :window"
    row = conn.execute(
        text(
            "INSERT INTO login_throttle (key_hash, attempts, since, next_at, pause, trusted_at) "
            "VALUES (:key, 1, :now, 0, 0, NULL) ON CONFLICT (key_hash) DO UPDATE SET "
            f"attempts = CASE WHEN {ended} THEN 1 ELSE login_throttle.attempts + 1 END, "
            f"since = CASE WHEN {ended} THEN :now ELSE login_throttle.since END "
            "RETURNING attempts, since, trusted_at"
        ),
        {"key": key, "now": now, "window": window},
    ).one()
    return int(row[0]), float(row[1]), None if row[2] is None else float(row[2])


def take_turn(
    conn: Connection, key: str, now: float, quiet: float, free: int, first: float, most: float
) -> float | None:
    least, greatest = ("min", "max") if is_sqlite(conn) else ("least", "greatest")
    conn.execute(
        text(
            "INSERT INTO login_throttle (key_hash, attempts, since, next_at, pause, trusted_at) "
            "VALUES (:key, 0, :now, 0, 0, NULL) ON CONFLICT (key_hash) DO NOTHING"
        ),
        {"key": key, "now": now},
    )
    # SET reads the row's old values on both databases, so the new count is spelt out where it is used.
    # `since` is the last attempt here: a pace is forgotten only after `quiet` seconds without one.
    fresh = "since <= :now - :quiet"
    attempts = f"(CASE WHEN {fresh} THEN 1 ELSE attempts + 1 END)"
    pause = (
        f"(CASE WHEN {attempts} <= :free THEN 0 "
        f"ELSE {least}(:most, {greatest}(:first, (CASE WHEN {fresh} THEN 0 ELSE pause END) * 2)) END)"
    )
    row = conn.execute(
        text(
            f"UPDATE login_throttle SET attempts = {attempts}, pause = {pause}, next_at = :now + {pause}, "
            "since = :now WHERE key_hash = :key AND next_at <= :now RETURNING pause"
        ),
        {"key": key, "now": now, "quiet": quiet, "free": free, "first": first, "most": most},
    ).first()
    return None if row is None else float(row[0])


def next_turn(conn: Connection, key: str) -> float:
    found = conn.execute(text("SELECT next_at FROM login_throttle WHERE key_hash = :key"), {"key": key}).scalar()
    return float(found or 0)


def trust(conn: Connection, key: str, now: float) -> None:
    conn.execute(
        text("UPDATE login_throttle SET attempts = 0, trusted_at = :now WHERE key_hash = :key"),
        {"key": key, "now": now},
    )


def uncount(conn: Connection, key: str) -> None:
    conn.execute(
        text("UPDATE login_throttle SET attempts = attempts - 1 WHERE key_hash = :key AND attempts > 0"),
        {"key": key},
    )


def forget(conn: Connection, now: float, window: float, trusted: float) -> int:
    result = conn.execute(
        text(
            "DELETE FROM login_throttle WHERE since <= :now - :window AND next_at <= :now "
            "AND (trusted_at IS NULL OR trusted_at <= :now - :trusted)"
        ),
        {"now": now, "window": window, "trusted": trusted},
    )
    return int(result.rowcount or 0)
