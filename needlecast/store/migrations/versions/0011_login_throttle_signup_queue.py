"""The log-in throttle as counters, and the signup confirmations as a queue.

- `login_throttle` replaces `login_attempts`: one row per keyed hash (of an account, of a network address,
  or of the pair), holding the attempts in the current window and the window's start, the account's pace
  (the next moment an attempt from an unknown address may be checked, and the current pause), and for a
  pair the moment of its last successful log-in (that address is then known for that account). Counting
  and deciding is one atomic statement, so concurrent attempts can never all pass the check.
- `signup_intake`: what the signup form received, as it came (one row per accepted submission, whatever the
  address): the scheduler's `confirmations` job takes each row once (and deletes it), stores the signup
  request and queues its confirmation, so every answer of the form takes the same path and time.
- `signup_requests.confirmation`: '' (nothing to send), queued, sending, sent, failed, skipped or unknown;
  the same job claims queued rows and sends them, so the web request never sends.
  `confirmation_at`: when the row was claimed (sending) or settled.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from needlecast.store.types import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("pause", sa.Float, nullable=False, server_default="0"),
        sa.Column("trusted_at", sa.Float, nullable=True),
    )
    op.create_table(
        "signup_intake",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("first_name", sa.String(200), nullable=False),
        sa.Column("concerns", sa.String(200), nullable=False),
        sa.Column("concern_consent", sa.Boolean, nullable=False),
        sa.Column("form", sa.String(40), nullable=False),
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.drop_index("ix_login_attempts_key", table_name="login_attempts")
    op.drop_table("login_attempts")
    op.add_column("signup_requests", sa.Column("confirmation", sa.String(16), nullable=False, server_default=""))
    op.add_column("signup_requests", sa.Column("confirmation_at", UtcDateTime(), nullable=True))
    op.create_index("ix_signup_requests_confirmation", "signup_requests", ["confirmation"])


def downgrade() -> None:
    op.drop_index("ix_signup_requests_confirmation", table_name="signup_requests")
    with op.batch_alter_table("signup_requests") as batch:
        batch.drop_column("confirmation_at")
        batch.drop_column("confirmation")
    op.drop_table("login_throttle")
    op.drop_table("signup_intake")
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_login_attempts_key", "login_attempts", ["key_hash", "at"])
