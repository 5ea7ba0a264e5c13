"""API keys: made with scopes, shown once, stored as a hash, revoked at will.

Contract: `create(conn, name, scopes)` returns the key's id and the key (`nc_` + 40 random characters) once; the
database keeps its SHA-256 and its first characters (to recognise it in a list). `resolve(conn, key)` gives
the key's actor (its name and scopes) or raises `AuthenticationFailed`; a revoked key fails.

This is the storage below `actions.keys`: no function here checks a permission or writes an audit entry
(the action does both, in the same transaction as the change).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import Connection, insert, select, update

from needlecast.accounts.roles import SCOPES, Actor
from needlecast.errors import AuthenticationFailed, InvalidRequest, NotFound
from needlecast.store.helpers import MAX_ID, utcnow
from needlecast.store.schema import api_keys

PREFIX = "nc_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str | list[str]) -> list[str]:
    wanted = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise InvalidRequest(
            f"unknown or missing scope(s) {', '.join(unknown) or '(none)'}; use some of: {', '.join(SCOPES)}"
        )
    return sorted(set(wanted))


def create(conn: Connection, name: str, scopes: list[str]) -> tuple[int, str]:
    """A new key named `name` (1 to 100 characters, else `InvalidRequest`) with `scopes`: its id and the key
    itself (shown this once; only its hash is stored)."""
    if not name.strip() or len(name) > 100:
        raise InvalidRequest("give the key a name of 1 to 100 characters (who or what uses it)")
    key = PREFIX + secrets.token_urlsafe(30)
    key_id = conn.execute(
        insert(api_keys).returning(api_keys.c.id),
        {
            "name": name.strip(),
            "prefix": key[:10],
            "key_hash": _hash(key),
            "scopes": ",".join(parse_scopes(scopes)),
            "created_at": utcnow(),
            "last_used_at": None,
            "revoked_at": None,
        },
    ).scalar_one()
    return int(key_id), key


def list_keys(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            api_keys.c.id,
            api_keys.c.name,
            api_keys.c.prefix,
            api_keys.c.scopes,
            api_keys.c.created_at,
            api_keys.c.last_used_at,
            api_keys.c.revoked_at,
        ).order_by(api_keys.c.id)
    ).mappings()
    return [dict(row) for row in rows]


def revoke(conn: Connection, key_id: int) -> None:
    """Revoke the key; `NotFound` for a key there is not or one already revoked."""
    if not 1 <= key_id <= MAX_ID:  # a larger id would be refused by the database with an error, not a miss
        raise NotFound(f"no active API key #{key_id}")
    changed = conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=utcnow())
    ).rowcount
    if not changed:
        raise NotFound(f"no active API key #{key_id}")


def resolve(conn: Connection, key: str) -> Actor:
    failure = AuthenticationFailed("the API key is missing, unknown or revoked")
    if not key.startswith(PREFIX) or len(key) > 100:
        raise failure
    row = conn.execute(select(api_keys).where(api_keys.c.key_hash == _hash(key))).mappings().first()
    if row is None or not hmac.compare_digest(row["key_hash"], _hash(key)) or row["revoked_at"] is not None:
        raise failure
    now = utcnow()
    if row["last_used_at"] is None or (now - row["last_used_at"]).total_seconds() > 60:
        conn.execute(update(api_keys).where(api_keys.c.id == row["id"]).values(last_used_at=now))
    return Actor("api_key", row["name"], id=int(row["id"]), scopes=frozenset(row["scopes"].split(",")))
