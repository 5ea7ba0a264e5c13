"""Who is calling, resolved in one place for the web app's faces, and the `Actor` every action takes.

Contract:
- `api_key_actor(engine, key)` is the actor of a live API key (its name and scopes), or `AuthenticationFailed`
  for a missing, unknown or revoked key (one answer for all three).
- `console_session(engine, session_id, idle)` is the console session behind a cookie (`Session`: the user's
  actor and the session's CSRF token), or None for no, an expired or an idle one.
- `log_in(engine, secret, settings, email, password, address)` starts a console session (the log-in
  throttle of `[console]`, the password check and the audit entry: the action `actions.sessions`) and returns
  its id;
  `log_out(engine, actor, session_id)` ends it, audited.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine

from needlecast.accounts import apikeys, sessions, throttle
from needlecast.accounts.roles import Actor as Actor  # what the faces hand every action
from needlecast.accounts.roles import require as require  # a read's permission check, as the actions do theirs
from needlecast.accounts.sessions import Session as Session  # a console session: its actor and CSRF token
from needlecast.actions import sessions as session_actions
from needlecast.config import ConsoleSettings
from needlecast.store.helpers import utcnow


def api_key_actor(engine: Engine, key: str) -> Actor:
    """The actor of the API key `key` (see the module contract)."""
    with engine.begin() as conn:  # a write: the key's last use is noted (at most once a minute)
        return apikeys.resolve(conn, key)


def console_session(engine: Engine, session_id: str, idle: timedelta) -> Session | None:
    """The live session with this id (see the module contract); its last use is noted."""
    if not session_id:
        return None
    with engine.begin() as conn:
        return sessions.resolve(conn, session_id, utcnow(), idle)


def login_policy(settings: ConsoleSettings) -> throttle.Policy:
    """The log-in throttle of `[console]`: when attempts are refused, and when they are paced."""
    return throttle.Policy(
        refuse_after=settings.login_refuse_after,
        address_refuse_after=settings.login_address_refuse_after,
        slow_after=settings.login_slow_after,
        slow_seconds=settings.login_slow_seconds,
        slow_max_seconds=settings.login_slow_max_seconds,
    )


def log_in(engine: Engine, secret: bytes, settings: ConsoleSettings, email: str, password: str, address: str) -> str:
    """A new console session's id for a right address and password (see the module contract);
    `AuthenticationFailed` (the same for a wrong address and a wrong password) or `Throttled`."""
    longest = timedelta(hours=settings.session_hours)
    policy = login_policy(settings)
    _actor, session_id = session_actions.log_in(engine, secret, policy, email, password, address, longest)
    return session_id


def log_out(engine: Engine, actor: Actor, session_id: str) -> None:
    """End the session, audited as `session.logged_out`."""
    session_actions.log_out(engine, actor, session_id)
