"""Read models of the sending side: who is sending (`needlecast status`), and what waits in the queue.

Contract: `sending_fleet` is the leading scheduler, its standbys and the live workers with their heartbeat
ages, judged against the workspace's `[delivery] lease_seconds`, and the emails queued and due;
`queued_by_due` is one campaign's queued emails by due time (UTC), earliest first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from needlecast.config import Workspace
from needlecast.fleet.status import FleetStatus, fleet_status
from needlecast.store.delivery import delivery_store

__all__ = ["FleetStatus", "queued_by_due", "sending_fleet"]


def sending_fleet(engine: Engine, workspace: Workspace) -> FleetStatus:
    """Who is sending now, and how much is queued and due."""
    return fleet_status(engine, workspace.settings.delivery.lease_seconds)


def queued_by_due(engine: Engine, campaign_id: str) -> list[tuple[datetime, int]]:
    """A campaign's queued emails as (due time, how many), earliest first; empty when none waits."""
    with engine.connect() as conn:
        return list(delivery_store(conn).queued_by_due(conn, campaign_id))
