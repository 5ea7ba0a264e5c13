"""Who is calling, resolved in one place for the web app's faces (the API's keys here; the console's
sessions in `web.console.auth`), and the `Actor` every action takes.

Contract: `api_key_actor(engine, key)` is the actor of a live API key (its name and scopes), or
`AuthenticationFailed` for a missing, unknown or revoked key (one answer for all three).
"""

from __future__ import annotations

from sqlalchemy import Engine

from needlecast.accounts import apikeys
from needlecast.accounts.roles import Actor as Actor  # what the faces hand every action
from needlecast.accounts.roles import require as require  # a read's permission check, as the actions do theirs


def api_key_actor(engine: Engine, key: str) -> Actor:
    """The actor of the API key `key` (see the module contract)."""
    with engine.begin() as conn:  # a write: the key's last use is noted (at most once a minute)
        return apikeys.resolve(conn, key)
