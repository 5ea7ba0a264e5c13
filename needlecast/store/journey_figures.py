"""The SQL of a journey's figures: how many entries are where, by the path they took, and who is at a node
(the console's journey page and node page, the journey's report). Reads only.

Contract:
- `path_counts(conn, campaign_id)`: (node, state, path, how many entries) per distinct group, counted in the
  database (a few rows per node and path, never one per person).
- `people_at(conn, campaign_id, node, left, offset, limit)`: the entries at `node` (waiting there, or with
  `left` the ones that left the journey there), newest arrival first, with the contact's address and name as
  stored (the caller masks them), and how many there are in all. A contact erased since has no row in
  `contacts`: its address and name come back empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, select

from needlecast.store.schema import contacts
from needlecast.store.schema import journey_positions as positions

ACTIVE = "active"


def path_counts(conn: Connection, campaign_id: str) -> list[tuple[str, str, str, int]]:
    """(node, state, path, entries) of the journey, one row per distinct (node, state, path)."""
    query = (
        select(positions.c.node, positions.c.state, positions.c.path, func.count())
        .where(positions.c.campaign_id == campaign_id)
        .group_by(positions.c.node, positions.c.state, positions.c.path)
        .order_by(positions.c.node, positions.c.state, positions.c.path)
    )
    return [(str(n), str(s), str(p or ""), int(c)) for n, s, p, c in conn.execute(query)]


@dataclass(frozen=True)
class PersonAt:
    contact_id: int
    entry: int
    email: str  # "" for a contact erased since
    first_name: str
    last_name: str
    state: str
    since: datetime  # arrived at the node
    left_at: datetime | None
    reason: str


def people_at(
    conn: Connection, campaign_id: str, node: str, *, left: bool, offset: int, limit: int
) -> tuple[int, list[PersonAt]]:
    """The entries at `node` (see the module contract): how many in all, and one page of them."""
    where = [positions.c.campaign_id == campaign_id, positions.c.node == node]
    where.append(positions.c.state != ACTIVE if left else positions.c.state == ACTIVE)
    total = int(conn.execute(select(func.count()).select_from(positions).where(*where)).scalar() or 0)
    query = (
        select(
            positions.c.contact_id,
            positions.c.entry,
            contacts.c.email,
            contacts.c.first_name,
            contacts.c.last_name,
            positions.c.state,
            positions.c.since,
            positions.c.left_at,
            positions.c.reason,
        )
        .select_from(positions.outerjoin(contacts, contacts.c.id == positions.c.contact_id))
        .where(*where)
        .order_by(positions.c.since.desc(), positions.c.contact_id)
        .offset(offset)
        .limit(limit)
    )
    rows = [
        PersonAt(int(c), int(e), em or "", fn or "", ln or "", st, since, left_at, reason or "")
        for c, e, em, fn, ln, st, since, left_at, reason in conn.execute(query)
    ]
    return total, rows
