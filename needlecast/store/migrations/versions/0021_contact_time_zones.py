"""The time zones the contacts have, found through an index (`contacts.time_zone`, both databases): a
broadcast's moments (one per zone of its audience) are worked out on every campaign page, plan and schedule,
and `store.audience.time_zones` walks the index from one zone to the next (a few index seeks) instead of
reading every contact. A send never changes a contact, so the index costs the ledger nothing.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contacts_time_zone", "contacts", ["time_zone"])


def downgrade() -> None:
    op.drop_index("ix_contacts_time_zone", table_name="contacts")
