"""The audience's latest change found through an index (`contacts.updated_at`, both databases: the console's
pages check it on every view, see `audience.frame_cache.fingerprint`).

The contact list's search by a part of a name or an address, found through an index on PostgreSQL: trigram
GIN indexes (the `pg_trgm` extension) on the address, the first and last name and "first last", so that
ILIKE '%text%' reads the few matching contacts instead of scanning all of them. Where the extension cannot be
created (a managed server that does not offer it, a role without the right), the migration leaves the search
as it was (a scan: correct, slower) and says so in the server's log; `needlecast db upgrade` succeeds either
way. SQLite keeps its scan (LIKE with a leading wildcard uses no index there; 200,000 rows scan in tens of
milliseconds).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import logging

from alembic import op
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

log = logging.getLogger("needlecast.migrations")

# The "first last" expression exactly as `store.contact_search` writes it, so the planner matches the index.
INDEXES = {
    "ix_contacts_email_trgm": "email",
    "ix_contacts_first_name_trgm": "first_name",
    "ix_contacts_last_name_trgm": "last_name",
    "ix_contacts_full_name_trgm": "(first_name || ' ' || last_name)",
}


def upgrade() -> None:
    op.create_index("ix_contacts_updated_at", "contacts", ["updated_at"])
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():  # a savepoint: a refused extension leaves the migration's transaction usable
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except DBAPIError:  # any refusal (not available, not permitted) means: no index, the same results
        log.warning("pg_trgm is not available: the contact search by name stays a scan of every contact")
        return
    # The extension may live in another schema than the tables (created earlier, with another search path):
    # its operator class is named with its schema.
    home = bind.execute(
        text(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'pg_trgm'"
        )
    ).scalar_one()
    ops = f'"{home}".gin_trgm_ops'
    for name, column in INDEXES.items():
        bind.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON contacts USING gin ({column} {ops})"))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name in INDEXES:
            bind.execute(text(f"DROP INDEX IF EXISTS {name}"))
    op.drop_index("ix_contacts_updated_at", table_name="contacts")
