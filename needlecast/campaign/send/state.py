"""Campaign state: active / paused / cancelled, when it started, and its failure streak.

The rows live behind the delivery store (`DeliveryStore.campaign_state` and its neighbours); this module adds
what the rest of needlecast asks of them: a campaign id checked before it reaches the database, and a
`NotFound` that says how to schedule a campaign that has no state yet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from needlecast.campaign.definition.loader import is_campaign_id
from needlecast.errors import NotFound
from needlecast.store.delivery import CAMPAIGN_ACTIVE, CAMPAIGN_CANCELLED, CAMPAIGN_PAUSED, delivery_store

ACTIVE, PAUSED, CANCELLED = CAMPAIGN_ACTIVE, CAMPAIGN_PAUSED, CAMPAIGN_CANCELLED


def find_state(conn: Connection, campaign_id: str) -> dict[str, Any] | None:
    """The campaign's state row, or None when it has never been scheduled (or `campaign_id` is no id at all)."""
    if not is_campaign_id(campaign_id):
        return None
    return delivery_store(conn).campaign_state(conn, campaign_id)


def get_state(conn: Connection, campaign_id: str) -> dict[str, Any]:
    """The campaign's state row; `NotFound` (saying how to schedule it) when it has none."""
    row = find_state(conn, campaign_id)
    if row is None:
        raise _not_scheduled(campaign_id)
    return row


def set_status(conn: Connection, campaign_id: str, status: str, note: str = "") -> None:
    """Set the campaign's status; `NotFound` when it has never been scheduled."""
    if not is_campaign_id(campaign_id) or not delivery_store(conn).set_campaign_status(conn, campaign_id, status, note):
        raise _not_scheduled(campaign_id)


def _not_scheduled(campaign_id: str) -> NotFound:
    return NotFound(
        f"campaign '{campaign_id}' is not scheduled yet: schedule it with `needlecast schedule sync` "
        f"(or a running scheduler), or send it with `needlecast send {campaign_id}`"
    )
