"""The queue of signup confirmation emails: rows of `signup_requests` whose `confirmation` is `queued`.

A row moves `queued -> sending -> sent | failed | skipped | unknown` (or back to `queued` when the provider
was unavailable and nothing went out). `skipped`: the address was suppressed after it signed up;
`unknown`: the request may have arrived (it is not sent again, as for the ledger).

Contract: `claim(conn, now, limit)` moves up to `limit` queued rows to `sending` in one UPDATE ... RETURNING
whose rows are re-checked as still queued (and, on PostgreSQL, picked with FOR UPDATE SKIP LOCKED), so two
senders never claim the same row: each confirmation is handed to a backend once. It returns them with the
contact's address and whether it is suppressed now. `settle(conn, states, now)` records each claimed row's
end (`{request_id: state}`), only for rows still `sending`.

`take_intake(conn, limit)` deletes up to `limit` of the signup form's received rows (`signup_intake`, oldest
first) and returns them, in one DELETE ... RETURNING (FOR UPDATE SKIP LOCKED on PostgreSQL): each row is
taken by one caller only, and comes back if the caller's transaction rolls back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, func, select, update

from needlecast.store.schema import contacts, signup_intake, signup_requests, suppressions

QUEUED, SENDING, SENT, FAILED, SKIPPED, UNKNOWN = "queued", "sending", "sent", "failed", "skipped", "unknown"


class Claimed(NamedTuple):
    request_id: int
    contact_id: int
    email: str
    first_name: str
    suppressed: bool


def claim(conn: Connection, now: datetime, limit: int) -> list[Claimed]:
    queued = signup_requests.c.confirmation == QUEUED
    picked = (
        select(signup_requests.c.id)
        .where(queued)
        .order_by(signup_requests.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer at a time anyway
    )
    rows = conn.execute(
        update(signup_requests)
        .where(signup_requests.c.id.in_(picked.scalar_subquery()), queued)
        .values(confirmation=SENDING, confirmation_at=now)
        .returning(signup_requests.c.id, signup_requests.c.contact_id, signup_requests.c.first_name)
    ).all()
    if not rows:
        return []
    people = {
        int(row.id): (str(row.email), row.suppressed is not None)
        for row in conn.execute(
            select(contacts.c.id, contacts.c.email, suppressions.c.email_hash.label("suppressed"))
            .select_from(contacts.outerjoin(suppressions, suppressions.c.email_hash == contacts.c.email_hash))
            .where(contacts.c.id.in_([int(r.contact_id) for r in rows]))
        )
    }
    claimed = []
    for row in sorted(rows, key=lambda r: int(r.id)):
        email, suppressed = people.get(int(row.contact_id), ("", True))  # a contact gone is never mailed
        claimed.append(Claimed(int(row.id), int(row.contact_id), email, str(row.first_name), suppressed))
    return claimed


def settle(conn: Connection, states: dict[int, str], now: datetime) -> None:
    if not states:
        return
    conn.execute(
        update(signup_requests)
        .where(and_(signup_requests.c.id == bindparam("request_id"), signup_requests.c.confirmation == SENDING))
        .values(confirmation=bindparam("state"), confirmation_at=now),
        [{"request_id": request_id, "state": state} for request_id, state in states.items()],
    )


def counts(conn: Connection) -> dict[str, int]:
    """How many signup requests are in each confirmation state ('' included: nothing to send)."""
    rows = conn.execute(
        select(signup_requests.c.confirmation, func.count()).group_by(signup_requests.c.confirmation)
    ).all()
    return {str(state): int(n) for state, n in rows}


def take_intake(conn: Connection, limit: int) -> list[dict[str, Any]]:
    picked = select(signup_intake.c.id).order_by(signup_intake.c.id).limit(limit).with_for_update(skip_locked=True)
    rows = conn.execute(
        signup_intake.delete().where(signup_intake.c.id.in_(picked.scalar_subquery())).returning(*signup_intake.c)
    ).mappings()
    return sorted((dict(row) for row in rows), key=lambda row: int(row["id"]))
