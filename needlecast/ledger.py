"""The delivery ledger (DESIGN.md invariant 1).

Every email is one row, unique on (campaign, step, contact), moving
`queued -> sending -> sent | failed | unknown` (plus `skipped` with its reason, and `cancelled`).

Contract:
- `enqueue_columns` inserts with ON CONFLICT DO NOTHING: a job that fires twice enqueues nothing twice.
- Every `queued` row is listed in exactly one entry of `delivery_queue` (up to QUEUE_ENTRY_SIZE rows of a
  campaign due at the same time), and no other row is: every function here that moves a row into or out
  of `queued` changes its entry in the same transaction. Claiming takes whole entries off the queue (SKIP
  LOCKED on PostgreSQL) and moves their rows to `sending` in the same transaction, so two runners never
  claim the same row; only claimed rows are ever handed to a backend.
- `recover_stale` turns `sending` rows left by a crashed sender into `unknown`: they may or may not have
  reached the provider, so they are never resent automatically.
- `reconcile` settles `unknown` rows that stored webhook events prove were accepted (our delivery id comes
  back in every event); `requeue_unknown` sends the rest again only when a person asks for it.

Why a queue beside the rows: no index of `deliveries` then holds a column that sending changes, so on
PostgreSQL claiming and marking a row are HOT updates (no index entry written), and a claim reads four
entries instead of walking 4,000 index entries. A million-recipient send costs the database half the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from needlecast.store.bulk import Column, insert_columns
from needlecast.store.driver import fetch_rows, ids_from_text, ids_in, ids_value, is_sqlite, marker, time_value
from needlecast.store.helpers import utcnow
from needlecast.store.schema import deliveries, delivery_queue, events

QUEUED, SENDING, SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED = (
    "queued",
    "sending",
    "sent",
    "failed",
    "unknown",
    "skipped",
    "cancelled",
)
STATUSES = (QUEUED, SENDING, SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED)


class Claimed(NamedTuple):
    id: int
    contact_id: int
    step_id: str
    variant: str
    arm: str


ENQUEUE_COLUMNS = ("campaign_id", "step_id", "contact_id", "segment", "variant", "arm", "due_at", "status", "error")
OPTIONAL_COLUMNS = {"timing": ""}  # may be left out: every email then gets the default
QUEUE_ENTRY_SIZE = 1000  # rows per queue entry: one request's worth (SendGrid takes 1000 recipients)
_INSERT_PIECE = 100_000  # rows per INSERT statement


def enqueue_columns(conn: Connection, columns: dict[str, Column], *, fresh: bool = False) -> int:
    """Insert planned emails given column-wise, every name in ENQUEUE_COLUMNS (and any of OPTIONAL_COLUMNS):
    a list with one value per email, or one value for all (status `queued`, or `skipped` with its reason in
    `error`). Existing (campaign, step, contact) keys are left alone. The new queued rows are listed in the
    queue. Returns how many were new.

    `fresh`: the caller found none of the campaign's rows in the ledger (its first plan). On PostgreSQL the
    rows then go in with a plain INSERT, which costs the server a third less than ON CONFLICT; should a
    key exist after all (another planner got there first), they go in with ON CONFLICT as usual.
    """
    missing = set(ENQUEUE_COLUMNS) - set(columns)
    if missing:
        raise ValueError(f"enqueue_columns needs {sorted(missing)}")
    lengths = {len(v) for v in columns.values() if isinstance(v, list | tuple)}
    if not lengths or lengths == {0}:
        return 0
    now = utcnow()
    constants: dict[str, Column] = {
        "claimed_at": None,
        "claim_token": "",
        "sent_at": None,
        "message_id": "",
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }
    optional = {name: columns.get(name, default) for name, default in OPTIONAL_COLUMNS.items()}
    rows = {**{name: columns[name] for name in ENQUEUE_COLUMNS}, **optional, **constants}
    keys = ("campaign_id", "step_id", "contact_id")
    if is_sqlite(conn):
        return _enqueue_sqlite(conn, rows, keys)
    if fresh:
        try:
            with conn.begin_nested():
                return insert_columns(conn, deliveries, rows, (), chunk=_INSERT_PIECE, wrap=_queue_inserted)
        except IntegrityError:
            pass  # another planner enqueued some of these rows meanwhile: add the rest
    return insert_columns(conn, deliveries, rows, keys, chunk=_INSERT_PIECE, wrap=_queue_inserted)


def _queue_inserted(insert: str) -> str:
    """PostgreSQL: the INSERT of new ledger rows, with the queued ones listed in queue entries in the same
    statement; returns how many rows were inserted."""
    return (
        f"WITH inserted AS ({insert} RETURNING id, campaign_id, due_at, status), "
        f"queued AS (INSERT INTO delivery_queue (campaign_id, due_at, size, delivery_ids) "
        f"SELECT campaign_id, due_at, count(*), array_agg(id ORDER BY id) FROM inserted "
        f"WHERE status = '{QUEUED}' GROUP BY campaign_id, due_at, id / {QUEUE_ENTRY_SIZE}) "
        f"SELECT count(*) FROM inserted"
    )


def _enqueue_sqlite(conn: Connection, rows: dict[str, Column], keys: Sequence[str]) -> int:
    """SQLite has no INSERT inside WITH: each INSERT statement's new rows are the rowids just below
    `last_insert_rowid()` (SQLite gives each new row the largest rowid plus one, and the statement holds
    the only write lock), listed in queue entries right after it."""
    total = len(next(v for v in rows.values() if isinstance(v, list | tuple)))
    inserted = 0
    for start in range(0, total, _INSERT_PIECE):
        piece = {
            name: value[start : start + _INSERT_PIECE] if isinstance(value, list | tuple) else value
            for name, value in rows.items()
        }
        added = insert_columns(conn, deliveries, piece, keys, chunk=_INSERT_PIECE)
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


def _queue(conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
    """List rows (id, campaign_id, due_at as the driver returns it) in new queue entries."""
    entries: dict[tuple[Any, Any], list[int]] = {}
    for row_id, campaign_id, due_at in sorted(rows, key=itemgetter(0)):
        entries.setdefault((campaign_id, due_at), []).append(int(row_id))
    params = []
    for (campaign_id, due_at), ids in entries.items():
        for start in range(0, len(ids), QUEUE_ENTRY_SIZE):
            part = ids[start : start + QUEUE_ENTRY_SIZE]
            params.append((campaign_id, due_at, len(part), ids_value(conn, part)))
    if params:
        m = marker(conn)
        listed = m if is_sqlite(conn) else f"CAST({m} AS bigint[])"
        conn.exec_driver_sql(
            f"INSERT INTO delivery_queue (campaign_id, due_at, size, delivery_ids) VALUES ({m}, {m}, {m}, {listed})",
            params,
        )


def _requeue(
    conn: Connection, where: str, params: Sequence[Any], values: dict[str, Any], *, count_attempt: bool = False
) -> int:
    """Move the rows matching `where` (its parameters: `params`) back to `queued` with `values`, listing
    them in the queue; returns how many."""
    m = marker(conn)
    values = {**values, "status": QUEUED, "claim_token": "", "updated_at": utcnow()}
    assignments = ", ".join([f"{name} = {m}" for name in values] + ["attempts = attempts + 1"] * count_attempt)
    bound = [time_value(conn, v) if isinstance(v, datetime) else v for v in values.values()]
    rows = conn.exec_driver_sql(
        f"UPDATE deliveries SET {assignments} WHERE {where} RETURNING id, campaign_id, due_at", (*bound, *params)
    ).all()
    _queue(conn, rows)
    return len(rows)


CLAIM_COLUMNS = ("id", "contact_id", "step_id", "variant", "arm")


def claim(conn: Connection, campaign_id: str, now: datetime, limit: int, token: str) -> list[Claimed]:
    """Move up to `limit` due queued rows of a campaign to `sending` and return them, in id order."""
    return [Claimed(*row) for row in claim_rows(conn, campaign_id, now, limit, token)]


def claim_rows(
    conn: Connection,
    campaign_id: str,
    now: datetime,
    limit: int,
    token: str,
    *,
    also: Sequence[str] = (),
    join: str = "",
) -> list[Sequence[Any]]:
    """`claim`, with each row as a plain sequence: CLAIM_COLUMNS, then the expressions `also` over the
    claimed row (`d`) and the tables that `join` adds to it, read in the same statement. In id order.
    Returns an empty list only when nothing of the campaign is due (or, on PostgreSQL, all that is due is
    being claimed by another sender right now).

    For the send's hot path: the contact data dispatch checks comes with the claim, in one round trip
    and without an object per row.
    """
    ids = _take_from_queue(conn, campaign_id, now, limit)
    if not ids:
        return []
    # Plain driver statements: this runs once per round of a million-recipient send, and SQLAlchemy's row
    # processing cost more than the database.
    m = marker(conn)
    at = time_value(conn, now)
    picked = [f"d.{name}" for name in CLAIM_COLUMNS] + list(also)
    listed = ids_value(conn, ids)
    take = (
        f"UPDATE deliveries SET status = '{SENDING}', claimed_at = {m}, claim_token = {m}, updated_at = {m} "
        f"WHERE {ids_in(conn, 'id')} AND status = '{QUEUED}'"
    )
    if is_sqlite(conn):  # no UPDATE inside WITH: read the claimed rows back in the same transaction
        conn.exec_driver_sql(take, (at, token, at, listed))
        rows = fetch_rows(
            conn,
            picked,
            f"FROM deliveries d {join} WHERE {ids_in(conn, 'd.id')} AND d.claim_token = ?",
            (listed, token),
        )
    else:
        rows = list(
            conn.exec_driver_sql(
                f"WITH d AS ({take} RETURNING {', '.join(CLAIM_COLUMNS)}) SELECT {', '.join(picked)} FROM d {join}",
                (at, token, at, listed),
            ).all()
        )
    rows.sort(key=itemgetter(0))
    return rows


def _take_from_queue(conn: Connection, campaign_id: str, now: datetime, limit: int) -> list[int]:
    """Take the first due queue entries of a campaign off the queue, enough for up to `limit` rows (in due
    order), and return their delivery ids. What the entries hold beyond `limit` goes back as new entries.

    Entries are taken in steps: as many as `limit` rows need if entries are full, then as many more as the
    sizes seen so far suggest (a sequence's entries may hold one row each). PostgreSQL skips entries
    another sender has locked; on SQLite the first DELETE takes the write lock.
    """
    m = marker(conn)
    due = (
        f"SELECT id FROM delivery_queue WHERE campaign_id = {m} AND due_at <= {m} ORDER BY due_at, id "
        f"LIMIT {m}{'' if is_sqlite(conn) else ' FOR UPDATE SKIP LOCKED'}"
    )
    listed = "delivery_ids" if is_sqlite(conn) else "CAST(delivery_ids AS text)"  # parsed faster as text
    taken: list[Sequence[Any]] = []
    total = 0
    wanted = -(-limit // QUEUE_ENTRY_SIZE)
    while total < limit:
        rows = conn.exec_driver_sql(
            f"DELETE FROM delivery_queue WHERE id IN ({due}) RETURNING id, due_at, size, {listed}",
            (campaign_id, time_value(conn, now), wanted),
        ).all()
        taken += rows
        total += sum(row[2] for row in rows)
        if len(rows) < wanted:
            break  # nothing more is due (or the rest is another sender's)
        wanted = max(1, -(-(limit - total) * len(taken) // total))
    taken.sort(key=itemgetter(1, 0))  # due order (RETURNING follows none)
    lists = [ids_from_text(row[3]) for row in taken]
    ids = list(chain.from_iterable(lists))
    if len(ids) > limit:
        left: list[tuple[int, str, Any]] = []
        kept = 0
        for (_, due_at, _, _), listed_ids in zip(taken, lists, strict=True):
            rest = listed_ids[max(0, limit - kept) :]
            kept += len(listed_ids) - len(rest)
            left.extend((row_id, campaign_id, due_at) for row_id in rest)
        _queue(conn, left)
        ids = ids[:limit]
    return ids


def _set(
    conn: Connection, ids: Sequence[int], only_from: str, values: dict[str, Any], *, count_attempt: bool = False
) -> int:
    """Set `values` on the rows `ids` that are still `only_from`; returns how many changed.

    One statement whatever the number of ids (bound as one parameter, see `store.driver`).
    """
    if not ids:
        return 0
    m = marker(conn)
    values = {**values, "updated_at": utcnow()}
    assignments = [f"{name} = {m}" for name in values]
    if count_attempt:
        assignments.append("attempts = attempts + 1")
    params = [time_value(conn, v) if isinstance(v, datetime) else v for v in values.values()]
    result = conn.exec_driver_sql(
        f"UPDATE deliveries SET {', '.join(assignments)} WHERE {ids_in(conn, 'id')} AND status = {m}",
        (*params, ids_value(conn, ids), only_from),
    )
    return int(result.rowcount)


def mark_sent(conn: Connection, ids: Sequence[int], message_id: str, at: datetime) -> int:
    return _set(conn, ids, SENDING, {"status": SENT, "message_id": message_id[:100], "sent_at": at, "error": ""})


def mark_failed(conn: Connection, ids: Sequence[int], error: str) -> int:
    return _set(conn, ids, SENDING, {"status": FAILED, "error": error[:2000]}, count_attempt=True)


def mark_unknown(conn: Connection, ids: Sequence[int], error: str) -> int:
    return _set(conn, ids, SENDING, {"status": UNKNOWN, "error": error[:2000]}, count_attempt=True)


def release(conn: Connection, ids: Sequence[int], error: str) -> int:
    """Back to `queued` (the provider certainly did not take them): a later run resumes them."""
    if not ids:
        return 0
    m = marker(conn)
    return _requeue(
        conn,
        f"{ids_in(conn, 'id')} AND status = {m}",
        (ids_value(conn, ids), SENDING),
        {"error": error[:2000]},
        count_attempt=True,
    )


def release_claim(conn: Connection, token: str, error: str) -> int:
    """Rows of one claim that are still `sending` (never handed to a backend) -> `queued`."""
    m = marker(conn)
    return _requeue(conn, f"claim_token = {m} AND status = {m}", (token, SENDING), {"error": error[:2000]})


def mark_skipped(conn: Connection, reasons: dict[int, str]) -> int:
    """Claimed rows not sent after all (suppressed or without consent at dispatch), each with its reason."""
    changed = 0
    by_reason: dict[str, list[int]] = {}
    for row_id, reason in reasons.items():
        by_reason.setdefault(reason, []).append(row_id)
    for reason, ids in by_reason.items():
        changed += _set(conn, ids, SENDING, {"status": SKIPPED, "error": reason})
    return changed


def recover_stale(conn: Connection, campaign_id: str | None = None) -> int:
    """`sending` rows of a sender that is gone -> `unknown`. Call only while holding the sender lock."""
    where = [deliveries.c.status == SENDING]
    if campaign_id:
        where.append(deliveries.c.campaign_id == campaign_id)
    return conn.execute(
        update(deliveries)
        .where(*where)
        .values(
            status=UNKNOWN,
            error="the sender stopped while this email was being sent; it may have been accepted",
            updated_at=utcnow(),
        )
    ).rowcount


def counts(conn: Connection, campaign_id: str) -> dict[str, int]:
    rows = conn.execute(
        select(deliveries.c.status, func.count())
        .where(deliveries.c.campaign_id == campaign_id)
        .group_by(deliveries.c.status)
    )
    found: dict[str, int] = {str(status): int(count) for status, count in rows.all()}
    return {status: found.get(status, 0) for status in STATUSES}


def reconcile(conn: Connection, campaign_id: str) -> int:
    """Unknown rows that any stored event proves the provider accepted -> `sent`. Returns how many."""
    accepted = exists().where(events.c.delivery_id == deliveries.c.id)
    first_event = (
        select(func.min(events.c.occurred_at)).where(events.c.delivery_id == deliveries.c.id).scalar_subquery()
    )
    message = select(func.max(events.c.message_id)).where(events.c.delivery_id == deliveries.c.id).scalar_subquery()
    return conn.execute(
        update(deliveries)
        .where(and_(deliveries.c.campaign_id == campaign_id, deliveries.c.status == UNKNOWN, accepted))
        .values(
            status=SENT,
            sent_at=first_event,
            message_id=message,
            error="settled from provider events",
            updated_at=utcnow(),
        )
    ).rowcount


def requeue_unknown(conn: Connection, campaign_id: str) -> int:
    """Unknown rows -> queued, to be sent again. Only on a person's explicit request."""
    m = marker(conn)
    return _requeue(conn, f"campaign_id = {m} AND status = {m}", (campaign_id, UNKNOWN), {"error": "resend requested"})


def cancel_queued(conn: Connection, campaign_id: str) -> int:
    """Queued rows -> cancelled, their queue entries removed (a sender's claim in progress keeps its own)."""
    conn.execute(delete(delivery_queue).where(delivery_queue.c.campaign_id == campaign_id))
    return conn.execute(
        update(deliveries)
        .where(deliveries.c.campaign_id == campaign_id, deliveries.c.status == QUEUED)
        .values(status=CANCELLED, error="campaign cancelled", updated_at=utcnow())
    ).rowcount


def has_rows(conn: Connection, campaign_id: str) -> bool:
    """Whether the ledger holds any row of the campaign."""
    return (
        conn.execute(select(deliveries.c.id).where(deliveries.c.campaign_id == campaign_id).limit(1)).first()
        is not None
    )


def queued_count(conn: Connection, campaign_id: str, due_by: datetime | None = None) -> int:
    """How many rows of a campaign are queued (due by `due_by`, when given), from the queue's entries."""
    query = select(func.coalesce(func.sum(delivery_queue.c.size), 0)).where(delivery_queue.c.campaign_id == campaign_id)
    if due_by is not None:
        query = query.where(delivery_queue.c.due_at <= due_by)
    return int(conn.execute(query).scalar_one())


def queued_by_due(conn: Connection, campaign_id: str) -> list[tuple[datetime, int]]:
    """When a campaign's queued rows are due: (due time, how many), earliest first."""
    rows = conn.execute(
        select(delivery_queue.c.due_at, func.sum(delivery_queue.c.size))
        .where(delivery_queue.c.campaign_id == campaign_id)
        .group_by(delivery_queue.c.due_at)
        .order_by(delivery_queue.c.due_at)
    ).all()
    return [(due, int(count)) for due, count in rows]
