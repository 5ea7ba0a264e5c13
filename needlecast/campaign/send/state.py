"""Campaign state in the store: active / paused / cancelled, when it started, and its failure streak."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from needlecast.campaign.definition.loader import is_campaign_id
from needlecast.errors import NotFound
from needlecast.store.helpers import insert_ignore, utcnow
from needlecast.store.schema import campaign_state

ACTIVE, PAUSED, CANCELLED = "active", "paused", "cancelled"


def ensure_state(conn: Connection, campaign_id: str, digest: str, now: datetime) -> dict[str, Any]:
    """The campaign's state row, created (active, started now) the first time the campaign is seen."""
    insert_ignore(
        conn,
        campaign_state,
        [
            {
                "campaign_id": campaign_id,
                "status": ACTIVE,
                "started_at": now,
                "digest": digest,
                "consecutive_failures": 0,
                "note": "",
                "updated_at": now,
            }
        ],
        ("campaign_id",),
    )
    return get_state(conn, campaign_id)


def find_state(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    """The campaign's state row, or None when it has never been scheduled (or `campaign_id` is no id at all)."""
    if not is_campaign_id(campaign_id):
        return None
    row = conn.execute(select(campaign_state).where(campaign_state.c.campaign_id == campaign_id)).mappings().first()
    return dict(row) if row is not None else None


def get_state(conn: Connection, campaign_id: str) -> dict[str, Any]:
    row = find_state(conn, campaign_id)
    if row is None:
        raise NotFound(
            f"campaign '{campaign_id}' is not scheduled yet: schedule it with `needlecast schedule sync` "
            f"(or a running scheduler), or send it with `needlecast send {campaign_id}`"
        )
    return row


def set_status(conn: Connection, campaign_id: str, status: str, note: str = "") -> None:
    values: dict[str, Any] = {"status": status, "note": note, "updated_at": utcnow()}
    if status == ACTIVE:
        values["consecutive_failures"] = 0
    changed = conn.execute(update(campaign_state).where(campaign_state.c.campaign_id == campaign_id).values(values))
    if changed.rowcount != 1:
        get_state(conn, campaign_id)  # raises NotFound, saying how to schedule it


def record_batch_result(conn: Connection, campaign_id: str, ok: bool, max_failures: int, reason: str = "") -> bool:
    """Update the failure streak; pause the campaign when it reaches `max_failures`. True when it paused."""
    if ok:
        conn.execute(
            update(campaign_state)
            .where(campaign_state.c.campaign_id == campaign_id, campaign_state.c.consecutive_failures != 0)
            .values(consecutive_failures=0, updated_at=utcnow())
        )
        return False
    conn.execute(
        update(campaign_state)
        .where(campaign_state.c.campaign_id == campaign_id)
        .values(consecutive_failures=campaign_state.c.consecutive_failures + 1, updated_at=utcnow())
    )
    streak = conn.execute(
        select(campaign_state.c.consecutive_failures).where(campaign_state.c.campaign_id == campaign_id)
    ).scalar_one()
    if max_failures and streak >= max_failures:
        set_status(conn, campaign_id, PAUSED, f"paused after {streak} failed batches in a row: {reason}"[:2000])
        conn.execute(
            update(campaign_state)
            .where(campaign_state.c.campaign_id == campaign_id)
            .values(consecutive_failures=streak)
        )
        return True
    return False
