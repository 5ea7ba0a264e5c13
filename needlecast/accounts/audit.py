"""The audit log: every change, who made it, what, on what and when. Append-only.

Contract: `record(conn, actor, action, target, **detail)` writes one entry in the caller's transaction, so
the change and its entry are committed together or not at all. Targets and details name things by id
(`campaign:spring-guide`, `contact:#42`, `user:#3`), never by a contact's address, name or concern.
`entries(conn, limit, ...)` reads them newest first.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from needlecast.accounts.roles import Actor
from needlecast.store.helpers import utcnow
from needlecast.store.schema import audit_log


def record(conn: Connection, actor: Actor, action: str, target: str, **detail: Any) -> None:
    conn.execute(
        insert(audit_log),
        {
            "at": utcnow(),
            "actor_kind": actor.kind,
            "actor": actor.name[:200],
            "action": action[:64],
            "target": target[:200],
            "detail": json.dumps(detail, default=str, sort_keys=True),
        },
    )


def entries(
    conn: Connection, limit: int = 100, *, action: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if action:
        query = query.where(audit_log.c.action.like(f"{action}%"))
    if since:
        query = query.where(audit_log.c.at >= since)
    rows = []
    for row in conn.execute(query).mappings():
        item = dict(row)
        item["detail"] = json.loads(item["detail"] or "{}")
        rows.append(item)
    return rows
