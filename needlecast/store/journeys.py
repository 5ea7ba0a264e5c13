"""The SQL of journeys: positions (`journey_positions`) and saved versions (`journey_versions`).

Every change of a position is a compare-and-set: it names the node and the moment (`since`) the caller read,
so that of two sweepers that read the same position, exactly one moves it, and a sweeper that read a
position before a crash or an edit changes nothing when the position has moved since. Inserting an entry
ignores conflicts (the key (journey, contact, entry), and at most one active entry per journey and person),
so two sweepers entering the same person enter them once.

Contract:
- `enter(conn, rows)`: insert positions (dicts with every column), ignoring conflicts; how many went in.
- `due(conn, campaign_id, now, limit, nodes=...)`: active positions due at `now` at `nodes`, oldest first.
- `waiting(conn, campaign_id, nodes, contacts=...)`: active positions at `nodes` (of `contacts`; due or not).
- `active_contacts(conn, campaign_id)`: the contacts with an active position, as an int64 array.
- `move(conn, campaign_id, moves, now, choices)`: each (contact, entry, from node, from since) -> (node, due);
  how many moved (`moved`: which ones); a move from a node in `choices` is added to the entry's `path`.
- `leave(conn, campaign_id, rows, state, now)`: each (contact, entry, from node, from since, reason) leaves
  with `state` (done | exited | converted); how many left (`gone`: which ones).
- `lock_journey(conn, campaign_id)`: PostgreSQL: the journey's rounds take turns (an advisory lock held to the
  end of the transaction); SQLite: nothing.
- `hold_back(conn, campaign_id, held)`: the emails of people who left, still queued and never claimed, are
  skipped with the reason in words ("left the journey: booked"), in the caller's transaction (the exit's).
- `queued_emails(conn, campaign_id, until)`: the journey's queued emails due by `until` (the forecast's).
- `latest_entries(conn, campaign_id, contacts)`: each contact's latest entry (number, state, entered, left,
  trigger), of `contacts` only when given.
- Sequences (run as journeys): `unadopted_enrolments` lists the enrolments a sequence made before it ran
  as a journey and that have no position yet; `record_enrolments` / `record_exits` keep the enrolments
  table (what `needlecast plan` and the reports read of a sequence) in step with the positions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from needlecast.store import driver
from needlecast.store.delivery import QUEUED, SKIPPED, delivery_store
from needlecast.store.driver import ids_from_text
from needlecast.store.helpers import utcnow
from needlecast.store.schema import (
    appointments,
    deliveries,
    delivery_queue,
    enrolments,
    events,
    journey_versions,
    signup_requests,
)
from needlecast.store.schema import journey_positions as positions

ACTIVE, DONE, EXITED, CONVERTED = "active", "done", "exited", "converted"
STATES = (ACTIVE, DONE, EXITED, CONVERTED)
_CHUNK = 500  # rows per multi-row insert (11 columns: under SQLite's bound-variable limit)


@dataclass(frozen=True, slots=True)  # a sweep may hold a million: slots halve their memory
class Position:
    contact_id: int
    entry: int
    node: str
    since: datetime
    due_at: datetime
    entered_at: datetime
    trigger_at: datetime | None = None


def enter(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert positions, ignoring any that conflict (already entered, or already active); how many went in."""
    return len(entered(conn, rows))


def entered(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """`enter`, returning the contacts whose position went in."""
    maker = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    added: list[int] = []
    for start in range(0, len(rows), _CHUNK):
        statement = (
            maker(positions)
            .values(list(rows[start : start + _CHUNK]))
            .on_conflict_do_nothing()
            .returning(positions.c.contact_id)  # psycopg reports no row count for a multi-row insert
        )
        added += [int(r[0]) for r in conn.execute(statement)]
    return added


_COLUMNS = (
    positions.c.contact_id,
    positions.c.entry,
    positions.c.node,
    positions.c.since,
    positions.c.due_at,
    positions.c.entered_at,
    positions.c.trigger_at,
)


_NAMES = "contact_id, entry, node, since, due_at, entered_at, trigger_at"


def due(conn: Connection, campaign_id: str, now: datetime, limit: int, *, nodes: Sequence[str]) -> list[Position]:
    """Up to `limit` active positions of the journey due at `now` at one of `nodes` (the journey's: a position
    at a node an edit removed waits for `needlecast journey check`), the earliest due first. Ties come in the
    index's order: ordering them by contact too made the database read and sort every due position to hand
    out each round (at 300,000 due, each of a sweep's rounds read all 300,000)."""
    mark = driver.marker(conn)
    inner = (
        f"SELECT {_NAMES} FROM journey_positions WHERE campaign_id = {mark} AND state = 'active'"
        f" AND due_at <= {mark} AND {driver.values_in(conn, 'node')} ORDER BY due_at LIMIT {mark}"
    )
    params = (campaign_id, driver.time_value(conn, now), driver.values_value(conn, nodes), limit)
    return _read(conn, f"FROM ({inner}) AS due_now", params)


_SLICE = 100_000  # positions read at once: a million read in one piece took 650 MB while they were decoded


def waiting(
    conn: Connection, campaign_id: str, nodes: Sequence[str] | None = None, *, contacts: Iterable[int] | None = None
) -> list[Position]:
    """The journey's active positions (at `nodes` when given; of `contacts` when given), due or not, by
    contact (at most one active position each), read in slices of the primary key's order."""
    mark = driver.marker(conn)
    where = f"campaign_id = {mark} AND state = 'active' AND contact_id > {mark}"
    params: tuple[Any, ...] = (campaign_id,)
    if nodes is not None:
        where += f" AND {driver.values_in(conn, 'node')}"
        params += (driver.values_value(conn, nodes),)
    if contacts is not None:
        where += f" AND {driver.ids_in(conn, 'contact_id')}"
        params += (driver.ids_value(conn, contacts),)
    found: list[Position] = []
    after = -1
    while True:
        inner = f"SELECT {_NAMES} FROM journey_positions WHERE {where} ORDER BY contact_id LIMIT {mark}"
        part = _read(conn, f"FROM ({inner}) AS part", (params[0], after, *params[1:], _SLICE))
        found += part
        if len(part) < _SLICE:
            return found
        after = part[-1].contact_id


def active_contacts(conn: Connection, campaign_id: str) -> np.ndarray:
    """The contacts with an active position in the journey (at most one each), as an int64 array."""
    mark = driver.marker(conn)
    rest = f"FROM journey_positions WHERE campaign_id = {mark} AND state = 'active'"
    return driver.fetch_ids(conn, "contact_id", rest, (campaign_id,))


def _read(conn: Connection, rest: str, params: Sequence[Any]) -> list[Position]:
    """The positions of `SELECT <the columns> rest`, read through the driver (`store.driver.fetch_rows`): a
    million read through SQLAlchemy's row processing cost a sweep about twenty seconds."""
    at = _sqlite_read if driver.is_sqlite(conn) else _postgres_read
    return [
        Position(int(c), int(e), n, at(s), at(d), at(en), None if t is None else at(t))
        for c, e, n, s, d, en, t in driver.fetch_rows(conn, _NAMES.split(", "), rest, params)
    ]


@lru_cache(maxsize=65536)  # positions share a few moments (those of a sweep, an import, an entry)
def _sqlite_read(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _postgres_read(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _guard() -> Any:
    return and_(
        positions.c.campaign_id == bindparam("b_campaign"),
        positions.c.contact_id == bindparam("b_contact"),
        positions.c.entry == bindparam("b_entry"),
        positions.c.node == bindparam("b_node"),
        positions.c.since == bindparam("b_since"),
        positions.c.state == ACTIVE,
    )


def _params(campaign_id: str, position: Position) -> dict[str, Any]:
    return {
        "b_campaign": campaign_id,
        "b_contact": position.contact_id,
        "b_entry": position.entry,
        "b_node": position.node,
        "b_since": position.since,
    }


# The guard of `_guard` in plain SQL, for the sweep's bulk moves and leaves: SQLAlchemy's processing of each
# row's parameters cost a million-person sweep more than a minute of CPU, the database's work a few seconds.
_GUARD_SQL = "campaign_id = ? AND contact_id = ? AND entry = ? AND node = ? AND since = ? AND state = 'active'"


def _moment(conn: Connection) -> Callable[[datetime], Any]:
    """An aware timestamp as the driver takes it, as `UtcDateTime` binds it (`store.driver`)."""
    return driver.sqlite_time if driver.is_sqlite(conn) else driver.postgres_time


def _sqlite_set_many(conn: Connection, sql: str, rows: list[tuple[Any, ...]]) -> set[tuple[int, int]]:
    """SQLite: run `sql` (an UPDATE ending in `_GUARD_SQL`) once per row, straight on the driver; which
    positions (contact, entry: each row's guard) it changed. One `executemany` when every row changed (the
    usual case: the count says so); else, undone to a savepoint, row by row, to learn which ones did."""
    if not conn.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
        # The driver begins a transaction only at a write: a savepoint before any would begin one itself, and
        # releasing it would commit the round's first writes alone.
        conn.exec_driver_sql("BEGIN")
    conn.exec_driver_sql("SAVEPOINT journey_rows")
    if conn.exec_driver_sql(sql, rows).rowcount == len(rows):
        conn.exec_driver_sql("RELEASE journey_rows")
        return {(int(row[-4]), int(row[-3])) for row in rows}
    conn.exec_driver_sql("ROLLBACK TO journey_rows")
    changed = {(int(row[-4]), int(row[-3])) for row in rows if conn.exec_driver_sql(sql, row).rowcount}
    conn.exec_driver_sql("RELEASE journey_rows")
    return changed


def _pg_set_many(
    conn: Connection,
    update_sql: str,
    campaign_id: str,
    targets: Sequence[tuple[Position, tuple[str, ...]]],
    columns: Sequence[str],
    params: tuple[Any, ...],
) -> set[tuple[int, int]]:
    """PostgreSQL: `update_sql` (an `UPDATE journey_positions AS p SET ...` reading `v.<column>`) for every
    position as read, each with its values of `columns` ("name type"), as ONE statement joined to the
    positions through `unnest` of array literals, under the compare-and-set guard; how many changed.

    One statement instead of one per position (`executemany`, even pipelined): psycopg's per-row work and
    the server's per-statement work cost a million-person sweep tens of seconds."""
    names = [column.split()[0] for column in columns]
    arrays = [
        _pg_array(str(p.contact_id) for p, _ in targets),
        _pg_array(str(p.entry) for p, _ in targets),
        _pg_array(_pg_quoted(p.node) for p, _ in targets),
        _pg_array(_pg_quoted(_pg_time(p.since)) for p, _ in targets),
        *(_pg_array(_pg_quoted(values[i]) for _, values in targets) for i in range(len(columns))),
    ]
    types = ["bigint", "integer", "text", "timestamptz", *(column.split()[1] for column in columns)]
    unnest = ", ".join(f"CAST(%s AS {kind}[])" for kind in types)
    sql = (
        f"{update_sql} FROM unnest({unnest}) AS v(contact_id, entry, from_node, from_since, {', '.join(names)})"
        " WHERE p.campaign_id = %s AND p.contact_id = v.contact_id AND p.entry = v.entry"
        " AND p.node = v.from_node AND p.since = v.from_since AND p.state = 'active'"
    )
    changed = conn.exec_driver_sql(f"{sql} RETURNING p.contact_id, p.entry", (*params, *arrays, campaign_id))
    return {(int(c), int(e)) for c, e in changed}


def _pg_time(moment: datetime) -> str:
    """An aware moment as the text of a PostgreSQL `timestamptz` (UTC, to the microsecond)."""
    return f"{driver.sqlite_time(moment)}+00"


def _pg_quoted(value: str) -> str:
    """A text as an element of an array literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pg_array(elements: Iterable[str]) -> str:
    return "{" + ",".join(elements) + "}"


def lock_journey(conn: Connection, campaign_id: str) -> None:
    """PostgreSQL: hold the journey's sweep lock until the transaction ends (an advisory lock), so that two
    sweepers of one journey take their rounds in turn. Each round's moves are one statement whose row order
    is the plan's, so two rounds at once could lock the same rows in different orders and deadlock; taken in
    turn, the second reads what the first committed. SQLite: nothing (its writers already take turns)."""
    if not driver.is_sqlite(conn):
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"needlecast.journey:{campaign_id}",))


def move(
    conn: Connection,
    campaign_id: str,
    moves: Sequence[tuple[Position, str, datetime]],
    now: datetime,
    choices: Collection[str] = (),
) -> int:
    """Move each position (as read) to its node, due at its moment, arriving `now`; one statement for all.
    A position that moved meanwhile (another sweeper, an edit) is left alone. A move from one of the nodes
    `choices` (a branch, a split, a wait-until) adds `node>target;` to the entry's `path` (what the journey's
    page and report count paths from). Returns how many moved."""
    paths = [_choice(p.node, node, choices) for p, node, _ in moves]
    return len(moved(conn, campaign_id, moves, now, paths))


def moved(
    conn: Connection,
    campaign_id: str,
    moves: Sequence[tuple[Position, str, datetime]],
    now: datetime,
    paths: Sequence[str],
) -> set[tuple[int, int]]:
    """`move`, each position's `path` extended by its text in `paths` (the choices that took it there, in
    order: `node>target;` each), returning which positions (contact, entry) moved."""
    if not moves:
        return set()
    if not driver.is_sqlite(conn):
        targets = [(p, (node, _pg_time(when), path)) for (p, node, when), path in zip(moves, paths, strict=True)]
        sql = "UPDATE journey_positions AS p SET node = v.node, since = %s, due_at = v.due_at, path = p.path || v.path"
        columns = ("node text", "due_at timestamptz", "path text")
        return _pg_set_many(conn, sql, campaign_id, targets, columns, (_pg_time(now),))
    at = _moment(conn)
    arrived = at(now)
    rows = [
        (node, arrived, at(when), path, campaign_id, p.contact_id, p.entry, p.node, at(p.since))
        for (p, node, when), path in zip(moves, paths, strict=True)
    ]
    sql = f"UPDATE journey_positions SET node = ?, since = ?, due_at = ?, path = path || ? WHERE {_GUARD_SQL}"
    return _sqlite_set_many(conn, sql, rows)


def _choice(node: str, target: str, choices: Collection[str]) -> str:
    """The token a move adds to the entry's `path`: `node>target;` from a choice node, else nothing."""
    return f"{node}>{target};" if node in choices else ""


def reschedule(conn: Connection, campaign_id: str, moves: Sequence[tuple[Position, datetime]]) -> int:
    """A new due moment for positions still where they were read (a changed delay, a check's repair)."""
    if not moves:
        return 0
    statement = update(positions).where(_guard()).values(due_at=bindparam("b_due"))
    params = [{**_params(campaign_id, p), "b_due": when} for p, when in moves]
    return _changed(conn.execute(statement, params).rowcount, params)


def leave(conn: Connection, campaign_id: str, rows: Sequence[tuple[Position, str]], state: str, now: datetime) -> int:
    """Each position (as read) leaves the journey with `state` and its reason; how many left."""
    return len(gone(conn, campaign_id, rows, state, now))


def gone(
    conn: Connection,
    campaign_id: str,
    rows: Sequence[tuple[Position, str]],
    state: str,
    now: datetime,
    *,
    arrived: Sequence[Position] | None = None,
    paths: Sequence[str] | None = None,
) -> set[tuple[int, int]]:
    """`leave`, returning which positions (contact, entry) left. With `arrived` (one per row: where the sweep
    took the position in memory before it left, see `campaign.journeys.sweeper`), each leaves from that node
    and arrival instead of those it was read at, its `path` extended by its text in `paths` (the choices on
    the way, as `moved`)."""
    if not rows:
        return set()
    assert state in (DONE, EXITED, CONVERTED)
    at_end = list(arrived) if arrived is not None else [p for p, _ in rows]
    added = list(paths) if paths is not None else [""] * len(rows)
    if not driver.is_sqlite(conn):
        moment = _pg_time(now)
        sql = (
            "UPDATE journey_positions AS p SET state = %s, left_at = %s, due_at = %s, reason = v.reason,"
            " node = v.node, since = v.since, path = p.path || v.path"
        )
        targets = [
            (p, (reason[:120], a.node, _pg_time(a.since), path))
            for (p, reason), a, path in zip(rows, at_end, added, strict=True)
        ]
        columns = ("reason text", "node text", "since timestamptz", "path text")
        return _pg_set_many(conn, sql, campaign_id, targets, columns, (state, moment, moment))
    at = _moment(conn)
    left = at(now)
    params = [
        (state, left, left, r[:120], a.node, at(a.since), path, campaign_id, p.contact_id, p.entry, p.node, at(p.since))
        for (p, r), a, path in zip(rows, at_end, added, strict=True)
    ]
    sql = (
        "UPDATE journey_positions SET state = ?, left_at = ?, due_at = ?, reason = ?, node = ?, since = ?,"
        f" path = path || ? WHERE {_GUARD_SQL}"
    )
    return _sqlite_set_many(conn, sql, params)


def left_now(
    conn: Connection, campaign_id: str, rows: Sequence[Position], state: str, now: datetime
) -> set[tuple[int, int]]:
    """Which of these positions (contact, entry) left with `state` at `now` (what `leave` changed)."""
    if not rows:
        return set()
    mark = driver.marker(conn)
    rest = (
        f"FROM journey_positions WHERE campaign_id = {mark} AND state = {mark} AND left_at = {mark}"
        f" AND {driver.ids_in(conn, 'contact_id')}"
    )
    params = (campaign_id, state, driver.time_value(conn, now), driver.ids_value(conn, {p.contact_id for p in rows}))
    found = {(int(c), int(e)) for c, e in driver.fetch_rows(conn, ["contact_id", "entry"], rest, params)}
    return found & {(p.contact_id, p.entry) for p in rows}


def _changed(rowcount: int, params: Sequence[object]) -> int:
    """An executemany's row count (a driver that cannot count many reports -1: then at most all of them)."""
    return rowcount if rowcount >= 0 else len(params)


@dataclass(frozen=True, slots=True)
class LatestEntry:
    contact_id: int
    entry: int
    state: str
    entered_at: datetime
    left_at: datetime | None
    trigger_at: datetime | None


def latest_entries(conn: Connection, campaign_id: str, contacts: Iterable[int] | None = None) -> dict[int, LatestEntry]:
    """Each contact's latest entry into the journey (of `contacts` only, when given), by contact id (read
    through the driver, as `_read`)."""
    mark = driver.marker(conn)
    params: tuple[Any, ...] = (campaign_id,)
    only = ""
    if contacts is not None:
        only = f" AND {driver.ids_in(conn, 'contact_id')}"
        params += (driver.ids_value(conn, contacts),)
    rest = (
        "FROM journey_positions AS p JOIN (SELECT contact_id, max(entry) AS entry FROM journey_positions"
        f" WHERE campaign_id = {mark}{only} GROUP BY contact_id) AS last ON p.campaign_id = {mark}"
        " AND p.contact_id = last.contact_id AND p.entry = last.entry"
    )
    columns = ["p.contact_id", "p.entry", "p.state", "p.entered_at", "p.left_at", "p.trigger_at"]
    at = _sqlite_read if driver.is_sqlite(conn) else _postgres_read
    return {
        int(c): LatestEntry(
            int(c), int(e), state, at(en), None if left is None else at(left), None if t is None else at(t)
        )
        for c, e, state, en, left, t in driver.fetch_rows(conn, columns, rest, (*params, campaign_id))
    }


def counts_by_node(conn: Connection, campaign_id: str) -> dict[tuple[str, str], int]:
    """(node, state) -> how many positions (of every entry) are there."""
    query = (
        select(positions.c.node, positions.c.state, func.count())
        .where(positions.c.campaign_id == campaign_id)
        .group_by(positions.c.node, positions.c.state)
    )
    return {(r[0], r[1]): int(r[2]) for r in conn.execute(query)}


def overdue(conn: Connection, campaign_id: str, before: datetime) -> list[Position]:
    """Active positions whose due moment is earlier than `before` (a sweep should have moved them)."""
    query = select(*_COLUMNS).where(
        positions.c.campaign_id == campaign_id, positions.c.state == ACTIVE, positions.c.due_at < before
    )
    return [Position(int(r[0]), int(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in conn.execute(query)]


def record_version(
    conn: Connection, campaign_id: str, digest: str, actor: str, moves: dict[str, str], source: str, now: datetime
) -> int:
    """Keep a saved version of the journey's file; its number (1 for the first)."""
    latest = conn.execute(
        select(func.max(journey_versions.c.version)).where(journey_versions.c.campaign_id == campaign_id)
    ).scalar()
    version = int(latest or 0) + 1
    conn.execute(
        insert(journey_versions).values(
            campaign_id=campaign_id,
            version=version,
            digest=digest,
            saved_at=now,
            actor=actor[:200],
            moves=json.dumps(moves, sort_keys=True),
            source=source,
        )
    )
    return version


def versions(conn: Connection, campaign_id: str) -> list[dict[str, Any]]:
    """The journey's saved versions, newest first (without their source)."""
    query = (
        select(
            journey_versions.c.version,
            journey_versions.c.digest,
            journey_versions.c.saved_at,
            journey_versions.c.actor,
            journey_versions.c.moves,
        )
        .where(journey_versions.c.campaign_id == campaign_id)
        .order_by(journey_versions.c.version.desc())
    )
    return [dict(r._mapping) for r in conn.execute(query)]


def engagements(
    conn: Connection, campaign_id: str, node: str, kind: str, link: str = ""
) -> dict[tuple[int, int], datetime]:
    """(contact, entry) -> the first provider event of `kind` (`opened`: never a machine open; `clicked`: on a
    URL containing `link` when given) for the email of send node `node`, of any entry."""
    step = deliveries.c.step_id
    query = (
        select(deliveries.c.contact_id, step, func.min(events.c.occurred_at))
        .select_from(events.join(deliveries, deliveries.c.id == events.c.delivery_id))
        .where(
            deliveries.c.campaign_id == campaign_id,
            or_(step == node, step.like(f"{node}#%")),
            events.c.kind == kind,
        )
        .group_by(deliveries.c.contact_id, step)
    )
    if kind == "opened":
        query = query.where(events.c.detail != "machine")
    if link:
        query = query.where(events.c.detail.contains(link, autoescape=True))
    found = {}
    for contact_id, step_id, first in conn.execute(query):
        entry = int(step_id.split("#", 1)[1]) if "#" in step_id else 1
        found[(int(contact_id), entry)] = first
    return found


def future_appointments(conn: Connection, now: datetime) -> set[int]:
    """The contacts with an open appointment that starts after `now`."""
    query = select(appointments.c.contact_id).where(
        appointments.c.open.is_(True), appointments.c.starts_at > now, appointments.c.contact_id.is_not(None)
    )
    return {int(r[0]) for r in conn.execute(query)}


def confirmed_signups(conn: Connection, since: datetime) -> dict[int, datetime]:
    """contact -> their latest signup confirmation at or after `since`."""
    query = (
        select(signup_requests.c.contact_id, func.max(signup_requests.c.confirmed_at))
        .where(signup_requests.c.confirmed_at >= since)
        .group_by(signup_requests.c.contact_id)
    )
    return {int(r[0]): r[1] for r in conn.execute(query)}


def unadopted_enrolments(conn: Connection, campaign_id: str) -> list[tuple[int, datetime, datetime | None, str]]:
    """The sequence's enrolments (contact, enrolled, exited, reason) that have no position in it yet."""
    has_position = (
        select(positions.c.contact_id)
        .where(positions.c.campaign_id == campaign_id, positions.c.contact_id == enrolments.c.contact_id)
        .exists()
    )
    query = select(
        enrolments.c.contact_id, enrolments.c.enrolled_at, enrolments.c.exited_at, enrolments.c.exit_reason
    ).where(enrolments.c.campaign_id == campaign_id, ~has_position)
    return [(int(r[0]), r[1], r[2], r[3] or "") for r in conn.execute(query)]


def record_enrolments(conn: Connection, campaign_id: str, contact_ids: Sequence[int], now: datetime) -> None:
    """An enrolment row for each contact that entered the sequence now (none has one: a sequence is entered
    once, and earlier enrolments were adopted as positions first)."""
    rows = [
        {"campaign_id": campaign_id, "contact_id": c, "enrolled_at": now, "exited_at": None, "exit_reason": ""}
        for c in contact_ids
    ]
    maker = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    for start in range(0, len(rows), _CHUNK):
        conn.execute(maker(enrolments).values(rows[start : start + _CHUNK]).on_conflict_do_nothing())


def record_exits(conn: Connection, campaign_id: str, reasons: dict[int, str], now: datetime) -> None:
    """The sequence's enrolments of these contacts ended now, each with its reason."""
    if not reasons:
        return
    statement = (
        update(enrolments)
        .where(
            enrolments.c.campaign_id == campaign_id,
            enrolments.c.contact_id == bindparam("b_contact"),
            enrolments.c.exited_at.is_(None),
        )
        .values(exited_at=now, exit_reason=bindparam("b_reason"))
    )
    conn.execute(statement, [{"b_contact": c, "b_reason": r[:64]} for c, r in reasons.items()])


def hold_back(conn: Connection, campaign_id: str, held: Sequence[tuple[int, Sequence[str], str]]) -> int:
    """Hold back the journey's emails still queued (never claimed) for each (contact, ledger step ids, reason):
    they become `skipped` with the reason, and leave the delivery queue, in the caller's transaction; how many.

    Never racing a sender: a row a sender claimed is `sending` (or later) and is left alone. The queue entries
    listing the rows are taken first (a sender takes an entry before its rows, so taking entries before rows
    keeps the lock order a sender keeps); the rest of those entries' rows, still queued, are listed again.
    """
    wanted = {(contact_id, step): reason for contact_id, steps, reason in held for step in steps}
    if not wanted:
        return 0
    contacts = sorted({c for c, _ in wanted})
    found: list[tuple[int, datetime, str]] = []
    for start in range(0, len(contacts), _CHUNK):
        query = select(deliveries.c.id, deliveries.c.contact_id, deliveries.c.step_id, deliveries.c.due_at).where(
            deliveries.c.campaign_id == campaign_id,
            deliveries.c.status == QUEUED,
            deliveries.c.contact_id.in_(contacts[start : start + _CHUNK]),
        )
        found += [(int(i), d, wanted[(int(c), s)]) for i, c, s, d in conn.execute(query) if (int(c), s) in wanted]
    if not found:
        return 0
    listed: list[int] = []
    dues = sorted({d for _, d, _ in found})
    for start in range(0, len(dues), _CHUNK):
        taken = conn.execute(
            delete(delivery_queue)
            .where(delivery_queue.c.campaign_id == campaign_id)
            .where(delivery_queue.c.due_at.in_(dues[start : start + _CHUNK]))
            .returning(delivery_queue.c.delivery_ids)
        )
        for (value,) in taken:
            listed += ids_from_text(value) if isinstance(value, str) else [int(v) for v in value]
    statement = (
        update(deliveries)
        .where(deliveries.c.id == bindparam("b_id"), deliveries.c.status == QUEUED)
        .values(status=SKIPPED, error=bindparam("b_reason"), updated_at=utcnow())
    )
    params = [{"b_id": row_id, "b_reason": reason} for row_id, _, reason in found]
    held_back = _changed(conn.execute(statement, params).rowcount, params)
    rest = sorted(set(listed) - {row_id for row_id, _, _ in found})
    if rest:  # still queued: listed again (their entries were taken above); ours are skipped now
        delivery_store(conn).requeue(conn, {}, ids=rest, only_from=QUEUED)
    return held_back


def queued_emails(conn: Connection, campaign_id: str, until: datetime) -> list[tuple[str, datetime, int]]:
    """The journey's emails still queued in the ledger and due by `until`: (step id, due, how many)."""
    query = (
        select(deliveries.c.step_id, deliveries.c.due_at, func.count())
        .where(deliveries.c.campaign_id == campaign_id, deliveries.c.status == QUEUED, deliveries.c.due_at <= until)
        .group_by(deliveries.c.step_id, deliveries.c.due_at)
    )
    return [(str(r[0]), r[1], int(r[2])) for r in conn.execute(query)]
