"""Scale-out: senders with heartbeats, request intents, fleet-wide rate limits.

- `senders`: one row per sending process (a worker, a scheduler, a `needlecast send`), with the database
  clock's time of its last heartbeat (epoch seconds). A sender silent past `[delivery] lease_seconds` is
  dead: any other sender recovers its rows.
- `delivery_requests`: a request's intent (its id, its claim, its rows) written before it is posted and
  removed once its outcome is recorded. After a crash, the rows of a request that may have been posted
  become `unknown` with the request's id; rows claimed but in no request go back to `queued`.
- `deliveries.request_id`: the request an `unknown` row belongs to ('' otherwise): SendGrid accepts or
  rejects a request whole, so one event for any row settles all of them.
- `rate_limits`: the next free moment for a request and for an email, shared by every sender.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "senders",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("leader", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("beat_at", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "delivery_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column("sender_id", sa.String(16), nullable=False),
        sa.Column("claim_token", sa.String(40), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("delivery_ids", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("settled_at", sa.Float, nullable=True),
    )
    op.add_column("deliveries", sa.Column("request_id", sa.String(32), nullable=False, server_default=""))
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("next_request", sa.Float, nullable=False),
        sa.Column("next_email", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("request_id")
    op.drop_table("delivery_requests")
    op.drop_table("senders")
