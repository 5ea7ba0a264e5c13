"""The deliverability guard's window through indexes (`store.guardwindow`).

- `ix_deliveries_campaign_window` (`campaign_id`, `id`): the guard reads a campaign's last `window` emails
  handed over, newest delivery id first; without this index it read the whole ledger. Neither column ever
  changes once a row is written, so claiming and marking a row remain HOT updates on PostgreSQL (see
  migration 0005).
- `ix_events_bad` (`delivery_id` of the bounces, complaints and drops only; events are never updated): the
  window's hard bounces and complaints are looked up among those events alone, not among every delivery,
  open and click.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BAD = "kind IN ('bounced', 'complained', 'dropped')"  # guardrails.BAD_KINDS when this was written


def upgrade() -> None:
    op.create_index("ix_deliveries_campaign_window", "deliveries", ["campaign_id", "id"])
    op.create_index(
        "ix_events_bad", "events", ["delivery_id"], sqlite_where=sa.text(BAD), postgresql_where=sa.text(BAD)
    )


def downgrade() -> None:
    op.drop_index("ix_events_bad", table_name="events")
    op.drop_index("ix_deliveries_campaign_window", table_name="deliveries")
