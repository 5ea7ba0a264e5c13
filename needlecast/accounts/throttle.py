"""The log-in throttle: repeated failures for an account or from an address are slowed, then refused.

Contract: `check(conn, keys, now, policy)` raises `Throttled` (with the seconds to wait) when any of `keys`
(the keyed hashes of the account name and of the network address) has `refuse_after` failures within
`window`, and otherwise returns how long this attempt should be slowed (`slow_seconds` for each failure
beyond `slow_after`, at most 5 s). `note(conn, keys, ok, now)` records an attempt; a success clears the
account's failures. Keys are hashes, so the table holds no address and no account name.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select

from needlecast.errors import Throttled
from needlecast.store.schema import login_attempts


@dataclass(frozen=True)
class Policy:
    window: timedelta = timedelta(minutes=15)
    slow_after: int = 3
    slow_seconds: float = 1.0
    refuse_after: int = 10


def key(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}|{value.strip().lower()}".encode(), hashlib.sha256).hexdigest()


def check(conn: Connection, keys: list[str], now: datetime, policy: Policy) -> float:
    worst = 0
    oldest: datetime | None = None
    for key_hash in keys:
        count, first = conn.execute(
            select(func.count(), func.min(login_attempts.c.at)).where(
                login_attempts.c.key_hash == key_hash,
                login_attempts.c.ok.is_(False),
                login_attempts.c.at > now - policy.window,
            )
        ).one()
        if int(count) > worst:
            worst, oldest = int(count), first
    if worst >= policy.refuse_after:
        wait = ((oldest or now) + policy.window - now).total_seconds()
        minutes = max(1, round(wait / 60))
        raise Throttled(
            f"too many failed log-ins for this account or from this address: try again in about {minutes} minute(s)",
            retry_after=max(1.0, wait),
        )
    return min(5.0, max(0, worst - policy.slow_after + 1) * policy.slow_seconds)


def note(conn: Connection, keys: list[str], ok: bool, now: datetime) -> None:
    conn.execute(insert(login_attempts), [{"key_hash": k, "ok": ok, "at": now} for k in keys])
    if ok:
        conn.execute(delete(login_attempts).where(login_attempts.c.key_hash == keys[0], login_attempts.c.ok.is_(False)))
