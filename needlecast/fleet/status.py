"""Who is sending: the leading scheduler, standbys, live workers, and how deep the queue is.

Contract: `fleet_status(engine, lease_seconds)` reads the `senders` rows heard from within the lease and the
queue's entries, and returns a `FleetStatus` (ids, hosts, pids, ages and counts only). `needlecast status`
prints it and `GET /healthz` includes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine

from needlecast.store import fleet
from needlecast.store.delivery import delivery_store
from needlecast.store.helpers import utcnow


@dataclass
class SenderInfo:
    id: str
    kind: str
    host: str
    pid: int
    leader: bool
    heartbeat_age_seconds: float
    up_seconds: float


@dataclass
class FleetStatus:
    leader: SenderInfo | None
    standbys: list[SenderInfo] = field(default_factory=list)
    workers: list[SenderInfo] = field(default_factory=list)
    others: list[SenderInfo] = field(default_factory=list)  # `needlecast send`, the web app's sends
    queued: int = 0
    due: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fleet_status(engine: Engine, lease_seconds: float) -> FleetStatus:
    with engine.connect() as conn:
        now = fleet.clock(conn)
        senders = fleet.live(conn, now - lease_seconds)
        queued, due = delivery_store(conn).queue_depth(conn, utcnow())
    status = FleetStatus(leader=None, queued=queued, due=due)
    for sender in senders:
        info = SenderInfo(
            sender.id,
            sender.kind,
            sender.host.split(":", 1)[0],
            sender.pid,
            sender.leader,
            round(max(0.0, now - sender.beat_at), 1),
            round(max(0.0, now - sender.started_at), 1),
        )
        if sender.kind == "scheduler":
            if sender.leader and status.leader is None:
                status.leader = info
            else:
                status.standbys.append(info)
        elif sender.kind == "worker":
            status.workers.append(info)
        else:
            status.others.append(info)
    return status
