"""Ids that are never given to another person, and a place for webhook events that could not be stored.

- SQLite: `contacts.id` becomes INTEGER PRIMARY KEY AUTOINCREMENT (existing ids kept). Without it SQLite
  hands the highest id out again once that contact is erased, and the new person inherited the erased one's
  signed links and ledger rows. The counter starts above every contact id anything still refers to
  (ledger rows, consent history, enrolments, lists), so an id already freed before this migration is not
  handed out either. PostgreSQL's sequences never reuse a value.
- `erased_contacts`: the ids of erased contacts, so that their signed links stay dead on any database.
- `rejected_events`: webhook events that failed validation, kept raw (as escaped JSON text) with the reason.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from needlecast.store.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
REFERENCES = (
    "contacts.id",
    "deliveries.contact_id",
    "consent_events.contact_id",
    "enrolments.contact_id",
    "contact_lists.contact_id",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table("contacts", recreate="always", table_kwargs={"sqlite_autoincrement": True}):
            pass
        highest = max(
            int(
                bind.exec_driver_sql(
                    f"SELECT coalesce(max({ref.split('.')[1]}), 0) FROM {ref.split('.')[0]}"
                ).scalar_one()
            )
            for ref in REFERENCES
        )
        bind.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = 'contacts'")
        bind.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES ('contacts', ?)", (highest,))
    op.create_table(
        "erased_contacts",
        sa.Column("contact_id", ID, primary_key=True, autoincrement=False),
        sa.Column("erased_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "rejected_events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rejected_events")
    op.drop_table("erased_contacts")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("contacts", recreate="always", table_kwargs={"sqlite_autoincrement": False}):
            pass
