"""What both delivery stores share: the statements that read the same on SQLite and PostgreSQL.

Hot-path statements go to the driver directly (`store.driver`: one parameter for any list of ids, DBAPI-
ready timestamps): SQLAlchemy's row processing cost more than the database when a million rows pass.
The subclasses supply what differs: how new rows are listed in the queue, how a claim takes entries and
reads its rows back, and how writers take turns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal_column,
    select,
    update,
)

from needlecast.store.bulk import Column
from needlecast.store.delivery.protocol import (
    CANCELLED,
    QUEUE_ENTRY_SIZE,
    QUEUED,
    SENDING,
    SENT,
    SKIPPED,
    STATUSES,
    UNKNOWN,
    RequestEvidence,
)
from needlecast.store.delivery.sending import SendingState
from needlecast.store.driver import ids_from_text, ids_in, ids_value, marker, time_value, values_in, values_value
from needlecast.store.helpers import utcnow
from needlecast.store.schema import deliveries, delivery_queue, events

LEDGER_CONTACT_JOIN = (
    "LEFT JOIN contacts c ON c.id = d.contact_id LEFT JOIN suppressions s ON s.email_hash = c.email_hash"
)
CLAIM_COLUMNS = ("id", "contact_id", "step_id", "variant", "arm")


class SqlDeliveryStore(SendingState):
    """The statements both databases share (see the module docstring)."""

    #: the contact's columns a claim reads (email, first name, status, consent, attributes as text, reason)
    contact_columns: tuple[str, ...] = ()

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write_turn(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self.write_turn(), self.engine.begin() as conn:
            yield conn

    # -- what the subclasses supply ------------------------------------------------------------------------
    def enqueue(self, conn: Connection, rows: dict[str, Column], *, fresh: bool) -> int:
        raise NotImplementedError

    def _queue_entries_insert(self, m: str) -> str:
        """The INSERT of one queue entry (campaign, due, size, ids bound as `ids_value`)."""
        raise NotImplementedError

    def _take_due_entries(self, conn: Connection, campaign_id: str, now: datetime, wanted: int) -> list[Sequence[Any]]:
        """Delete up to `wanted` due entries of a campaign (never one another sender holds); return
        (id, due_at, size, ids as text) of each."""
        raise NotImplementedError

    def _claim_and_read(self, conn: Connection, ids: Sequence[int], token: str, now: datetime) -> list[Sequence[Any]]:
        """Move the rows `ids` still queued to `sending` under `token`; return them with their contact."""
        raise NotImplementedError

    # -- queue upkeep --------------------------------------------------------------------------------------
    def _queue(self, conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
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
            conn.exec_driver_sql(self._queue_entries_insert(marker(conn)), params)

    # -- dispatching -----------------------------------------------------------------------------------------
    def claim(self, conn: Connection, campaign_id: str, now: datetime, limit: int, token: str) -> list[Sequence[Any]]:
        ids = self._take_from_queue(conn, campaign_id, now, limit)
        if not ids:
            return []
        rows = self._claim_and_read(conn, ids, token, now)
        rows.sort(key=itemgetter(0))
        return rows

    def _take_from_queue(self, conn: Connection, campaign_id: str, now: datetime, limit: int) -> list[int]:
        """Take the first due queue entries of a campaign off the queue, enough for up to `limit` rows (in due
        order), and return their delivery ids. What the entries hold beyond `limit` goes back as new entries.

        Entries are taken in steps: as many as `limit` rows need if entries are full, then as many more as
        the sizes seen so far suggest (a sequence's entries may hold one row each).
        """
        taken: list[Sequence[Any]] = []
        total = 0
        wanted = -(-limit // QUEUE_ENTRY_SIZE)
        while total < limit:
            rows = self._take_due_entries(conn, campaign_id, now, wanted)
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
            self._queue(conn, left)
            ids = ids[:limit]
        return ids

    def _assignments(self, conn: Connection, values: dict[str, Any], count_attempt: bool) -> tuple[str, list[Any]]:
        m = marker(conn)
        values = {**values, "updated_at": utcnow()}
        assignments = [f"{name} = {m}" for name in values] + ["attempts = attempts + 1"] * count_attempt
        bound = [time_value(conn, v) if isinstance(v, datetime) else v for v in values.values()]
        return ", ".join(assignments), bound

    def _where(
        self,
        conn: Connection,
        only_from: str,
        ids: Sequence[int] | None,
        token: str | None,
        campaign_id: str | None,
        request_id: str | None,
    ) -> tuple[str, list[Any]]:
        m = marker(conn)
        where, params = [f"status = {m}"], [only_from]
        if ids is not None:
            where.append(ids_in(conn, "id"))
            params.append(ids_value(conn, ids))
        for column, value in (("claim_token", token), ("campaign_id", campaign_id), ("request_id", request_id)):
            if value is not None:
                where.append(f"{column} = {m}")
                params.append(value)
        return " AND ".join(where), params

    def set_status(
        self,
        conn: Connection,
        ids: Sequence[int],
        only_from: str,
        values: dict[str, Any],
        *,
        count_attempt: bool = False,
        request_id: str | None = None,
        token: str | None = None,
    ) -> int:
        if not ids:
            return 0
        assignments, bound = self._assignments(conn, values, count_attempt)
        where, params = self._where(conn, only_from, ids, token, None, request_id)
        result = conn.exec_driver_sql(f"UPDATE deliveries SET {assignments} WHERE {where}", (*bound, *params))
        return int(result.rowcount)

    def set_status_of_claim(self, conn: Connection, token: str, only_from: str, values: dict[str, Any]) -> int:
        assignments, bound = self._assignments(conn, values, False)
        where, params = self._where(conn, only_from, None, token, None, None)
        return int(
            conn.exec_driver_sql(f"UPDATE deliveries SET {assignments} WHERE {where}", (*bound, *params)).rowcount
        )

    def requeue(
        self,
        conn: Connection,
        values: dict[str, Any],
        *,
        ids: Sequence[int] | None = None,
        only_from: str,
        token: str | None = None,
        campaign_id: str | None = None,
        request_id: str | None = None,
        count_attempt: bool = False,
    ) -> int:
        if ids is not None and not ids:
            return 0
        values = {**values, "status": QUEUED, "claim_token": ""}
        assignments, bound = self._assignments(conn, values, count_attempt)
        where, params = self._where(conn, only_from, ids, token, campaign_id, request_id)
        rows = conn.exec_driver_sql(
            f"UPDATE deliveries SET {assignments} WHERE {where} RETURNING id, campaign_id, due_at", (*bound, *params)
        ).all()
        self._queue(conn, rows)
        return len(rows)

    # -- reading ---------------------------------------------------------------------------------------------
    def has_rows(self, conn: Connection, campaign_id: str) -> bool:
        found = conn.execute(select(deliveries.c.id).where(deliveries.c.campaign_id == campaign_id).limit(1)).first()
        return found is not None

    def counts(self, conn: Connection, campaign_id: str) -> dict[str, int]:
        rows = conn.execute(
            select(deliveries.c.status, func.count())
            .where(deliveries.c.campaign_id == campaign_id)
            .group_by(deliveries.c.status)
        )
        found: dict[str, int] = {str(status): int(count) for status, count in rows.all()}
        return {status: found.get(status, 0) for status in STATUSES}

    def skipped_by_reason(self, conn: Connection, campaign_id: str) -> dict[str, int]:
        rows = conn.execute(
            select(deliveries.c.error, func.count())
            .where(deliveries.c.campaign_id == campaign_id, deliveries.c.status == SKIPPED)
            .group_by(deliveries.c.error)
        ).all()
        return {str(reason or ""): int(count) for reason, count in sorted(rows, key=lambda r: (-r[1], str(r[0])))}

    def counts_and_skipped(self, conn: Connection, campaign_id: str) -> tuple[dict[str, int], dict[str, int]]:
        # Constants as literals, not parameters: PostgreSQL matches the GROUP BY to the column by its text.
        reason = case(
            (deliveries.c.status == literal_column(f"'{SKIPPED}'"), deliveries.c.error), else_=literal_column("''")
        )
        rows = conn.execute(
            select(deliveries.c.status, reason, func.count())
            .where(deliveries.c.campaign_id == campaign_id)
            .group_by(deliveries.c.status, reason)
        ).all()
        found: dict[str, int] = {}
        skipped: list[tuple[str, int]] = []
        for status, why, count in rows:
            found[str(status)] = found.get(str(status), 0) + int(count)
            if status == SKIPPED:
                skipped.append((str(why or ""), int(count)))
        counts = {status: found.get(status, 0) for status in STATUSES}
        return counts, dict(sorted(skipped, key=lambda r: (-r[1], r[0])))

    def queued_count(self, conn: Connection, campaign_id: str, due_by: datetime | None = None) -> int:
        query = select(func.coalesce(func.sum(delivery_queue.c.size), 0)).where(
            delivery_queue.c.campaign_id == campaign_id
        )
        if due_by is not None:
            query = query.where(delivery_queue.c.due_at <= due_by)
        return int(conn.execute(query).scalar_one())

    def queued_by_due(self, conn: Connection, campaign_id: str) -> list[tuple[datetime, int]]:
        rows = conn.execute(
            select(delivery_queue.c.due_at, func.sum(delivery_queue.c.size))
            .where(delivery_queue.c.campaign_id == campaign_id)
            .group_by(delivery_queue.c.due_at)
            .order_by(delivery_queue.c.due_at)
        ).all()
        return [(due, int(count)) for due, count in rows]

    def due_campaigns(self, conn: Connection, now: datetime) -> list[str]:
        rows = conn.execute(
            select(delivery_queue.c.campaign_id).where(delivery_queue.c.due_at <= now).distinct()
        ).scalars()
        return sorted(str(campaign_id) for campaign_id in rows)

    def queue_depth(self, conn: Connection, now: datetime) -> tuple[int, int]:
        queued, due = conn.execute(
            select(
                func.coalesce(func.sum(delivery_queue.c.size), 0),
                func.coalesce(func.sum(delivery_queue.c.size).filter(delivery_queue.c.due_at <= now), 0),
            )
        ).one()
        return int(queued), int(due)

    def queue_by_campaign(self, conn: Connection) -> list[tuple[str, int, Any]]:
        """(campaign, queued rows, earliest due time) of every campaign with queued rows."""
        rows = conn.execute(
            select(
                delivery_queue.c.campaign_id, func.sum(delivery_queue.c.size), func.min(delivery_queue.c.due_at)
            ).group_by(delivery_queue.c.campaign_id)
        ).all()
        return [(str(campaign), int(size), due) for campaign, size, due in rows]

    # -- settling --------------------------------------------------------------------------------------------
    def request_evidence(self, conn: Connection, request_id: str, delivery_ids: Sequence[int]) -> RequestEvidence:
        m = marker(conn)
        listed = ids_value(conn, delivery_ids)
        first, message_id = conn.exec_driver_sql(
            f"SELECT min(occurred_at), max(message_id) FROM events WHERE {ids_in(conn, 'delivery_id')}", (listed,)
        ).one()
        emails = conn.exec_driver_sql(
            f"SELECT count(*) FROM deliveries WHERE {ids_in(conn, 'id')} AND status = {m} AND request_id = {m}",
            (listed, UNKNOWN, request_id),
        ).scalar_one()
        return RequestEvidence(first, str(message_id or "")[:100], int(emails))

    def has_events_after(self, conn: Connection, campaign_id: str, at: datetime) -> bool:
        m = marker(conn)
        later = conn.exec_driver_sql(
            f"SELECT 1 FROM events e JOIN deliveries d ON d.id = e.delivery_id "
            f"WHERE d.campaign_id = {m} AND d.sent_at > {m} LIMIT 1",
            (campaign_id, time_value(conn, at)),
        ).first()
        return later is not None

    def has_events_of(self, conn: Connection, delivery_ids: Sequence[int], kinds: Iterable[str]) -> bool:
        if not delivery_ids:
            return False
        found = conn.exec_driver_sql(
            f"SELECT 1 FROM events WHERE {ids_in(conn, 'delivery_id')} AND {values_in(conn, 'kind')} LIMIT 1",
            (ids_value(conn, delivery_ids), values_value(conn, sorted(kinds))),
        ).first()
        return found is not None

    def campaigns_of(self, conn: Connection, delivery_ids: Sequence[int]) -> set[str]:
        if not delivery_ids:
            return set()
        rows = conn.exec_driver_sql(
            f"SELECT DISTINCT campaign_id FROM deliveries WHERE {ids_in(conn, 'id')}", (ids_value(conn, delivery_ids),)
        )
        return {str(row[0]) for row in rows}

    def unknown_requests_of(self, conn: Connection, delivery_ids: Sequence[int]) -> list[str]:
        m = marker(conn)
        rows = conn.exec_driver_sql(
            f"SELECT DISTINCT request_id FROM deliveries WHERE {ids_in(conn, 'id')} AND status = {m} "
            f"AND request_id <> ''",
            (ids_value(conn, delivery_ids), UNKNOWN),
        )
        return [str(row[0]) for row in rows]

    def settle_rows_with_events(self, conn: Connection, delivery_ids: Sequence[int]) -> int:
        if not delivery_ids:
            return 0
        return self.set_status(conn, delivery_ids, UNKNOWN, {"status": SENT, "error": "settled from provider events"})

    def settle_campaign_by_events(self, conn: Connection, campaign_id: str) -> int:
        accepted = exists().where(events.c.delivery_id == deliveries.c.id)
        first_event = (
            select(func.min(events.c.occurred_at)).where(events.c.delivery_id == deliveries.c.id).scalar_subquery()
        )
        message = select(func.max(events.c.message_id)).where(events.c.delivery_id == deliveries.c.id).scalar_subquery()
        return int(
            conn.execute(
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
        )

    def record_outcomes(self, conn: Connection, outcomes: Sequence[tuple[int, str, datetime]]) -> None:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == bindparam("b_id"))
            .values(outcome=bindparam("v_outcome"), outcome_at=bindparam("v_at")),
            [{"b_id": delivery_id, "v_outcome": outcome, "v_at": at} for delivery_id, outcome, at in outcomes],
        )

    def cancel_queued(self, conn: Connection, campaign_id: str) -> int:
        conn.execute(delete(delivery_queue).where(delivery_queue.c.campaign_id == campaign_id))
        return int(
            conn.execute(
                update(deliveries)
                .where(deliveries.c.campaign_id == campaign_id, deliveries.c.status == QUEUED)
                .values(status=CANCELLED, error="campaign cancelled", updated_at=utcnow())
            ).rowcount
        )

    def mark_stale_unknown(self, conn: Connection, campaign_id: str | None) -> int:
        where = [deliveries.c.status == SENDING]
        if campaign_id:
            where.append(deliveries.c.campaign_id == campaign_id)
        return int(
            conn.execute(
                update(deliveries)
                .where(*where)
                .values(
                    status=UNKNOWN,
                    error="the sender stopped while this email was being sent; it may have been accepted",
                    updated_at=utcnow(),
                )
            ).rowcount
        )
