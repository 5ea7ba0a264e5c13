"""The console's contact list: newest first by an index (a page of 200,000 contacts sorts nothing); a person's
last activity found by their address hash in `events` (opens and clicks) without reading every event; the
sources of consent listed from an index.

Revision ID: 0016
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_email_hash_at", "events", ["email_hash", "occurred_at"])
    op.create_index("ix_consent_events_source", "consent_events", ["source", "contact_id"])
    op.create_index("ix_contacts_signed_up", "contacts", ["signed_up_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_contacts_signed_up", table_name="contacts")
    op.drop_index("ix_consent_events_source", table_name="consent_events")
    op.drop_index("ix_events_email_hash_at", table_name="events")
