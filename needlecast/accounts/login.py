"""Logging in and out of the console, the storage half: the throttle's count, the password check and the
session. Neither checks a permission nor audits: `actions.sessions` writes the log-in and log-out audit
entries, in the same transactions as these calls.

Contract:
- `admit(conn, secret, policy, email, address)` counts the attempt with the throttle (`throttle.admit`) and
  returns the `Attempt` (its keys and throttle ticket), or raises `Throttled` before any password is checked.
- `start(conn, attempt, policy, email, password, longest)` checks the password (`users.authenticate`: the same
  `AuthenticationFailed` for a wrong address and a wrong password), records the success with the throttle and
  starts a session; returns the actor and the new session's id.
- `target_of(conn, email)` is the audit target a failed attempt names: the account (`user:#ID`) when the typed
  address is one, else `user:unknown`, so the audit log never holds an address a stranger typed.
- `end(conn, session_id)` ends the session.
`Attempt.source` is a short keyed hash of the network address (the same address gives the same value; the
address itself is never stored).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection

from needlecast.accounts import sessions, throttle
from needlecast.accounts.roles import Actor
from needlecast.accounts.users import account_id, authenticate
from needlecast.store.helpers import utcnow


@dataclass(frozen=True)
class Attempt:
    """One admitted log-in attempt: the throttle's keys and ticket."""

    keys: throttle.Keys
    ticket: throttle.Ticket

    @property
    def source(self) -> str:
        """The network address as the audit log names it: a short keyed hash."""
        return self.keys.address[:12]


def admit(conn: Connection, secret: bytes, policy: throttle.Policy, email: str, address: str) -> Attempt:
    keys = throttle.keys_for(secret, email, address)
    return Attempt(keys, throttle.admit(conn, keys, time.time(), policy))


def start(
    conn: Connection,
    attempt: Attempt,
    policy: throttle.Policy,
    email: str,
    password: str,
    longest: timedelta,
) -> tuple[Actor, str]:
    actor = authenticate(conn, email, password)
    throttle.succeeded(conn, attempt.ticket, time.time(), policy)
    session_id, _csrf = sessions.start(conn, actor, utcnow(), longest)
    return actor, session_id


def target_of(conn: Connection, email: str) -> str:
    found = account_id(conn, email)
    return f"user:#{found}" if found is not None else "user:unknown"


def end(conn: Connection, session_id: str) -> None:
    sessions.end(conn, session_id)
