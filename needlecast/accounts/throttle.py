"""The log-in throttle: counted and decided in the store before any password is checked.

The rule (the README's "Logging in" says the same):
- Per (account, address): after `refuse_after` attempts within `window`, that address is refused for that
  account until the window ends (429 with `Retry-After`).
- Per address: after `address_refuse_after` attempts within `window`, for any accounts, it is refused too.
- Per account, an attempt from an address that has not logged in to it successfully (within `trust`) is
  slowed, never refused for long: after `slow_after` such attempts each next one waits its turn, the pause
  doubling from `slow_seconds` up to `slow_max_seconds`; a quiet `window` starts the count again. An
  address that has logged in to the account before is not paced at all, so strangers elsewhere can never
  lock the real user out: the real user from their own address always has their own, per-pair budget.

Contract: `admit(conn, keys, now, policy)` counts this attempt and decides, atomically per key (see
`store.logins`): it returns a `Ticket`, or raises `Throttled` (with the seconds to wait) before anything
else happens; the caller runs it in its own transaction, so a refused attempt's counts roll back and are
not counted. `succeeded(conn, ticket, now, policy)` records a successful log-in: the pair is known from now
on and its attempts start again; the address's count takes this attempt back. A failure needs nothing more:
it was counted. Keys are keyed hashes: the table holds no address and no account name.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection

from needlecast.errors import Throttled
from needlecast.store import logins


@dataclass(frozen=True)
class Policy:
    window: timedelta = timedelta(minutes=15)
    refuse_after: int = 10  # attempts per (account, address) within the window
    address_refuse_after: int = 30  # attempts per address, whatever the accounts, within the window
    slow_after: int = 3  # attempts per account from unknown addresses before each is paced
    slow_seconds: float = 1.0  # the first pause; it doubles with each further attempt
    slow_max_seconds: float = 60.0  # the longest pause
    trust: timedelta = timedelta(days=90)  # how long a successful log-in makes its address known


@dataclass(frozen=True)
class Keys:
    account: str
    address: str
    pair: str


@dataclass(frozen=True)
class Ticket:
    keys: Keys
    known: bool  # the address has logged in to this account before: not paced


def key(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}|{value.strip().lower()}".encode(), hashlib.sha256).hexdigest()


def keys_for(secret: bytes, account: str, address: str) -> Keys:
    return Keys(
        key(secret, "account", account),
        key(secret, "address", address),
        key(secret, "pair", f"{account.strip().lower()}|{address}"),
    )


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def admit(conn: Connection, keys: Keys, now: float, policy: Policy) -> Ticket:
    """Count this attempt and let it through, or raise `Throttled` (see the module contract)."""
    window = policy.window.total_seconds()
    pair, pair_since, trusted_at = logins.count(conn, keys.pair, now, window)
    address, address_since, _ = logins.count(conn, keys.address, now, window)
    if pair > policy.refuse_after or address > policy.address_refuse_after:
        since = pair_since if pair > policy.refuse_after else address_since
        wait = max(1.0, since + window - now)
        raise Throttled(
            f"Too many failed log-ins from this network: try again in about {_minutes(wait)}.", retry_after=wait
        )
    known = trusted_at is not None and trusted_at > now - policy.trust.total_seconds()
    if not known:
        turn = logins.take_turn(
            conn,
            keys.account,
            now,
            window,
            policy.slow_after,
            policy.slow_seconds,
            policy.slow_max_seconds,
        )
        if turn is None:
            wait = max(1.0, logins.next_turn(conn, keys.account) - now)
            raise Throttled(
                "This account has had many failed log-ins, so each try from a new place waits a little: "
                f"try again in {math.ceil(wait)} seconds.",
                retry_after=wait,
            )
    return Ticket(keys, known)


def succeeded(conn: Connection, ticket: Ticket, now: float, policy: Policy) -> None:
    """A successful log-in: the pair becomes known and starts again; the address takes the attempt back;
    rows that hold nothing any more are deleted."""
    logins.trust(conn, ticket.keys.pair, now)
    logins.uncount(conn, ticket.keys.address)
    logins.forget(conn, now, policy.window.total_seconds(), policy.trust.total_seconds())
