"""Account-link actions: invite a person to the console, or send an account a password reset, each by a
one-time link (`accounts.links`); and set a password through such a link.

See `needlecast.actions` for the contract every action keeps. `invite_user` and `reset_password_link` need
`users.manage` (an admin, or the command line). `invite_user` adds an active account with a random password
nobody knows (audited `user.added`, with its role) and returns the token of its invitation (valid 7 days);
`reset_password_link` returns a reset token (valid 24 hours) and audits `user.reset_link_made`. Either link
is spent as soon as the account's password changes. The token goes in the console's link
`/console/welcome/<token>`; it names no one.

`set_password_by_link(engine, secret, token, password)` takes no actor: the link is the credential, and the
change is audited as the account itself (`user.password_set`).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import Engine

from needlecast.accounts import audit, links, users
from needlecast.accounts.roles import Actor, require


def invite_user(engine: Engine, actor: Actor, secret: bytes, email: str, role: str) -> str:
    """A new account for `email` with `role`, and its invitation's token (see the module contract).
    `InvalidRequest` for a known address or an unknown role, and nothing is written."""
    require(actor, "users.manage")
    with engine.begin() as conn:
        user_id, address = users.add_user(conn, email, role, secrets.token_urlsafe(32))
        audit.record(conn, actor, "user.added", f"user:#{user_id}", email=address, role=role)
        return links.make(conn, secret, user_id, "invite", datetime.now(UTC))


def reset_password_link(engine: Engine, actor: Actor, secret: bytes, user_id: int) -> str:
    """A password reset token for the active account `user_id` (`InvalidRequest` for a disabled one)."""
    require(actor, "users.manage")
    with engine.begin() as conn:
        token = links.make(conn, secret, user_id, "reset", datetime.now(UTC))
        audit.record(conn, actor, "user.reset_link_made", f"user:#{user_id}")
        return token


def set_password_by_link(engine: Engine, secret: bytes, token: str, password: str) -> Actor:
    """Set the password of the account the link opens (`TokenInvalid` for a spent, expired or forged link,
    `InvalidRequest` for a short password); returns the account's actor."""
    with engine.begin() as conn:
        account, purpose = links.redeem(conn, secret, token, password, datetime.now(UTC))
        audit.record(conn, account, "user.password_set", f"user:#{account.id}", link=purpose)
        return account
