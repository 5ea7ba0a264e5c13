"""The delivery store on SQLite: one machine, one writer at a time.

- Writers take turns through a file lock beside the database (`store.turns`), so sender processes wake
  the moment the lock is free instead of sleeping through SQLite's busy timeout.
- SQLite has no INSERT or UPDATE inside WITH: new rows are listed in the queue from their rowids right
  after the INSERT, and a claim reads its rows back by its token in the same transaction.
- A claim's first DELETE takes the write lock, so no two senders take the same entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from needlecast.store.bulk import Column, insert_columns
from needlecast.store.delivery.protocol import QUEUE_ENTRY_SIZE, QUEUED, SENDING
from needlecast.store.delivery.sql import CLAIM_COLUMNS, LEDGER_CONTACT_JOIN, SqlDeliveryStore
from needlecast.store.driver import fetch_rows, ids_value, sqlite_time
from needlecast.store.schema import deliveries
from needlecast.store.turns import write_turn

_INSERT_PIECE = 100_000  # rows per INSERT statement
_KEYS = ("campaign_id", "step_id", "contact_id")


class SqliteDeliveryStore(SqlDeliveryStore):
    contact_columns = ("c.email", "c.first_name", "c.status", "c.marketing_consent", "c.attributes", "s.reason")

    def write_turn(self) -> AbstractContextManager[None]:
        return write_turn(self.engine)

    def enqueue(self, conn: Connection, rows: dict[str, Column], *, fresh: bool) -> int:
        """Each INSERT statement's new rows are the rowids just below `last_insert_rowid()` (SQLite gives
        each new row the largest rowid plus one, and the statement holds the only write lock): they are
        listed in queue entries right after it. (`fresh` changes nothing here.)"""
        total = len(next(v for v in rows.values() if isinstance(v, list | tuple)))
        inserted = 0
        for start in range(0, total, _INSERT_PIECE):
            piece = {
                name: value[start : start + _INSERT_PIECE] if isinstance(value, list | tuple) else value
                for name, value in rows.items()
            }
            added = insert_columns(conn, deliveries, piece, _KEYS, chunk=_INSERT_PIECE)
            if added:
                last = int(conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one())
                conn.exec_driver_sql(
                    f"INSERT INTO delivery_queue (campaign_id, due_at, size, delivery_ids) "
                    f"SELECT campaign_id, due_at, count(*), json_group_array(id) FROM deliveries "
                    f"WHERE id > ? AND id <= ? AND status = '{QUEUED}' "
                    f"GROUP BY campaign_id, due_at, id / {QUEUE_ENTRY_SIZE}",
                    (last - added, last),
                )
            inserted += added
        return inserted

    def _queue_entries_insert(self, m: str) -> str:
        return f"INSERT INTO delivery_queue (campaign_id, due_at, size, delivery_ids) VALUES ({m}, {m}, {m}, {m})"

    def _take_due_entries(self, conn: Connection, campaign_id: str, now: datetime, wanted: int) -> list[Sequence[Any]]:
        return list(
            conn.exec_driver_sql(
                "DELETE FROM delivery_queue WHERE id IN (SELECT id FROM delivery_queue WHERE campaign_id = ? "
                "AND due_at <= ? ORDER BY due_at, id LIMIT ?) RETURNING id, due_at, size, delivery_ids",
                (campaign_id, sqlite_time(now), wanted),
            ).all()
        )

    def _claim_and_read(self, conn: Connection, ids: Sequence[int], token: str, now: datetime) -> list[Sequence[Any]]:
        at = sqlite_time(now)
        listed = ids_value(conn, ids)
        conn.exec_driver_sql(
            f"UPDATE deliveries SET status = '{SENDING}', claimed_at = ?, claim_token = ?, updated_at = ? "
            f"WHERE id IN (SELECT value FROM json_each(?)) AND status = '{QUEUED}'",
            (at, token, at, listed),
        )
        picked = [f"d.{name}" for name in CLAIM_COLUMNS] + list(self.contact_columns)
        return fetch_rows(
            conn,
            picked,
            f"FROM deliveries d {LEDGER_CONTACT_JOIN} WHERE d.id IN (SELECT value FROM json_each(?)) "
            f"AND d.claim_token = ?",
            (listed, token),
        )
