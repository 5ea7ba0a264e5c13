"""API-key actions: create a key (shown once) and revoke one.

See `needlecast.actions` for the contract every action keeps. Both need `apikeys.manage` (an admin, or the
command line) and write their audit entry (`apikey.created` with the key's name and scopes, never the key;
`apikey.revoked`), each naming `apikey:#<id>`, in the same transaction as the change. The check and the entry
are made here and only here: `accounts.apikeys` below is storage.
"""

from __future__ import annotations

from sqlalchemy import Engine

from needlecast.accounts import apikeys, audit
from needlecast.accounts.roles import SCOPES, Actor, require

__all__ = ["SCOPES", "create_key", "revoke_key"]


def create_key(engine: Engine, actor: Actor, name: str, scopes: str | list[str]) -> str:
    """A new API key with `scopes` (comma-separated text or a list, each from `accounts.roles.SCOPES`);
    returns the key itself, which is shown this once (only its hash is stored). `InvalidRequest` for an
    unknown or missing scope or a name not of 1 to 100 characters, and nothing is written."""
    require(actor, "apikeys.manage")
    chosen = apikeys.parse_scopes(scopes)
    with engine.begin() as conn:
        key_id, key = apikeys.create(conn, name, chosen)
        audit.record(conn, actor, "apikey.created", f"apikey:#{key_id}", name=name.strip(), scopes=chosen)
    return key


def revoke_key(engine: Engine, actor: Actor, key_id: int) -> None:
    """Revoke an API key: it stops working at once. `NotFound` for a key there is not or one already revoked."""
    require(actor, "apikeys.manage")
    with engine.begin() as conn:
        apikeys.revoke(conn, key_id)
        audit.record(conn, actor, "apikey.revoked", f"apikey:#{key_id}")
