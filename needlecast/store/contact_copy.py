"""The import's fast path for new contacts: COPY, with ids reserved ahead, on a store that offers it.

Into a PostgreSQL store that was empty when an import began, new contacts go in with COPY rather than
executemany, and take ids reserved from the sequence on a second connection (sequences are not
transactional, so nothing has to be read back, and a rolled-back import leaves only a gap: ids are never
reused). A part's rows are made into COPY text without touching a connection (`prepare`), so the importer
can prepare one part while another thread sends the part before (`send`): the server's work (unique
indexes of a million addresses) overlaps Python's.

SQLite offers no copier (`contact_copier` returns None): it has no COPY, and its driver takes Python's lock
back after every row it writes, so a writer thread and a busy preparing thread hand the lock to each other
row by row (tried: 38.8 s -> 48.2 s a million). The importer then writes each part itself, in its thread.

Contract: `contact_copier(engine, conn)` is a `ContactCopier` for an import in `conn`'s transaction, or
None. `reserve_ids(n)` returns n new contact ids (its own short connection); `prepare(contacts, events,
list_rows)` touches no connection and may run in any thread; `send(part)` writes the part in `conn`'s
transaction (contacts, then their consent events, then list memberships, a repeated membership ignored),
one part at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Table

from needlecast.store.bulk import PreparedRows, bulk_insert, insert_prepared, prepare_rows
from needlecast.store.driver import is_sqlite, reserve_ids
from needlecast.store.schema import consent_events, contact_lists, contacts


@dataclass(frozen=True)
class CopyPart:
    """One part of an import, ready to send: new contacts and consent events as COPY text, list rows as dicts."""

    contacts: PreparedRows
    consent_events: PreparedRows
    list_rows: list[dict[str, Any]]


class ContactCopier:
    """New contacts of an import written with COPY in the import's transaction (see the module contract)."""

    def __init__(self, engine: Engine, conn: Connection) -> None:
        self.engine = engine
        self.conn = conn
        self.dialect = conn.dialect.name

    def reserve_ids(self, count: int) -> list[int]:
        """`count` new contact ids, from the sequence on a connection of their own (not the import's
        transaction: another thread may be writing on it)."""
        with self.engine.connect() as other:
            return reserve_ids(other, contacts.name, "id", count)

    def prepare(
        self, new_contacts: list[dict[str, Any]], events: list[dict[str, Any]], list_rows: list[dict[str, Any]]
    ) -> CopyPart:
        """The part made ready for `send` (dicts with the same keys per table; contacts carry their ids)."""
        return CopyPart(self._ready(contacts, new_contacts), self._ready(consent_events, events), list_rows)

    def send(self, part: CopyPart) -> None:
        """Write a prepared part in the import's transaction."""
        insert_prepared(self.conn, part.contacts)
        insert_prepared(self.conn, part.consent_events)
        bulk_insert(self.conn, contact_lists, part.list_rows, on_conflict_do_nothing=("contact_id", "list_name"))

    def _ready(self, table: Table, rows: list[dict[str, Any]]) -> PreparedRows:
        columns = list(rows[0]) if rows else []
        return prepare_rows(self.dialect, table, columns, [tuple(row.values()) for row in rows])


def contact_copier(engine: Engine, conn: Connection) -> ContactCopier | None:
    """The copier for an import in `conn`'s transaction, or None where the store has none (SQLite)."""
    return None if is_sqlite(conn) else ContactCopier(engine, conn)
