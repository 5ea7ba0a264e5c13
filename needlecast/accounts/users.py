"""Console accounts: add, list, disable and enable, change role or password; check a password.

Contract: passwords are hashed with argon2id (argon2-cffi's default cost unless the environment sets another:
`config.password_hash_cost`) and never stored or logged as given; a hash made at another cost still verifies
(argon2 writes its parameters into the hash) and is rehashed at the current cost at the next log-in;
a password shorter than `MIN_PASSWORD` is refused. `authenticate` answers only for an active account with
the right password and raises `AuthenticationFailed` otherwise, with one message whatever was wrong (a
stranger learns nothing about which accounts exist).

This is the storage below `actions.users`: no function here checks a permission or writes an audit entry
(the action does both, in the same transaction as the change). A change returns what its entry names.
"""

from __future__ import annotations

import functools
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, func, select, update

from needlecast.accounts.roles import ROLES, Actor
from needlecast.addresses import normalise_email
from needlecast.config import password_hash_cost
from needlecast.errors import AuthenticationFailed, InvalidRequest, NeedlecastError, NotFound
from needlecast.store.helpers import MAX_ID, insert_new, utcnow
from needlecast.store.schema import sessions, users

MIN_PASSWORD = 12


def password_hasher() -> PasswordHasher:
    """argon2id at the cost the environment sets now, argon2-cffi's defaults for what it does not set (with
    nothing set, `PasswordHasher()`'s: the production cost). One hasher per cost, made once."""
    return _hasher_for(password_hash_cost())


@functools.cache
def _hasher_for(cost: tuple[tuple[str, int], ...]) -> PasswordHasher:
    default = PasswordHasher()
    if not cost:
        return default  # the library's own choice, whatever a later argon2-cffi makes it
    chosen = dict(cost)
    return PasswordHasher(
        time_cost=chosen.get("time_cost", default.time_cost),
        memory_cost=chosen.get("memory_cost", default.memory_cost),
        parallelism=chosen.get("parallelism", default.parallelism),
        hash_len=default.hash_len,
        salt_len=default.salt_len,
        type=default.type,
    )


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """Verified against when the account does not exist, so that an unknown address costs as long as a wrong
    password (no timing tells which accounts exist): made by the same hasher, hence at the same cost."""
    return hasher.hash("not a real password, only a timing twin")


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequest(f"'{role}' is not a role; use one of: {', '.join(ROLES)}")
    return role


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(f"a password needs at least {MIN_PASSWORD} characters")
    return password


def add_user(conn: Connection, email: str, role: str, password: str, display_name: str = "") -> tuple[int, str]:
    """A new active account: its id and its address as stored (normalised); `InvalidRequest` for a known
    address, an unknown role or a short password.

    The account is inserted unless its address is there, in one statement: of concurrent additions of one
    address exactly one adds it and the others are refused as known, none fails on the unique address."""
    address = normalise_email(email)
    _check_role(role)
    _check_password(password)
    known = InvalidRequest(f"there is already an account for {address}")
    if conn.execute(select(users.c.id).where(users.c.email == address)).first() is not None:
        raise known  # before the password is hashed: that takes a while
    now = utcnow()
    user_id = insert_new(
        conn,
        users,
        {
            "email": address,
            "display_name": display_name or address.split("@")[0],
            "role": role,
            "password_hash": password_hasher().hash(password),
            "disabled": False,
            "created_at": now,
            "updated_at": now,
        },
        users.c.id,
    )
    if user_id is None:
        raise known
    return int(user_id), address


def list_users(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            users.c.id,
            users.c.email,
            users.c.display_name,
            users.c.role,
            users.c.disabled,
            users.c.created_at,
            users.c.last_login_at,
        ).order_by(users.c.id)
    ).mappings()
    return [dict(row) for row in rows]


def user_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def find_user(conn: Connection, email: str) -> dict[str, Any]:
    row = conn.execute(select(users).where(users.c.email == normalise_email(email))).mappings().first()
    if row is None:
        raise NotFound(f"no console account for {normalise_email(email)}")
    return dict(row)


def get_user(conn: Connection, user_id: int) -> dict[str, Any]:
    row = None
    if 1 <= user_id <= MAX_ID:  # a larger id would be refused by the database with an error, not a miss
        row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    if row is None:
        raise NotFound(f"no console account #{user_id}", what="console account", name=str(user_id))
    return dict(row)


def _change(conn: Connection, user_id: int, **values: Any) -> str:
    """Set `values` on the account; its address (`NotFound` for an account there is not)."""
    user = get_user(conn, user_id)
    conn.execute(update(users).where(users.c.id == user_id).values(**values, updated_at=utcnow()))
    return str(user["email"])


def set_role(conn: Connection, user_id: int, role: str) -> str:
    """Change the account's role (`InvalidRequest` for a role there is not); its address."""
    return _change(conn, user_id, role=_check_role(role))


def set_disabled(conn: Connection, user_id: int, disabled: bool) -> str:
    """Disable (every session of the account ends) or enable an account; its address."""
    address = _change(conn, user_id, disabled=disabled)
    if disabled:
        conn.execute(sessions.delete().where(sessions.c.user_id == user_id))
    return address


def set_password(conn: Connection, user_id: int, password: str) -> str:
    """Set the account's password (hashed; every session ends); its address."""
    address = _change(conn, user_id, password_hash=password_hasher().hash(_check_password(password)))
    conn.execute(sessions.delete().where(sessions.c.user_id == user_id))
    return address


def authenticate(conn: Connection, email: str, password: str) -> Actor:
    """The actor of an active account whose password this is; `AuthenticationFailed` otherwise."""
    failure = AuthenticationFailed("that address and password do not match an active account")
    try:
        address = normalise_email(email)
    except NeedlecastError:
        raise failure from None
    row = conn.execute(select(users).where(users.c.email == address)).mappings().first()
    hasher = password_hasher()
    try:
        hasher.verify(row["password_hash"] if row else _dummy_hash(hasher), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        raise failure from None
    if row is None or row["disabled"]:
        raise failure
    if hasher.check_needs_rehash(row["password_hash"]):  # made at another cost: brought to the current one
        conn.execute(update(users).where(users.c.id == row["id"]).values(password_hash=hasher.hash(password)))
    conn.execute(update(users).where(users.c.id == row["id"]).values(last_login_at=utcnow()))
    return Actor("user", row["email"], id=int(row["id"]), role=row["role"])


def account_id(conn: Connection, email: str) -> int | None:
    """The id of the account with this address (None for none, or for text that is no address)."""
    try:
        address = normalise_email(email)
    except NeedlecastError:
        return None
    found = conn.execute(select(users.c.id).where(users.c.email == address)).scalar()
    return None if found is None else int(found)


def actor_for(conn: Connection, user_id: int) -> Actor | None:
    """The actor of an active account (None when it is gone or disabled)."""
    row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    if row is None or row["disabled"]:
        return None
    return Actor("user", row["email"], id=int(row["id"]), role=row["role"])
