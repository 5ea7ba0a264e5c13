"""Journeys: `journey_positions` (each person's place in each journey, one row per entry, at most one active
per journey and person) and `journey_versions` (every saved version of a journey's file).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from needlecast.store.types import UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "journey_positions",
        sa.Column("campaign_id", sa.String(64), primary_key=True),
        sa.Column("contact_id", ID, primary_key=True),
        sa.Column("entry", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("entered_at", UtcDateTime(), nullable=False),
        sa.Column("trigger_at", UtcDateTime(), nullable=True),
        sa.Column("left_at", UtcDateTime(), nullable=True),
        sa.Column("reason", sa.String(120), nullable=False, server_default=""),
    )
    op.create_index("ix_journey_positions_due", "journey_positions", ["campaign_id", "state", "due_at"])
    op.create_index(
        "uq_journey_positions_active",
        "journey_positions",
        ["campaign_id", "contact_id"],
        unique=True,
        sqlite_where=sa.text("state = 'active'"),
        postgresql_where=sa.text("state = 'active'"),
    )
    op.create_table(
        "journey_versions",
        sa.Column("campaign_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("saved_at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("moves", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("journey_versions")
    op.drop_index("uq_journey_positions_active", table_name="journey_positions")
    op.drop_index("ix_journey_positions_due", table_name="journey_positions")
    op.drop_table("journey_positions")
