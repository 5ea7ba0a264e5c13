"""Console session actions: log in and log out, each with its audit entry.

Log-ins are the one kind of action taken before there is an actor, so there is no permission to check: the
password is the check. The audit entries are written here and only here (`accounts.login` below is storage).

Contract: `log_in(engine, secret, policy, email, password, address, longest)` first counts the attempt and
decides (`accounts.login.admit`, its own transaction; `Throttled` before any password is checked), then checks
the password and, in one transaction, records the success with the throttle, starts a session and audits
`session.logged_in` (detail: `source`, a short keyed hash of the network address, and `known`, whether the
address logged in to the account before); it returns the actor and the new session's id. A wrong address or
password raises `AuthenticationFailed` after auditing `session.login_failed`: its target is the account
(`user:#ID`) when the typed address is one, else `user:unknown`, and its actor is the anonymous log-in form
(`LOGIN_FORM`), so the audit log never holds an address a stranger typed.
`log_out(engine, actor, session_id)` ends the session and audits `session.logged_out`.
Refused (throttled) attempts are not audited: they are counted by the throttle, and a flood of them would bury
the entries that matter.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from needlecast.accounts import audit, login, throttle
from needlecast.accounts.roles import Actor
from needlecast.errors import AuthenticationFailed

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
    """The actor and a new session's id for a right address and password (see the module contract)."""
    with engine.begin() as conn:  # its own transaction: the attempt counts even when the check fails
        attempt = login.admit(conn, secret, policy, email, address)
    try:
        with engine.begin() as conn:
            actor, session_id = login.start(conn, attempt, policy, email, password, longest)
            known = attempt.ticket.known
            audit.record(conn, actor, "session.logged_in", f"user:#{actor.id}", source=attempt.source, known=known)
            return actor, session_id
    except AuthenticationFailed:
        with engine.begin() as conn:
            target = login.target_of(conn, email)
            audit.record(conn, LOGIN_FORM, "session.login_failed", target, source=attempt.source)
        raise


def log_out(engine: Engine, actor: Actor, session_id: str) -> None:
    """End the session `session_id`, audited as `session.logged_out`."""
    with engine.begin() as conn:
        login.end(conn, session_id)
        audit.record(conn, actor, "session.logged_out", f"user:#{actor.id}")
