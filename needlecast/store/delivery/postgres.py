"""The delivery store on PostgreSQL: any number of senders on any number of machines.

- Claims take queue entries with `FOR UPDATE SKIP LOCKED`: concurrent senders never wait for, or take,
  each other's entries. No write turns: the server orders writers itself.
- New rows are inserted and listed in the queue in one statement (INSERT ... RETURNING inside WITH); a
  campaign's first plan goes in with a plain INSERT, which costs the server a third less than ON CONFLICT.
- A claim moves its rows to `sending` and reads them with their contact in one statement.
- Lists of ids travel as the text of one array literal, and come back as text: psycopg adapts arrays
  element by element in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from needlecast.store.bulk import Column, insert_columns
from needlecast.store.delivery.protocol import QUEUE_ENTRY_SIZE, QUEUED, SENDING
from needlecast.store.delivery.sql import CLAIM_COLUMNS, LEDGER_CONTACT_JOIN, SqlDeliveryStore
from needlecast.store.driver import ids_value, postgres_time
from needlecast.store.schema import deliveries

_INSERT_PIECE = 100_000  # rows per INSERT statement
_KEYS = ("campaign_id", "step_id", "contact_id")


class PostgresDeliveryStore(SqlDeliveryStore):
    contact_columns = ("c.email", "c.first_name", "c.status", "c.marketing_consent", "c.attributes::text", "s.reason")

    def write_turn(self) -> AbstractContextManager[None]:
        return nullcontext()

    def enqueue(self, conn: Connection, rows: dict[str, Column], *, fresh: bool) -> int:
        if fresh:
            try:
                with conn.begin_nested():
                    return insert_columns(conn, deliveries, rows, (), chunk=_INSERT_PIECE, wrap=_queue_inserted)
            except IntegrityError:
                pass  # another planner enqueued some of these rows meanwhile: add the rest
        return insert_columns(conn, deliveries, rows, _KEYS, chunk=_INSERT_PIECE, wrap=_queue_inserted)

    def _queue_entries_insert(self, m: str) -> str:
        return (
            f"INSERT INTO delivery_queue (campaign_id, due_at, size, delivery_ids) "
            f"VALUES ({m}, {m}, {m}, CAST({m} AS bigint[]))"
        )

    def _take_due_entries(self, conn: Connection, campaign_id: str, now: datetime, wanted: int) -> list[Sequence[Any]]:
        return list(
            conn.exec_driver_sql(
                "DELETE FROM delivery_queue WHERE id IN (SELECT id FROM delivery_queue WHERE campaign_id = %s "
                "AND due_at <= %s ORDER BY due_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING id, due_at, size, CAST(delivery_ids AS text)",  # parsed faster as text
                (campaign_id, postgres_time(now), wanted),
            ).all()
        )

    def _claim_and_read(self, conn: Connection, ids: Sequence[int], token: str, now: datetime) -> list[Sequence[Any]]:
        at = postgres_time(now)
        picked = ", ".join([f"d.{name}" for name in CLAIM_COLUMNS] + list(self.contact_columns))
        return list(
            conn.exec_driver_sql(
                f"WITH d AS (UPDATE deliveries SET status = '{SENDING}', claimed_at = %s, claim_token = %s, "
                f"updated_at = %s WHERE id = ANY(CAST(%s AS bigint[])) AND status = '{QUEUED}' "
                f"RETURNING {', '.join(CLAIM_COLUMNS)}) SELECT {picked} FROM d {LEDGER_CONTACT_JOIN}",
                (at, token, at, ids_value(conn, ids)),
            ).all()
        )


def _queue_inserted(insert: str) -> str:
    """The INSERT of new ledger rows, with the queued ones listed in queue entries in the same statement;
    returns how many rows were inserted."""
    return (
        f"WITH inserted AS ({insert} RETURNING id, campaign_id, due_at, status), "
        f"queued AS (INSERT INTO delivery_queue (campaign_id, due_at, size, delivery_ids) "
        f"SELECT campaign_id, due_at, count(*), array_agg(id ORDER BY id) FROM inserted "
        f"WHERE status = '{QUEUED}' GROUP BY campaign_id, due_at, id / {QUEUE_ENTRY_SIZE}) "
        f"SELECT count(*) FROM inserted"
    )
