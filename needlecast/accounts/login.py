"""Logging in and out of the console: the throttle, the password check, the session and the audit entry.

Contract: `log_in(engine, secret, policy, email, password, address, longest)` first counts the attempt and
decides (`throttle.admit`, its own transaction; `Throttled` before any password is checked), then checks
the password (`users.authenticate`) and, in one transaction, records the success with the throttle, starts
a session and audits `session.logged_in`; it returns the actor and the new session's id. A wrong address
or password raises `AuthenticationFailed` after auditing `session.login_failed`: its target is the account
(`user:#ID`) when the typed address is one, else `user:unknown`, and its actor is the anonymous log-in form,
so the audit log never holds an address a stranger typed. `source` in the detail is a short keyed hash of
the network address (the same address gives the same value; the address itself is never stored).
`log_out(engine, actor, session_id)` ends the session and audits `session.logged_out`.
Refused (throttled) attempts are not audited: they are counted by the throttle, and a flood of them would
bury the entries that matter.
"""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import Engine

from needlecast.accounts import audit, sessions, throttle
from needlecast.accounts.roles import Actor
from needlecast.accounts.users import account_id, authenticate
from needlecast.errors import AuthenticationFailed
from needlecast.store.helpers import utcnow

LOGIN_FORM = Actor("anonymous", "log-in form")


def log_in(
    engine: Engine,
    secret: bytes,
    policy: throttle.Policy,
    email: str,
    password: str,
    address: str,
    longest: timedelta,
) -> tuple[Actor, str]:
    keys = throttle.keys_for(secret, email, address)
    with engine.begin() as conn:
        ticket = throttle.admit(conn, keys, time.time(), policy)
    source = keys.address[:12]
    try:
        with engine.begin() as conn:
            actor = authenticate(conn, email, password)
            throttle.succeeded(conn, ticket, time.time(), policy)
            session_id, _csrf = sessions.start(conn, actor, utcnow(), longest)
            audit.record(conn, actor, "session.logged_in", f"user:#{actor.id}", source=source, known=ticket.known)
            return actor, session_id
    except AuthenticationFailed:
        with engine.begin() as conn:
            found = account_id(conn, email)
            target = f"user:#{found}" if found is not None else "user:unknown"
            audit.record(conn, LOGIN_FORM, "session.login_failed", target, source=source)
        raise


def log_out(engine: Engine, actor: Actor, session_id: str) -> None:
    with engine.begin() as conn:
        sessions.end(conn, session_id)
        audit.record(conn, actor, "session.logged_out", f"user:#{actor.id}")
