"""The ledger by contact: `ix_deliveries_contact` (`contact_id`), for attributing bookings in the database.

A report credits each booking to an email sent to the person who booked (`store.reports.credited_emails`):
with this index the bookers' emails are looked up, a few per booking, where the ledger was read whole (a
million rows to find the 20,000 emails of 20,000 bookers). The column is written once, when a row is
planned, and changed only by an erasure (which unlinks the person's rows): claiming and marking a row stay
HOT updates on PostgreSQL (see migration 0005), and an erasure now finds the person's rows by the index.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_contact", "deliveries", ["contact_id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_contact", table_name="deliveries")
