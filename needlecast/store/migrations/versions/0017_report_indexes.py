"""Indexes for the reports' aggregates (`store/reports.py`): each email's events settled in the database.

`ix_events_delivery_kind` (delivery_id, kind, occurred_at) holds every column the per-email pass reads but the
open's machine mark, so both databases settle the emails from the index alone, in delivery order, without
reading the events' rows or sorting them; it replaces `ix_events_delivery_id`, its first column.
`ix_events_human_opens` (delivery_id, occurred_at), only for opens not marked a machine's: each email's last
such open, for the human-open test, again from the index alone. Neither holds the event's `detail` (a click's
URL may be longer than a PostgreSQL index entry may be).

Revision ID: 0017
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

HUMAN_OPEN = "kind = 'opened' AND detail <> 'machine'"


def upgrade() -> None:
    op.create_index("ix_events_delivery_kind", "events", ["delivery_id", "kind", "occurred_at"])
    # SQLite reads an index alone only when it holds every column the query names, the predicate's too;
    # its entries have no size limit, so there the index also holds `kind` and `detail`.
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_index(
        "ix_events_human_opens",
        "events",
        ["delivery_id", "occurred_at", *(["kind", "detail"] if sqlite else [])],
        sqlite_where=sa.text(HUMAN_OPEN),
        postgresql_where=sa.text(HUMAN_OPEN),
    )
    op.drop_index("ix_events_delivery_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_delivery_id", "events", ["delivery_id"])
    op.drop_index("ix_events_human_opens", table_name="events")
    op.drop_index("ix_events_delivery_kind", table_name="events")
