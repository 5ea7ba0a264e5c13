"""Campaigns: the delivery ledger, campaign state, sequence enrolments, ESP events.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from needlecast.store.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("contact_id", ID, nullable=False),
        sa.Column("segment", sa.String(100), nullable=False),
        sa.Column("variant", sa.String(32), nullable=False),
        sa.Column("arm", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("claimed_at", UtcDateTime(), nullable=True),
        sa.Column("claim_token", sa.String(40), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("campaign_id", "step_id", "contact_id", name="uq_deliveries_campaign_step_contact"),
    )
    op.create_index("ix_deliveries_dispatch", "deliveries", ["campaign_id", "status", "due_at"])
    op.create_index("ix_deliveries_contact", "deliveries", ["contact_id", "sent_at"])
    op.create_table(
        "campaign_state",
        sa.Column("campaign_id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "enrolments",
        sa.Column("campaign_id", sa.String(64), primary_key=True),
        sa.Column("contact_id", ID, primary_key=True),
        sa.Column("enrolled_at", UtcDateTime(), nullable=False),
        sa.Column("exited_at", UtcDateTime(), nullable=True),
        sa.Column("exit_reason", sa.String(64), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("provider_event_id", sa.String(100), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("delivery_id", ID, nullable=True),
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("email_hash", sa.String(64), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("raw", sa.JSON, nullable=False),
    )
    op.create_index("ix_events_delivery_id", "events", ["delivery_id"])


def downgrade() -> None:
    for table in ("events", "enrolments", "campaign_state", "deliveries"):
        op.drop_table(table)
