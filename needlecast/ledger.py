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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, select, update

from needlecast.store.bulk import bulk_insert_rows
from needlecast.store.helpers import chunked, utcnow
from needlecast.store.schema import deliveries, events

QUEUED, SENDING, SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED = (
    "queued", "sending", "sent", "failed", "unknown", "skipped", "cancelled")
STATUSES = (QUEUED, SENDING, SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED)
_IN_CHUNK = 5000


@dataclass(frozen=True)
class Claimed:
    id: int
    contact_id: int
    step_id: str
    variant: str
    arm: str


ENQUEUE_COLUMNS = ("campaign_id", "step_id", "contact_id", "segment", "variant", "arm", "due_at", "status", "error")


def enqueue_columns(conn: Connection, columns: dict[str, Sequence[Any]]) -> int:
    """Insert planned emails, one list per name in ENQUEUE_COLUMNS (status `queued`, or `skipped` with its
    reason in `error`); existing (campaign, step, contact) keys are left alone. Returns how many were new."""
    total = len(columns["contact_id"])
    if not total:
        return 0
    now = utcnow()
    constants = {"claimed_at": None, "claim_token": "", "sent_at": None, "message_id": "", "attempts": 0,
                 "created_at": now, "updated_at": now}
    keys = set(zip(columns["campaign_id"], columns["step_id"], strict=True))
    before = _count_keys(conn, keys)
    names = [*ENQUEUE_COLUMNS, *constants]
    for start in range(0, total, 20_000):
        stop = start + 20_000
        chunk = [columns[name][start:stop] for name in ENQUEUE_COLUMNS]
        bulk_insert_rows(conn, deliveries, names,
                         [(*values, *constants.values()) for values in zip(*chunk, strict=True)],
                         on_conflict_do_nothing=("campaign_id", "step_id", "contact_id"))
    return _count_keys(conn, keys) - before


def _count_keys(conn: Connection, keys: Iterable[tuple[str, str]]) -> int:
    total = 0
    for campaign_id, step_id in keys:
        total += conn.execute(select(func.count()).select_from(deliveries).where(
            deliveries.c.campaign_id == campaign_id, deliveries.c.step_id == step_id)).scalar_one()
    return total


def claim(conn: Connection, campaign_id: str, now: datetime, limit: int, token: str) -> list[Claimed]:
    """Move up to `limit` due queued rows of a campaign to `sending` and return them."""
    # In the order of the partial index of queued rows (campaign, due_at), so the database stops after
    # `limit` rows instead of sorting every due row on each claim.
    due = (select(deliveries.c.id)
           .where(deliveries.c.campaign_id == campaign_id, deliveries.c.status == QUEUED, deliveries.c.due_at <= now)
           .order_by(deliveries.c.due_at).limit(limit))
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    statement = (update(deliveries).where(deliveries.c.id.in_(due.scalar_subquery()))
                 .values(status=SENDING, claimed_at=now, claim_token=token, updated_at=now)
                 .returning(deliveries.c.id, deliveries.c.contact_id, deliveries.c.step_id, deliveries.c.variant,
                            deliveries.c.arm))
    rows = [Claimed(*row) for row in conn.execute(statement)]
    rows.sort(key=lambda r: r.id)
    return rows


def _set(conn: Connection, ids: Sequence[int], only_from: str, **values: Any) -> int:
    changed = 0
    values.setdefault("updated_at", utcnow())
    for chunk in chunked(ids, _IN_CHUNK):
        changed += conn.execute(update(deliveries).where(deliveries.c.id.in_(chunk), deliveries.c.status == only_from)
                                .values(**values)).rowcount
    return changed


def mark_sent(conn: Connection, ids: Sequence[int], message_id: str, at: datetime) -> int:
    return _set(conn, ids, SENDING, status=SENT, message_id=message_id[:100], sent_at=at, error="")


def mark_failed(conn: Connection, ids: Sequence[int], error: str) -> int:
    return _set(conn, ids, SENDING, status=FAILED, error=error[:2000], attempts=deliveries.c.attempts + 1)


def mark_unknown(conn: Connection, ids: Sequence[int], error: str) -> int:
    return _set(conn, ids, SENDING, status=UNKNOWN, error=error[:2000], attempts=deliveries.c.attempts + 1)


def release(conn: Connection, ids: Sequence[int], error: str) -> int:
    """Back to `queued` (the provider certainly did not take them): a later run resumes them."""
    return _set(conn, ids, SENDING, status=QUEUED, error=error[:2000], claim_token="",
                attempts=deliveries.c.attempts + 1)


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
        changed += _set(conn, ids, SENDING, status=SKIPPED, error=reason)
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
