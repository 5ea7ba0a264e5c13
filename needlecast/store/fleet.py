"""The sending fleet in the database: senders and their heartbeats, request intents, the leader flag.

Every process that sends (a worker, a scheduler, `needlecast send`) is a row of `senders` while it runs. Its
heartbeat is the database clock's time (epoch seconds), so machines with skewed clocks still agree on who
is silent. A sender silent past the lease is *expired* (state `dead`) by whoever looks first; a dead sender
can never write another intent, so it can never post another request (the fence): its intent write checks
its own row, under a share lock on PostgreSQL, in the same statement.

Contract:
- `register` -> a new sender id (16 hex); `beat` -> False once the sender was expired (it must stop);
  `retire` marks a sender that stopped cleanly.
- `record_intent` writes a request's intent (its rows) before it is posted and returns False for a fenced
  sender; `finish_claim` removes a claim's intents at the end of its dispatch (their rows were recorded
  or released by then; until then a recovery passes over an intent whose rows are no longer `sending`).
- `expire` turns senders silent past the cutoff into `dead` and returns their ids; `live` lists the others.
- `forget_ended` deletes the rows of senders that stopped or died long ago. Safe at any time: a forgotten
  sender is not alive (its claimed rows, if any were left, are recovered like any dead sender's) and
  cannot write an intent (there is no row to pass the fence).
- Claim tokens are `<sender id>/<random>` (`claim_token`), so rows in `sending` name their sender.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from needlecast.store.driver import is_sqlite, marker

ALIVE, STOPPED, DEAD = "alive", "stopped", "dead"
POSTING, UNKNOWN, ACCEPTED, LOST = "posting", "unknown", "accepted", "lost"


@dataclass(frozen=True)
class SenderRow:
    id: str
    kind: str
    host: str
    pid: int
    state: str
    leader: bool
    started_at: float
    beat_at: float
    note: str


@dataclass(frozen=True)
class RequestRow:
    id: str
    campaign_id: str
    sender_id: str
    claim_token: str
    size: int
    delivery_ids: list[int]
    state: str
    created_at: float
    settled_at: float | None


def clock(conn: Connection) -> float:
    """Now, by the database's clock (epoch seconds). SQLite lives on this machine: its clock is ours."""
    if is_sqlite(conn):
        return time.time()
    return float(conn.exec_driver_sql("SELECT extract(epoch from clock_timestamp())").scalar_one())


def claim_token(sender_id: str) -> str:
    return f"{sender_id}/{uuid.uuid4().hex[:20]}"


def sender_of(token: str) -> str | None:
    """The sender a claim token names (None for a token written before senders had ids)."""
    sender, slash, _ = token.partition("/")
    return sender if slash else None


def this_host() -> str:
    """This machine: its host name and boot id (a container shares the boot id, not the host name; a reboot
    changes the boot id, so no pid of a previous boot is mistaken for a running process)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname()}:{boot}"[:255]


def register(conn: Connection, kind: str, note: str = "") -> str:
    sender_id = uuid.uuid4().hex[:16]
    now = clock(conn)
    m = marker(conn)
    conn.exec_driver_sql(
        f"INSERT INTO senders (id, kind, host, pid, state, leader, started_at, beat_at, note) "
        f"VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})",
        (sender_id, kind, this_host(), os.getpid(), ALIVE, False, now, now, note),
    )
    return sender_id


def beat(conn: Connection, sender_id: str) -> bool:
    m = marker(conn)
    result = conn.exec_driver_sql(
        f"UPDATE senders SET beat_at = {m} WHERE id = {m} AND state = {m}", (clock(conn), sender_id, ALIVE)
    )
    return bool(result.rowcount)


def retire(conn: Connection, sender_id: str) -> None:
    m = marker(conn)
    conn.exec_driver_sql(
        f"UPDATE senders SET state = {m}, leader = {m}, beat_at = {m} WHERE id = {m} AND state = {m}",
        (STOPPED, False, clock(conn), sender_id, ALIVE),
    )


def set_leader(conn: Connection, sender_id: str, leader: bool) -> None:
    m = marker(conn)
    if leader:  # one leader: a previous one died holding the flag (its lock is gone, so is it)
        conn.exec_driver_sql(f"UPDATE senders SET leader = {m} WHERE leader = {m}", (False, True))
    conn.exec_driver_sql(f"UPDATE senders SET leader = {m} WHERE id = {m}", (leader, sender_id))


def expire_gone(conn: Connection) -> list[str]:
    """Senders of this machine whose process is gone -> `dead` at once, without waiting for the lease; their
    ids. (A pid reused by another process only delays this until the lease runs out.)"""
    m = marker(conn)
    rows = conn.exec_driver_sql(
        f"SELECT id, pid FROM senders WHERE state = {m} AND host = {m}", (ALIVE, this_host())
    ).all()
    gone = [str(sender_id) for sender_id, pid in rows if not _running(int(pid))]
    for sender_id in gone:
        conn.exec_driver_sql(
            f"UPDATE senders SET state = {m}, leader = {m} WHERE id = {m} AND state = {m}",
            (DEAD, False, sender_id, ALIVE),
        )
    return gone


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return _state(pid) != "Z"  # a zombie is a process that has died and not yet been waited for


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[0]


def cutoff(conn: Connection, lease_seconds: float) -> float:
    """The heartbeat time before which a sender is silent past the lease."""
    return clock(conn) - lease_seconds


def expire(conn: Connection, silent_since: float) -> list[str]:
    """Senders alive but silent since before `silent_since` (`cutoff`) -> `dead`; their ids."""
    m = marker(conn)
    rows = conn.exec_driver_sql(
        f"UPDATE senders SET state = {m}, leader = {m} WHERE state = {m} AND beat_at < {m} RETURNING id",
        (DEAD, False, ALIVE, silent_since),
    ).all()
    return [str(row[0]) for row in rows]


def forget_ended(conn: Connection, before: float) -> int:
    """Delete the rows of senders stopped or dead whose last heartbeat is older than `before` (the database
    clock's epoch seconds); how many."""
    m = marker(conn)
    result = conn.exec_driver_sql(f"DELETE FROM senders WHERE state <> {m} AND beat_at < {m}", (ALIVE, before))
    return int(result.rowcount)


def live(conn: Connection, silent_since: float, kind: str | None = None) -> list[SenderRow]:
    """Senders alive and heard from since `silent_since` (`cutoff`), of one `kind` when given, oldest first."""
    m = marker(conn)
    where = f"state = {m} AND beat_at >= {m}"
    params: list[Any] = [ALIVE, silent_since]
    if kind is not None:
        where += f" AND kind = {m}"
        params.append(kind)
    return [
        _sender(row)
        for row in conn.exec_driver_sql(f"{_SENDER_SELECT} WHERE {where} ORDER BY started_at", tuple(params))
    ]


_SENDER_SELECT = "SELECT id, kind, host, pid, state, leader, started_at, beat_at, note FROM senders"


def _sender(row: Sequence[Any]) -> SenderRow:
    return SenderRow(
        str(row[0]), str(row[1]), str(row[2]), int(row[3]), str(row[4]), bool(row[5]), float(row[6]), float(row[7]),
        str(row[8]),
    )  # fmt: skip


# -- request intents ---------------------------------------------------------------------------------------------


def record_intent(
    conn: Connection, request_id: str, campaign_id: str, sender_id: str, token: str, delivery_ids: Sequence[int]
) -> bool:
    """Write a request's intent, only while its sender is alive (False: the sender was expired and must not
    post). One statement (the database's clock inlined), so that on an autocommit connection it is one round
    trip. On PostgreSQL the sender's row is share-locked by the statement, so an `expire` running meanwhile
    waits for this intent and then sees it."""
    m = marker(conn)
    listed = "[" + ",".join(map(str, map(int, delivery_ids))) + "]"
    if is_sqlite(conn):
        now, lock = m, ""
        params: tuple[Any, ...] = (request_id, campaign_id, token, len(delivery_ids), listed, POSTING, time.time())
    else:
        now, lock = "extract(epoch from clock_timestamp())", " FOR SHARE"
        params = (request_id, campaign_id, token, len(delivery_ids), listed, POSTING)
    result = conn.exec_driver_sql(
        f"INSERT INTO delivery_requests (id, campaign_id, sender_id, claim_token, size, delivery_ids, state, "
        f"created_at) SELECT {m}, {m}, id, {m}, {m}, {m}, {m}, {now} FROM senders WHERE id = {m} AND state = {m}"
        f"{lock}",
        (*params, sender_id, ALIVE),
    )
    return bool(result.rowcount)


def finish_claim(conn: Connection, token: str) -> None:
    """Remove what is left of one claim's intents (the dispatch recorded or released every row of it)."""
    m = marker(conn)
    conn.exec_driver_sql(f"DELETE FROM delivery_requests WHERE claim_token = {m} AND state = {m}", (token, POSTING))


def set_request_state(conn: Connection, request_id: str, state: str) -> None:
    m = marker(conn)
    conn.exec_driver_sql(
        f"UPDATE delivery_requests SET state = {m}, settled_at = {m} WHERE id = {m}",
        (state, clock(conn), request_id),
    )


def requests_of_token(conn: Connection, token: str, state: str) -> list[RequestRow]:
    m = marker(conn)
    return _requests(conn, f"claim_token = {m} AND state = {m}", (token, state))


def requests_of_campaign(conn: Connection, campaign_id: str, state: str) -> list[RequestRow]:
    m = marker(conn)
    return _requests(conn, f"campaign_id = {m} AND state = {m}", (campaign_id, state))


def requests_by_id(conn: Connection, request_id: str) -> RequestRow | None:
    m = marker(conn)
    found = _requests(conn, f"id = {m}", (request_id,))
    return found[0] if found else None


def campaigns_with_requests(conn: Connection, state: str) -> list[str]:
    m = marker(conn)
    rows = conn.exec_driver_sql(f"SELECT DISTINCT campaign_id FROM delivery_requests WHERE state = {m}", (state,))
    return sorted(str(row[0]) for row in rows)


def _requests(conn: Connection, where: str, params: Sequence[Any]) -> list[RequestRow]:
    rows = conn.exec_driver_sql(
        "SELECT id, campaign_id, sender_id, claim_token, size, delivery_ids, state, created_at, settled_at "
        f"FROM delivery_requests WHERE {where} ORDER BY created_at",
        tuple(params),
    )
    return [
        RequestRow(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            int(r[4]),
            json.loads(r[5]),
            str(r[6]),
            float(r[7]),
            None if r[8] is None else float(r[8]),
        )
        for r in rows
    ]


def sending_tokens(conn: Connection) -> list[str]:
    """The claim tokens of every row in `sending` (a scan of the ledger: only for recovery)."""
    rows = conn.exec_driver_sql("SELECT DISTINCT claim_token FROM deliveries WHERE status = 'sending'")
    return [str(row[0]) for row in rows]
