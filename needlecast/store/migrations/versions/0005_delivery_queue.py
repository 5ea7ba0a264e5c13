"""The ledger's queue: `delivery_queue` lists the queued deliveries in entries of up to 1,000, replacing the
partial index of queued rows, so that no index of `deliveries` holds a column a send changes. On PostgreSQL
the table's fillfactor becomes 50: a row's claim and mark then fit beside it on its page and are HOT
updates (no new index entries), which halves the database's work per email.

Existing queued rows are listed in entries here, grouped as the ledger groups them (campaign, due time).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from needlecast.store.types import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
ENTRY_SIZE = 1000  # ledger.QUEUE_ENTRY_SIZE when this migration was written


def upgrade() -> None:
    op.create_table(
        "delivery_queue",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(64), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("delivery_ids", sa.Text().with_variant(sa.ARRAY(sa.BigInteger), "postgresql"), nullable=False),
    )
    op.create_index("ix_delivery_queue_due", "delivery_queue", ["campaign_id", "due_at"])
    postgres = op.get_bind().dialect.name == "postgresql"
    listed = "array_agg(id ORDER BY id)" if postgres else "json_group_array(id)"
    op.execute(
        f"INSERT INTO delivery_queue (campaign_id, due_at, size, delivery_ids) "
        f"SELECT campaign_id, due_at, count(*), {listed} FROM deliveries WHERE status = 'queued' "
        f"GROUP BY campaign_id, due_at, id / {ENTRY_SIZE}"
    )
    op.drop_index("ix_deliveries_queued", table_name="deliveries")
    if postgres:
        op.execute("ALTER TABLE deliveries SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    op.create_index(
        "ix_deliveries_queued",
        "deliveries",
        ["campaign_id", "due_at"],
        sqlite_where=sa.text("status = 'queued'"),
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_table("delivery_queue")
