"""The contact list's search by a part of a name or an address, found through an index on SQLite too: an FTS5
table with the trigram tokenizer (`contacts_search`, SQLite 3.34 or later) over the address, the first and the
last name, SQLite's counterpart of PostgreSQL's trigram indexes (migration 0019). `store.contact_search` asks
it for the candidates of a text of three letters or more and keeps its LIKE over them, so the results are
exactly the LIKE's; a shorter text is the scan it was.

What it holds: an external-content table (`content='contacts'`): the index of those three columns and no
copy of them, nothing the contacts table does not hold. Triggers keep it in step with every insert, every
update of those columns and every delete (an erasure deletes the contact: its entries go with it, and the
erasure merges the index so that nothing of them stays behind: `contact_search.forget_erased`). A bulk
insert of new contacts (an import's batch) is indexed once after its statement instead of row by row, ten
times faster (`contact_search.indexed_after`); `contacts_search_state` holds only the flag that says so.

Where SQLite lacks FTS5 or is older than 3.34, the migration leaves the search as it was (a scan: correct,
slower) and says so in the log. A no-op on PostgreSQL.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import logging

from alembic import op
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

log = logging.getLogger("needlecast.migrations")

COLUMNS = "email, first_name, last_name"
STATEMENTS = (
    "CREATE VIRTUAL TABLE contacts_search USING fts5("
    f"{COLUMNS}, content='contacts', content_rowid='id', tokenize='trigram')",
    # A bulk insert (an import) writes the index once per batch instead (`contact_search.indexed_after`):
    # for the length of its statement it sets `deferred` in its own transaction, which no other writer sees.
    "CREATE TABLE contacts_search_state (deferred INTEGER NOT NULL DEFAULT 0)",
    "INSERT INTO contacts_search_state (deferred) VALUES (0)",
    "CREATE TRIGGER contacts_search_insert AFTER INSERT ON contacts"
    " WHEN coalesce((SELECT deferred FROM contacts_search_state), 0) = 0 BEGIN"
    f" INSERT INTO contacts_search(rowid, {COLUMNS}) VALUES (new.id, new.email, new.first_name, new.last_name);"
    " END",
    "CREATE TRIGGER contacts_search_delete AFTER DELETE ON contacts BEGIN"
    f" INSERT INTO contacts_search(contacts_search, rowid, {COLUMNS})"
    " VALUES ('delete', old.id, old.email, old.first_name, old.last_name);"
    " END",
    f"CREATE TRIGGER contacts_search_update AFTER UPDATE OF id, {COLUMNS} ON contacts BEGIN"
    f" INSERT INTO contacts_search(contacts_search, rowid, {COLUMNS})"
    " VALUES ('delete', old.id, old.email, old.first_name, old.last_name);"
    f" INSERT INTO contacts_search(rowid, {COLUMNS}) VALUES (new.id, new.email, new.first_name, new.last_name);"
    " END",
    "INSERT INTO contacts_search(contacts_search) VALUES ('rebuild')",  # the contacts already there
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    try:
        with bind.begin_nested():  # a savepoint: a SQLite without FTS5's trigrams leaves the migration usable
            for statement in STATEMENTS:
                bind.execute(text(statement))
    except DBAPIError:
        log.warning("SQLite's FTS5 trigram tokenizer is not available: the contact search stays a scan")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for trigger in ("insert", "delete", "update"):
        bind.execute(text(f"DROP TRIGGER IF EXISTS contacts_search_{trigger}"))
    bind.execute(text("DROP TABLE IF EXISTS contacts_search"))
    bind.execute(text("DROP TABLE IF EXISTS contacts_search_state"))
