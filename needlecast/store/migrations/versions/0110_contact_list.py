"""The console's contact list: the last activity of a person is found by their address hash in `events`
(opens and clicks) without reading every event, and the sources of consent are listed from an index.

Revision ID: 0110
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0110"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_email_hash_at", "events", ["email_hash", "occurred_at"])
    op.create_index("ix_consent_events_source", "consent_events", ["source"])


def downgrade() -> None:
    op.drop_index("ix_consent_events_source", table_name="consent_events")
    op.drop_index("ix_events_email_hash_at", table_name="events")
