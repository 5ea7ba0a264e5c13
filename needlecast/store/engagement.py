"""What send-time optimisation reads: every human open and click, by contact and moment.

Contract: `human_engagement(conn, since, machine_seconds)` returns a DataFrame with `contact_id` (int64) and
`at` (int64, seconds since the epoch, UTC): one row per open or click event since `since` that is linked to
a ledger row of a contact who still exists, leaving out machine opens (stored with `detail` "machine", from
SendGrid's `sg_machine_open`) and opens within `machine_seconds` of the email's sending (a proxy or a scanner
fetching the images). Read column-wise through the driver (`store.driver`): ten million events are read
without a Python object per row on PostgreSQL (COPY) and one JSON array per column on SQLite.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Connection

from needlecast.store.driver import copy_frame, fetch_columns, is_sqlite, marker, time_value


def human_engagement(conn: Connection, since: datetime, machine_seconds: float) -> pd.DataFrame:
    seconds = float(machine_seconds)
    if is_sqlite(conn):
        epoch = "CAST(strftime('%s', e.occurred_at) AS INTEGER)"
        soon = f"(julianday(e.occurred_at) - julianday(d.sent_at)) * 86400.0 < {seconds}"
    else:
        epoch = "CAST(floor(extract(epoch FROM e.occurred_at)) AS bigint)"
        soon = f"e.occurred_at < d.sent_at + make_interval(secs => {seconds})"
    rest = (
        "FROM events e JOIN deliveries d ON d.id = e.delivery_id "
        f"WHERE e.kind IN ('opened', 'clicked') AND e.occurred_at >= {marker(conn)} AND e.detail <> 'machine' "
        f"AND d.contact_id > 0 AND NOT (e.kind = 'opened' AND d.sent_at IS NOT NULL AND {soon})"
    )
    params = (time_value(conn, since),)
    if is_sqlite(conn):
        contact_ids, moments = fetch_columns(conn, ["d.contact_id", epoch], rest, params)
        return pd.DataFrame(
            {"contact_id": pd.array(contact_ids, dtype="int64"), "at": pd.array(moments, dtype="int64")}
        )
    return copy_frame(conn, ["contact_id", "at"], ["d.contact_id", epoch], rest, params, integers=("contact_id", "at"))
