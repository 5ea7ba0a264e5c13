"""The delivery ledger (DESIGN.md invariant 1).

Every email is one row, unique on (campaign, step, contact), moving
`queued -> sending -> sent | failed | unknown` (plus `skipped` with its reason, and `cancelled`).

Contract:
- `enqueue_columns` inserts with ON CONFLICT DO NOTHING: a job that fires twice enqueues nothing twice.
- `claim` moves due `queued` rows to `sending` in one statement (SKIP LOCKED on PostgreSQL), so two runners
  never claim the same row; only claimed rows are ever handed to a backend.
- `recover_stale` turns `sending` rows left by a crashed sender into `unknown`: they may or may not have
  reached the provider, so they are never resent automatically.
- `reconcile` settles `unknown` rows that stored webhook events prove were accepted (our delivery id comes
  back in every event); `requeue_unknown` sends the rest again only when a person asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, exists, func, select, update

from needlecast.store.bulk import Column, insert_columns
from needlecast.store.driver import fetch_rows, ids_in, ids_value, marker, time_value
from needlecast.store.helpers import utcnow
from needlecast.store.schema import deliveries, events

QUEUED, SENDING, SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED = (
    "queued", "sending", "sent", "failed", "unknown", "skipped", "cancelled")
STATUSES = (QUEUED, SENDING, SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED)


class Claimed(NamedTuple):
    id: int
    contact_id: int
    step_id: str
    variant: str
    arm: str


ENQUEUE_COLUMNS = ("campaign_id", "step_id", "contact_id", "segment", "variant", "arm", "due_at", "status", "error")


def enqueue_columns(conn: Connection, columns: dict[str, Column]) -> int:
    """Insert planned emails given column-wise, every name in ENQUEUE_COLUMNS: a list with one value per
    email, or one value for all (status `queued`, or `skipped` with its reason in `error`). Existing
    (campaign, step, contact) keys are left alone. Returns how many were new."""
    missing = set(ENQUEUE_COLUMNS) - set(columns)
    if missing:
        raise ValueError(f"enqueue_columns needs {sorted(missing)}")
    lengths = {len(v) for v in columns.values() if isinstance(v, list | tuple)}
    if not lengths or lengths == {0}:
        return 0
    now = utcnow()
    constants: dict[str, Column] = {"claimed_at": None, "claim_token": "", "sent_at": None, "message_id": "",
                                    "attempts": 0, "created_at": now, "updated_at": now}
    return insert_columns(conn, deliveries, {**{name: columns[name] for name in ENQUEUE_COLUMNS}, **constants},
                          ("campaign_id", "step_id", "contact_id"))


CLAIM_COLUMNS = ("id", "contact_id", "step_id", "variant", "arm")


def claim(conn: Connection, campaign_id: str, now: datetime, limit: int, token: str) -> list[Claimed]:
    """Move up to `limit` due queued rows of a campaign to `sending` and return them, in id order."""
    return [Claimed(*row) for row in claim_rows(conn, campaign_id, now, limit, token)]


def claim_rows(conn: Connection, campaign_id: str, now: datetime, limit: int, token: str, *,
               also: Sequence[str] = (), join: str = "") -> list[Sequence[Any]]:
    """`claim`, with each row as a plain sequence: CLAIM_COLUMNS, then the expressions `also` over the
    claimed row (`d`) and the tables that `join` adds to it, read in the same statement. In id order.

    For the send's hot path: the contact data dispatch checks comes with the claim, in one round trip
    and without an object per row.
    """
    # In the order of the partial index of queued rows (campaign, due_at), so the database stops after
    # `limit` rows instead of sorting every due row on each claim. Plain driver statements: this runs once
    # per round of a million-recipient send, and SQLAlchemy's row processing cost more than the database.
    m = marker(conn)
    at = time_value(conn, now)
    picked = [f"d.{name}" for name in CLAIM_COLUMNS] + list(also)
    due = f"WHERE d.campaign_id = {m} AND d.status = '{QUEUED}' AND d.due_at <= {m} ORDER BY d.due_at LIMIT {m}"
    if conn.dialect.name == "postgresql":
        rows: list[Sequence[Any]] = list(conn.exec_driver_sql(
            f"WITH d AS (UPDATE deliveries SET status = '{SENDING}', claimed_at = {m}, claim_token = {m}, "
            f"updated_at = {m} WHERE id IN (SELECT d.id FROM deliveries d {due} FOR UPDATE SKIP LOCKED) "
            f"RETURNING {', '.join(CLAIM_COLUMNS)}) SELECT {', '.join(picked)} FROM d {join}",
            (at, token, at, campaign_id, at, int(limit))).all())
    else:
        rows = _claim_sqlite(conn, picked, f"FROM deliveries d {join} {due}", (campaign_id, at, int(limit)), at,
                             token)
    rows.sort(key=itemgetter(0))
    return rows


def _claim_sqlite(conn: Connection, picked: Sequence[str], due: str, due_params: tuple[Any, ...], at: Any,
                  token: str) -> list[Sequence[Any]]:
    """Read the due rows in one go, then take them. Another sender may take some in between (SQLite
    begins the write transaction at the UPDATE): the status condition leaves those to it, and when it
    took them all, the next due rows are tried, so an empty result always means nothing is due."""
    m = marker(conn)
    names = [f"c{index}" for index in range(len(picked))]
    inner = ", ".join(f"{expression} AS {name}" for expression, name in zip(picked, names, strict=True))
    while True:
        rows = fetch_rows(conn, names, f"FROM (SELECT {inner} {due})", due_params)
        if not rows:
            return []
        ids = ids_value(conn, (row[0] for row in rows))
        taken = conn.exec_driver_sql(
            f"UPDATE deliveries SET status = '{SENDING}', claimed_at = {m}, claim_token = {m}, updated_at = {m} "
            f"WHERE {ids_in(conn, 'id')} AND status = '{QUEUED}'", (at, token, at, ids)).rowcount
        if taken == len(rows):
            return rows
        if taken:
            mine = {row[0] for row in fetch_rows(conn, ("id",), f"FROM deliveries WHERE {ids_in(conn, 'id')} "
                                                 f"AND claim_token = {m}", (ids, token))}
            return [row for row in rows if row[0] in mine]


def _set(conn: Connection, ids: Sequence[int], only_from: str, values: dict[str, Any], *,
         count_attempt: bool = False) -> int:
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
    result = conn.exec_driver_sql(f"UPDATE deliveries SET {', '.join(assignments)} "
                                  f"WHERE {ids_in(conn, 'id')} AND status = {m}",
                                  (*params, ids_value(conn, ids), only_from))
    return int(result.rowcount)


def mark_sent(conn: Connection, ids: Sequence[int], message_id: str, at: datetime) -> int:
    return _set(conn, ids, SENDING, {"status": SENT, "message_id": message_id[:100], "sent_at": at, "error": ""})


def mark_failed(conn: Connection, ids: Sequence[int], error: str) -> int:
    return _set(conn, ids, SENDING, {"status": FAILED, "error": error[:2000]}, count_attempt=True)


def mark_unknown(conn: Connection, ids: Sequence[int], error: str) -> int:
    return _set(conn, ids, SENDING, {"status": UNKNOWN, "error": error[:2000]}, count_attempt=True)


def release(conn: Connection, ids: Sequence[int], error: str) -> int:
    """Back to `queued` (the provider certainly did not take them): a later run resumes them."""
    return _set(conn, ids, SENDING, {"status": QUEUED, "error": error[:2000], "claim_token": ""}, count_attempt=True)


def release_claim(conn: Connection, token: str, error: str) -> int:
    """Rows of one claim that are still `sending` (never handed to a backend) -> `queued`."""
    return conn.execute(update(deliveries).where(deliveries.c.claim_token == token,
                                                 deliveries.c.status == SENDING)
                        .values(status=QUEUED, error=error[:2000], claim_token="", updated_at=utcnow())).rowcount


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
    return conn.execute(update(deliveries).where(*where).values(
        status=UNKNOWN, error="the sender stopped while this email was being sent; it may have been accepted",
        updated_at=utcnow())).rowcount


def counts(conn: Connection, campaign_id: str) -> dict[str, int]:
    rows = conn.execute(select(deliveries.c.status, func.count()).where(deliveries.c.campaign_id == campaign_id)
                        .group_by(deliveries.c.status))
    found = dict(rows.all())
    return {status: int(found.get(status, 0)) for status in STATUSES}


def reconcile(conn: Connection, campaign_id: str) -> int:
    """Unknown rows that any stored event proves the provider accepted -> `sent`. Returns how many."""
    accepted = exists().where(events.c.delivery_id == deliveries.c.id)
    first_event = (select(func.min(events.c.occurred_at)).where(events.c.delivery_id == deliveries.c.id)
                   .scalar_subquery())
    message = select(func.max(events.c.message_id)).where(events.c.delivery_id == deliveries.c.id).scalar_subquery()
    return conn.execute(update(deliveries).where(and_(deliveries.c.campaign_id == campaign_id,
                                                      deliveries.c.status == UNKNOWN, accepted))
                        .values(status=SENT, sent_at=first_event, message_id=message,
                                error="settled from provider events", updated_at=utcnow())).rowcount


def requeue_unknown(conn: Connection, campaign_id: str) -> int:
    """Unknown rows -> queued, to be sent again. Only on a person's explicit request."""
    return conn.execute(update(deliveries).where(deliveries.c.campaign_id == campaign_id,
                                                 deliveries.c.status == UNKNOWN)
                        .values(status=QUEUED, claim_token="", error="resend requested", updated_at=utcnow())).rowcount


def cancel_queued(conn: Connection, campaign_id: str) -> int:
    return conn.execute(update(deliveries).where(deliveries.c.campaign_id == campaign_id,
                                                 deliveries.c.status == QUEUED)
                        .values(status=CANCELLED, error="campaign cancelled", updated_at=utcnow())).rowcount
