"""Accounts and the audit log (the console), API keys and idempotent writes (the API), contact events from the
clinic's systems (bookings), and where a consent came from.

- `users`: console accounts with an argon2 password hash and a role; `sessions`: server-side sessions, stored
  by the SHA-256 of their opaque id (the cookie holds the id, the database only its hash), with the CSRF token;
  `login_attempts`: failed and successful log-ins by the keyed hash of the account or the address, for the
  throttle.
- `audit_log`: every change, append-only: who (user, API key, command line, system), what, on what, when.
- `api_keys`: by the SHA-256 of the key (shown once), with its scopes; `idempotency_keys`: the answer to a
  write made with an `Idempotency-Key`, replayed for the same key and body.
- `contact_events`: bookings, attendances, purchases and custom events, once per source id, the address kept
  only as the store's keyed hash.
- `consent_events.address_hash`: the keyed hash of the network address a consent was given from (a form).
- `signup_requests`: what a signup form asked for, applied only when the emailed confirmation link is
  followed (so a stranger's form post changes nothing about an existing contact).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from needlecast.store.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    """The tables by area, created in the order this revision has always created them."""
    _accounts()
    _api()
    _events_and_signups()


def _accounts() -> None:
    """The console's users, sessions, log-in attempts (the throttle) and the audit log."""
    op.create_table(
        "users",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("last_login_at", UtcDateTime(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", ID, nullable=False, index=True),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "login_attempts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_login_attempts_key", "login_attempts", ["key_hash", "at"])
    op.create_table(
        "audit_log",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def _api() -> None:
    """API keys and the answers to idempotent writes."""
    op.create_table(
        "api_keys",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", sa.String(500), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("actor", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )


def _events_and_signups() -> None:
    """Contact events from the clinic's systems, where a consent came from, and signup requests."""
    op.create_table(
        "contact_events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("source_id", sa.String(200), nullable=False, unique=True),
        sa.Column("email_hash", sa.String(64), nullable=False, index=True),
        sa.Column("contact_id", ID, nullable=True, index=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("value", sa.Numeric(14, 2), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_contact_events_type_at", "contact_events", ["type", "occurred_at"])
    with op.batch_alter_table("consent_events") as batch:
        batch.add_column(sa.Column("address_hash", sa.String(64), nullable=False, server_default=""))
    op.create_table(
        "signup_requests",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("contact_id", ID, nullable=False, index=True),
        sa.Column("first_name", sa.String(200), nullable=False),
        sa.Column("concerns", sa.String(200), nullable=False),
        sa.Column("marketing", sa.Boolean, nullable=False),
        sa.Column("concern_consent", sa.Boolean, nullable=False),
        sa.Column("marketing_wording", sa.String(100), nullable=False),
        sa.Column("concern_wording", sa.String(100), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("confirmed_at", UtcDateTime(), nullable=True),
    )


def downgrade() -> None:
    with op.batch_alter_table("consent_events") as batch:
        batch.drop_column("address_hash")
    for table in (
        "signup_requests",
        "contact_events",
        "idempotency_keys",
        "api_keys",
        "audit_log",
        "login_attempts",
        "sessions",
        "users",
    ):
        op.drop_table(table)
