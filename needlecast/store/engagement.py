"""What send-time optimisation reads: every human open and click, by contact and moment.

Contract: `human_engagement(conn, since, machine_seconds)` returns a DataFrame with `contact_id` (int64) and
`at` (int64, seconds since the epoch, UTC): one row per open or click event since `since` that is linked to
a ledger row of a contact who still exists, leaving out machine opens (stored with `detail` "machine", from
SendGrid's `sg_machine_open`) and opens within `machine_seconds` of the email's sending (a proxy or a scanner
fetching the images).

How: the events and the ledger are each read with a plain scan, column-wise through the driver
(`store.driver`: one JSON array per column on SQLite, COPY on PostgreSQL), and joined in numpy by delivery
id. Ten million events looked up one by one in the ledger's key cost a B-tree search each (about four times
the scan); the events are read in slices of `SLICE` ids, so no more than a slice is ever held as Python values.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from needlecast.store.driver import copy_frame, fetch_columns, is_sqlite, marker, time_value

SLICE = 500_000  # ids per read: a slice's values are Python objects for a moment, then numpy arrays


def _epoch(conn: Connection, column: str) -> str:
    if is_sqlite(conn):
        return f"CAST(strftime('%s', {column}) AS INTEGER)"
    return f"CAST(floor(extract(epoch FROM {column})) AS bigint)"


def _read(
    conn: Connection, names: list[str], columns: list[str], rest: str, params: tuple[object, ...]
) -> pd.DataFrame:
    if is_sqlite(conn):
        values = fetch_columns(conn, columns, rest, params)
        return pd.DataFrame({name: np.asarray(v, dtype="int64") for name, v in zip(names, values, strict=True)})
    return copy_frame(conn, names, columns, rest, params, integers=names)


def _slices(conn: Connection, table: str) -> range:
    """The first id of each slice of `table`'s ids."""
    low, high = conn.exec_driver_sql(f"SELECT min(id), max(id) FROM {table}").one()
    return range(int(low or 0), int(high if high is not None else -1) + 1, SLICE)


def human_engagement(conn: Connection, since: datetime, machine_seconds: float) -> pd.DataFrame:
    m = marker(conn)
    with _small_cache(conn):
        sent = pd.concat(
            [
                _read(
                    conn,
                    ["id", "contact_id", "sent"],
                    ["d.id", "d.contact_id", _epoch(conn, "d.sent_at")],
                    f"FROM deliveries d WHERE d.id >= {m} AND d.id < {m} AND d.contact_id > 0 "
                    "AND d.sent_at IS NOT NULL",
                    (start, start + SLICE),
                )
                for start in _slices(conn, "deliveries")
            ]
            or [pd.DataFrame({"id": [], "contact_id": [], "sent": []}, dtype="int64")],
            ignore_index=True,
        )
        by_id = pd.Index(sent["id"].to_numpy())
        slices = _slices(conn, "events")
        room = max(slices.stop - slices.start, 0)  # ids are never reused: at most this many events
        contacts, moments = np.empty(room, dtype="int64"), np.empty(room, dtype="int64")
        kept = 0
        for start in slices:
            events = _read(
                conn,
                ["delivery_id", "at", "opened"],
                ["e.delivery_id", _epoch(conn, "e.occurred_at"), "CASE WHEN e.kind = 'opened' THEN 1 ELSE 0 END"],
                f"FROM events e WHERE e.id >= {m} AND e.id < {m} AND e.kind IN ('opened', 'clicked') "
                f"AND e.detail <> 'machine' AND e.delivery_id IS NOT NULL AND e.occurred_at >= {m}",
                (start, start + SLICE, time_value(conn, since)),
            )
            row = by_id.get_indexer(events["delivery_id"].to_numpy())
            linked = row >= 0
            at = events["at"].to_numpy()[linked]
            row = row[linked]
            opened = events["opened"].to_numpy()[linked] == 1
            human = ~(opened & (at - sent["sent"].to_numpy()[row] < machine_seconds))
            count = int(human.sum())
            contacts[kept : kept + count] = sent["contact_id"].to_numpy()[row][human]
            moments[kept : kept + count] = at[human]
            kept += count
    return pd.DataFrame({"contact_id": contacts[:kept], "at": moments[:kept]}, copy=False)


@contextmanager
def _small_cache(conn: Connection) -> Iterator[None]:
    """SQLite: a one-pass scan gains nothing from the page cache; keep it from growing to the engine's size
    (`store.engine`) while the scan reads a whole table."""
    if not is_sqlite(conn):
        yield
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql("PRAGMA cache_size=-8192")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(before or -2000)}")
