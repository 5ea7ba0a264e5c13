"""Ledger indexes for large sends: a partial index of queued rows replaces the (campaign, status, due_at)
index, so claiming and marking a million rows no longer rewrites index entries at every status change.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_dispatch", table_name="deliveries")
    op.drop_index("ix_deliveries_contact", table_name="deliveries")
    op.create_index(
        "ix_deliveries_queued",
        "deliveries",
        ["campaign_id", "due_at"],
        sqlite_where=sa.text("status = 'queued'"),
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_queued", table_name="deliveries")
    op.create_index("ix_deliveries_contact", "deliveries", ["contact_id", "sent_at"])
    op.create_index("ix_deliveries_dispatch", "deliveries", ["campaign_id", "status", "due_at"])
