"""Bookings from the booking system: appointments, and the treatment and time on contact events.

- `contact_events.treatment`, `contact_events.appointment_at`: the treatment a booking event is for ("" when
  its appointment type is not mapped) and when that appointment starts.
- `appointments`: each appointment a booking system reported, as it stands now (open or not, its start), so
  "a future appointment exists" is one indexed query; contacts' `next_appointment_at` attribute mirrors it.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from needlecast.store.types import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("contact_events") as batch:
        batch.add_column(sa.Column("treatment", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("appointment_at", UtcDateTime(), nullable=True))
    op.create_table(
        "appointments",
        sa.Column("appointment", sa.String(200), primary_key=True),
        sa.Column("email_hash", sa.String(64), nullable=False, index=True),
        sa.Column("contact_id", ID, nullable=True, index=True),
        sa.Column("treatment", sa.String(64), nullable=False),
        sa.Column("appointment_type", sa.String(200), nullable=False),
        sa.Column("starts_at", UtcDateTime(), nullable=True),
        sa.Column("open", sa.Boolean, nullable=False),
        sa.Column("last_event_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("appointments")
    with op.batch_alter_table("contact_events") as batch:
        batch.drop_column("appointment_at")
        batch.drop_column("treatment")
