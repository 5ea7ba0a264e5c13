"""Read models of accounts and their trail: the console accounts, the API keys, the audit log.

Each is a list of plain rows in the order every face shows them (accounts and keys by id, the audit log
newest first); none carries a password hash or a key (only the key's first characters).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from needlecast.accounts import apikeys, audit, users


def account_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every console account: id, email, display_name, role, disabled, created_at, last_login_at (UTC)."""
    with engine.connect() as conn:
        return users.list_users(conn)


def user_id_for(engine: Engine, email: str) -> int:
    """The id of the console account with `email` (`NotFound` naming the address otherwise)."""
    with engine.connect() as conn:
        return int(users.find_user(conn, email)["id"])


def key_rows(engine: Engine) -> list[dict[str, Any]]:
    """Every API key: id, name, prefix (its first characters), scopes, created_at, last_used_at, revoked_at."""
    with engine.connect() as conn:
        return apikeys.list_keys(conn)


def audit_rows(engine: Engine, limit: int, action: str | None = None) -> list[dict[str, Any]]:
    """The newest `limit` (at least 1) audit entries, optionally only actions starting with `action`, each with
    `who` (`<kind>:<name>`, e.g. `cli:ana`) beside its raw fields and its detail as a dict."""
    with engine.connect() as conn:
        rows = audit.entries(conn, max(1, limit), action=action)
    return [{**row, "who": f"{row['actor_kind']}:{row['actor']}"} for row in rows]


def link_holder(engine: Engine, secret: bytes, token: str) -> dict[str, Any]:
    """The account a one-time link opens (id, email, role, purpose: "invite" or "reset"), now;
    `TokenInvalid` for a spent, expired or forged link (`accounts.links`)."""
    from datetime import UTC, datetime

    from needlecast.accounts import links

    with engine.connect() as conn:
        return links.holder(conn, secret, token, datetime.now(UTC))
