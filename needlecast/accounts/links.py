"""One-time account links: an invitation to set a first password, and a password reset.

Contract: `make(conn, secret, user_id, purpose, now)` returns a token for an active account (`purpose` is
"invite", valid 7 days, or "reset", valid 24 hours); it is signed (HMAC-SHA256 with the console's secret)
over the account, the purpose, the expiry and the account's current password hash, so it is spent the
moment the password changes: by this link, another link, an admin or the person. Nothing is stored.
`holder(conn, secret, token, now)` is the account the token opens (`TokenInvalid` for a forged, expired,
spent or disabled one: one message whatever was wrong). `redeem(conn, secret, token, password, now)` sets
the password (at least `users.MIN_PASSWORD` characters) and ends the account's sessions; it returns the
account's actor and the link's purpose. Nothing here audits: `actions.invites` writes the entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, update

from needlecast.accounts import users
from needlecast.accounts.roles import Actor
from needlecast.errors import InvalidRequest, NotFound, TokenInvalid
from needlecast.store.helpers import utcnow
from needlecast.store.schema import sessions
from needlecast.store.schema import users as users_table

LIFETIME = {"invite": timedelta(days=7), "reset": timedelta(hours=24)}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signature(secret: bytes, payload: str, password_hash: str) -> str:
    digest = hmac.new(secret, f"account-link|{payload}|{password_hash}".encode(), hashlib.sha256).digest()
    return _b64(digest)


def make(conn: Connection, secret: bytes, user_id: int, purpose: str, now: datetime) -> str:
    """A one-time link's token for the active account `user_id` (see the module contract)."""
    user = users.get_user(conn, user_id)
    if user["disabled"]:
        raise InvalidRequest("this account is disabled: enable it first")
    expires = int((now + LIFETIME[purpose]).timestamp())
    payload = _b64(f"{user_id}.{purpose}.{expires}".encode())
    return f"{payload}.{_signature(secret, payload, user['password_hash'])}"


def holder(conn: Connection, secret: bytes, token: str, now: datetime) -> dict[str, Any]:
    """The account (id, email, role, purpose) this token opens; `TokenInvalid` otherwise."""
    spent = TokenInvalid("this link has expired or has been used: ask your administrator for a new one")
    payload, _, signature = token.partition(".")
    try:
        user_id, purpose, expires = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode().split(".")
        user = users.get_user(conn, int(user_id))
    except (ValueError, UnicodeDecodeError, NotFound):
        raise spent from None
    good = _signature(secret, payload, user["password_hash"])
    if not hmac.compare_digest(signature, good) or purpose not in LIFETIME or user["disabled"]:
        raise spent
    if now.timestamp() > int(expires):
        raise spent
    return {"id": int(user["id"]), "email": user["email"], "role": user["role"], "purpose": purpose}


def redeem(conn: Connection, secret: bytes, token: str, password: str, now: datetime) -> tuple[Actor, str]:
    """Set the account's password through its link (see the module contract)."""
    account = holder(conn, secret, token, now)
    if len(password) < users.MIN_PASSWORD:
        raise InvalidRequest(f"a password needs at least {users.MIN_PASSWORD} characters")
    conn.execute(
        update(users_table)
        .where(users_table.c.id == account["id"])
        .values(password_hash=users.password_hasher().hash(password), updated_at=utcnow())
    )
    conn.execute(sessions.delete().where(sessions.c.user_id == account["id"]))
    return Actor("user", account["email"], id=account["id"], role=account["role"]), account["purpose"]
