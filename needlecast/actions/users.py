"""Console-account actions: add an account, disable or enable it, set its role or its password; and the
command line's local operator, the actor every command acts as.

See `needlecast.actions` for the contract every action keeps. Each action needs `users.manage` (an admin, or
the command line) and writes its audit entry (`user.added`, `user.disabled`, `user.enabled`,
`user.role_changed`, `user.password_changed`, each naming `user:#<id>` and the account's address) in the
same transaction as the change; a refused action changes nothing and audits nothing. The check and the entry
are made here and only here: `accounts.users` below is storage.
"""

from __future__ import annotations

from sqlalchemy import Engine

from needlecast.accounts import audit, users
from needlecast.accounts.roles import ROLES, Actor, cli_actor, require

__all__ = [
    "ROLES",
    "Actor",
    "add_user",
    "disable_user",
    "enable_user",
    "local_operator",
    "set_user_password",
    "set_user_role",
]


def local_operator() -> Actor:
    """The command line's actor: every permission (whoever runs it has the database anyway), audited as
    `cli:<operating-system user>` (its uid, or "unknown", when the system cannot name the user)."""
    return cli_actor()


def add_user(engine: Engine, actor: Actor, email: str, role: str, password: str, display_name: str = "") -> int:
    """A new active console account; returns its id. `InvalidRequest` for a known address, an unknown role
    or a password shorter than `accounts.users.MIN_PASSWORD`, and nothing is written."""
    require(actor, "users.manage")
    with engine.begin() as conn:
        user_id, address = users.add_user(conn, email, role, password, display_name)
        audit.record(conn, actor, "user.added", f"user:#{user_id}", email=address, role=role)
    return user_id


def disable_user(engine: Engine, actor: Actor, user_id: int) -> None:
    """Disable an account: it can no longer log in, and every session of it ends."""
    require(actor, "users.manage")
    with engine.begin() as conn:
        address = users.set_disabled(conn, user_id, True)
        audit.record(conn, actor, "user.disabled", f"user:#{user_id}", email=address, disabled=True)


def enable_user(engine: Engine, actor: Actor, user_id: int) -> None:
    """Enable a disabled account again."""
    require(actor, "users.manage")
    with engine.begin() as conn:
        address = users.set_disabled(conn, user_id, False)
        audit.record(conn, actor, "user.enabled", f"user:#{user_id}", email=address, disabled=False)


def set_user_role(engine: Engine, actor: Actor, user_id: int, role: str) -> None:
    """Change an account's role (`InvalidRequest` for a role there is not)."""
    require(actor, "users.manage")
    with engine.begin() as conn:
        address = users.set_role(conn, user_id, role)
        audit.record(conn, actor, "user.role_changed", f"user:#{user_id}", email=address, role=role)


def set_user_password(engine: Engine, actor: Actor, user_id: int, password: str) -> None:
    """Set an account's password (its sessions end); the audit entry never carries the password or its hash."""
    require(actor, "users.manage")
    with engine.begin() as conn:
        address = users.set_password(conn, user_id, password)
        audit.record(conn, actor, "user.password_changed", f"user:#{user_id}", email=address)
