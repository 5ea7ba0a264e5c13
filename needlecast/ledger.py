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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from needlecast.store import fleet
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


def mark_unknown(conn: Connection, ids: Sequence[int], error: str, request_id: str = "") -> int:
    """Rows of a request that may have reached the provider -> `unknown`, with the request's id (its intent,
    when there is one, becomes `unknown` too: `reconcile` settles the request whole)."""
    changed = _set(
        conn, ids, SENDING, {"status": UNKNOWN, "error": error[:2000], "request_id": request_id}, count_attempt=True
    )
    if request_id:
        fleet.set_request_state(conn, request_id, fleet.UNKNOWN)
    return changed


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


@dataclass
class Recovery:
    """What `recover_senders` did: the senders it found dead, and what became of their rows."""

    senders: list[str] = field(default_factory=list)
    requeued: int = 0  # claimed but in no request: certainly not sent, queued again
    unknown: int = 0  # in a request that may have been posted
    requests: int = 0  # such requests
    legacy: int = 0  # claimed before requests had intents (an older needlecast): unknown


def recover_senders(conn: Connection, lease_seconds: float, *, scan: bool = False) -> Recovery:
    """Recover the rows of senders silent past the lease (any sender or the scheduler may call this at any
    time; concurrent calls recover each row once).

    Senders found silent, or (on this machine) whose process is gone, are expired first (`store.fleet`:
    from then on they cannot post). Then, claim by
    claim, for every row in `sending` whose sender is not alive: the rows of a request whose intent was
    written become `unknown` with the request's id (it may have reached the provider); the rest of the
    claim goes back to `queued`. The ledger is scanned only when a sender was found dead, or with `scan`
    (at start-up: rows of a sender that died while nobody was looking).
    """
    silent_since = fleet.cutoff(conn, lease_seconds)
    result = Recovery(fleet.expire_gone(conn) + fleet.expire(conn, silent_since))
    if not result.senders and not scan:
        return result
    tokens = fleet.sending_tokens(conn)
    alive = {sender.id for sender in fleet.live(conn, silent_since)}  # read after the scan: senders register first
    m = marker(conn)
    for token in tokens:
        sender = fleet.sender_of(token)
        if sender in alive:
            continue
        if sender is None:
            result.legacy += _set_where(
                conn,
                f"claim_token = {m} AND status = {m}",
                (token, SENDING),
                {"status": UNKNOWN, "error": _STOPPED_SENDING},
            )
            continue
        for request in fleet.requests_of_token(conn, token, fleet.POSTING):
            changed = _set_where(
                conn,
                f"{ids_in(conn, 'id')} AND status = {m} AND claim_token = {m}",
                (ids_value(conn, request.delivery_ids), SENDING, token),
                {"status": UNKNOWN, "error": _STOPPED_SENDING, "request_id": request.id},
            )
            if changed:
                fleet.set_request_state(conn, request.id, fleet.UNKNOWN)
                result.requests += 1
                result.unknown += changed
        fleet.finish_claim(conn, token)
        result.requeued += _requeue(
            conn,
            f"claim_token = {m} AND status = {m}",
            (token, SENDING),
            {"error": "claimed by a sender that stopped before posting it: queued again"},
        )
    return result


_STOPPED_SENDING = "the sender stopped while this email was being sent; it may have been accepted"


def _set_where(conn: Connection, where: str, params: Sequence[Any], values: dict[str, Any]) -> int:
    m = marker(conn)
    values = {**values, "updated_at": utcnow()}
    bound = [time_value(conn, v) if isinstance(v, datetime) else v for v in values.values()]
    assignments = ", ".join(f"{name} = {m}" for name in values)
    return int(conn.exec_driver_sql(f"UPDATE deliveries SET {assignments} WHERE {where}", (*bound, *params)).rowcount)


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


@dataclass
class RequestSettlement:
    """What `settle_requests` did, request by request."""

    accepted: int = 0  # requests an event proved accepted
    accepted_rows: int = 0
    lost: int = 0  # requests proved lost
    requeued_rows: int = 0
    waiting: int = 0  # requests still unknown


ACCEPTED_BY_EVENT, PROVED_LOST, WAITING = "accepted", "lost", "waiting"


@dataclass(frozen=True)
class RequestVerdict:
    """What `settle_requests` does (or would do) with one unknown request."""

    request_id: str
    emails: int  # its rows still unknown
    written_at: datetime
    verdict: str  # ACCEPTED_BY_EVENT | PROVED_LOST | WAITING
    lost_from: datetime | None  # WAITING: when it can be proved lost (if later requests have events by then)
    first_event: Any = None
    message_id: str = ""


def judge_requests(conn: Connection, campaign_id: str, lost_after_seconds: float | None) -> list[RequestVerdict]:
    """The verdict on each of a campaign's unknown requests, oldest first, changing nothing (see
    `settle_requests`)."""
    now = fleet.clock(conn)
    m = marker(conn)
    verdicts = []
    for request in fleet.requests_of_campaign(conn, campaign_id, fleet.UNKNOWN):
        listed = ids_value(conn, request.delivery_ids)
        first, message_id = conn.exec_driver_sql(
            f"SELECT min(occurred_at), max(message_id) FROM events WHERE {ids_in(conn, 'delivery_id')}", (listed,)
        ).one()
        emails = int(
            conn.exec_driver_sql(
                f"SELECT count(*) FROM deliveries WHERE {ids_in(conn, 'id')} AND status = {m} AND request_id = {m}",
                (listed, UNKNOWN, request.id),
            ).scalar_one()
        )
        written = datetime.fromtimestamp(request.created_at, UTC)
        lost_from = (
            None if lost_after_seconds is None else datetime.fromtimestamp(request.created_at + lost_after_seconds, UTC)
        )
        verdict = WAITING
        if first is not None:
            verdict = ACCEPTED_BY_EVENT
        elif lost_after_seconds is not None and request.created_at <= now - lost_after_seconds:
            later = conn.exec_driver_sql(
                f"SELECT 1 FROM events e JOIN deliveries d ON d.id = e.delivery_id "
                f"WHERE d.campaign_id = {m} AND d.sent_at > {m} LIMIT 1",
                (campaign_id, time_value(conn, written)),
            ).first()
            if later is not None:
                verdict = PROVED_LOST
        verdicts.append(
            RequestVerdict(request.id, emails, written, verdict, lost_from, first, str(message_id or "")[:100])
        )
    return verdicts


def accept_requests_of(conn: Connection, delivery_ids: Sequence[int]) -> int:
    """The unknown requests that these rows (with a provider event each) belong to are accepted, whole: all
    their unknown rows become `sent`. Returns how many rows changed. Cheap when none of them is unknown."""
    m = marker(conn)
    request_ids = [
        str(row[0])
        for row in conn.exec_driver_sql(
            f"SELECT DISTINCT request_id FROM deliveries WHERE {ids_in(conn, 'id')} AND status = {m} "
            f"AND request_id <> ''",
            (ids_value(conn, delivery_ids), UNKNOWN),
        )
    ]
    changed = 0
    for request_id in request_ids:
        request = fleet.requests_by_id(conn, request_id)
        if request is None:
            continue
        changed += _set_where(
            conn,
            f"{ids_in(conn, 'id')} AND status = {m} AND request_id = {m}",
            (ids_value(conn, request.delivery_ids), UNKNOWN, request_id),
            {"status": SENT, "error": "settled from provider events: its request was accepted"},
        )
        fleet.set_request_state(conn, request_id, fleet.ACCEPTED)
    return changed


def settle_requests(conn: Connection, campaign_id: str, lost_after_seconds: float | None) -> RequestSettlement:
    """Settle a campaign's `unknown` requests whole (SendGrid accepts or rejects a request whole).

    - One stored event for any row of a request proves it accepted: all its unknown rows become `sent`.
    - A request with no event for any row, written more than `lost_after_seconds` ago (None: never), while
      the campaign has events for emails recorded as sent after it was written, is proved lost: its rows go
      back to `queued` and are sent again.
    """
    result = RequestSettlement()
    m = marker(conn)
    for verdict in judge_requests(conn, campaign_id, lost_after_seconds):
        request = fleet.requests_by_id(conn, verdict.request_id)
        assert request is not None  # judged just now, in this transaction
        mine = f"{ids_in(conn, 'id')} AND status = {m} AND request_id = {m}"
        params = (ids_value(conn, request.delivery_ids), UNKNOWN, request.id)
        if verdict.verdict == ACCEPTED_BY_EVENT:
            result.accepted_rows += _set_where(
                conn,
                mine,
                params,
                {
                    "status": SENT,
                    "sent_at": verdict.first_event,
                    "message_id": verdict.message_id,
                    "error": "settled from provider events: its request was accepted",
                },
            )
            fleet.set_request_state(conn, request.id, fleet.ACCEPTED)
            result.accepted += 1
        elif verdict.verdict == PROVED_LOST:
            result.requeued_rows += _requeue(
                conn,
                mine,
                params,
                {"error": "its request was proved lost (no event, later requests have events): queued again"},
            )
            fleet.set_request_state(conn, request.id, fleet.LOST)
            result.lost += 1
        else:
            result.waiting += 1
    return result


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


def due_campaigns(conn: Connection, now: datetime) -> list[str]:
    """The campaigns with queued rows due by `now` (from the queue's entries), in id order."""
    rows = conn.execute(select(delivery_queue.c.campaign_id).where(delivery_queue.c.due_at <= now).distinct()).scalars()
    return sorted(str(campaign_id) for campaign_id in rows)


def queued_by_due(conn: Connection, campaign_id: str) -> list[tuple[datetime, int]]:
    """When a campaign's queued rows are due: (due time, how many), earliest first."""
    rows = conn.execute(
        select(delivery_queue.c.due_at, func.sum(delivery_queue.c.size))
        .where(delivery_queue.c.campaign_id == campaign_id)
        .group_by(delivery_queue.c.due_at)
        .order_by(delivery_queue.c.due_at)
    ).all()
    return [(due, int(count)) for due, count in rows]
