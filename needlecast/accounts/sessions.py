"""Server-side console sessions: an opaque random id in the cookie, only its SHA-256 in the database.

Contract: `start(conn, actor, now, idle, longest)` makes a session and returns (id, csrf token); the id goes
into an HttpOnly, SameSite=Lax cookie (Secure over HTTPS) and is never stored as it is. `resolve(conn, id,
now, idle)` gives the session's actor and CSRF token while the session is alive (seen within `idle`, younger
than its absolute expiry, its account active) and renews its idle timer; otherwise None (and an expired one
is deleted). `end(conn, id)` logs out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select, update

from needlecast.accounts.roles import Actor
from needlecast.accounts.users import actor_for
from needlecast.store.schema import sessions


@dataclass(frozen=True)
class Session:
    actor: Actor
    csrf: str


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start(conn: Connection, actor: Actor, now: datetime, longest: timedelta) -> tuple[str, str]:
    assert actor.kind == "user" and actor.id is not None
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    conn.execute(
        insert(sessions),
        {
            "id_hash": _hash(session_id),
            "user_id": actor.id,
            "csrf": csrf,
            "created_at": now,
            "last_seen_at": now,
            "expires_at": now + longest,
        },
    )
    return session_id, csrf


def resolve(conn: Connection, session_id: str, now: datetime, idle: timedelta) -> Session | None:
    if not session_id or len(session_id) > 100:
        return None
    key = _hash(session_id)
    row = conn.execute(select(sessions).where(sessions.c.id_hash == key)).mappings().first()
    if row is None:
        return None
    if row["expires_at"] <= now or row["last_seen_at"] + idle <= now:
        conn.execute(delete(sessions).where(sessions.c.id_hash == key))
        return None
    actor = actor_for(conn, int(row["user_id"]))
    if actor is None:
        conn.execute(delete(sessions).where(sessions.c.id_hash == key))
        return None
    if now - row["last_seen_at"] > timedelta(seconds=30):  # renew the idle timer, not on every request
        conn.execute(update(sessions).where(sessions.c.id_hash == key).values(last_seen_at=now))
    return Session(actor, row["csrf"])


def end(conn: Connection, session_id: str) -> None:
    conn.execute(delete(sessions).where(sessions.c.id_hash == _hash(session_id)))
