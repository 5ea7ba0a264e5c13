"""The log-in throttle as counters, and the signup confirmations as a queue.

- `login_throttle` replaces `login_attempts`: one row per keyed hash (of an account, of a network address,
  or of the pair), holding the attempts in the current window and the window's start, the account's pace
  (the next moment an attempt from an unknown address may be checked, and the current pause), and for a
  pair the moment of its last successful log-in (that address is then known for that account). Counting
  and deciding is one atomic statement, so concurrent attempts can never all pass the check.
- `signup_requests.confirmation`: '' (nothing to send), queued, sending, sent or failed; the scheduler's
  `confirmations` job claims queued rows and sends them, so the web request never sends.
  `confirmation_at`: when the row was claimed (sending) or settled (sent, failed).

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
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_login_attempts_key", "login_attempts", ["key_hash", "at"])
