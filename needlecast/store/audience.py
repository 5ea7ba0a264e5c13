"""Reading the contacts for segmenting: the audience as columns, fast on each database.

- SQLite: each column comes back as one JSON array (`store.driver.fetch_columns`).
- PostgreSQL: the rows are streamed with COPY as CSV into pandas' C parser (`store.driver.copy_frame`).

Contract: `read_contacts(conn, names, ids=...)` returns a DataFrame with one row per contact (in id
order, only ids in [low, high) when `ids` is given), the columns `names` of `contacts` plus `suppressed`
(the address's suppression reason, or None). Attributes stay JSON text; booleans come back as 0/1 or
booleans (the caller casts); timestamps as text. `read_lists(conn, ids=...)` returns each contact's lists.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import Connection, func, select, text

from needlecast.store.driver import (
    copy_frame,
    fetch_columns,
    fetch_rows,
    is_sqlite,
    marker,
    values_in,
    values_value,
)
from needlecast.store.schema import contact_events, contacts

BOOLEAN_COLUMNS = ("marketing_consent", "concern_consent")
_NO_PARAMS: tuple[int, ...] = ()


def read_contacts(conn: Connection, names: tuple[str, ...], *, ids: tuple[int, int] | None = None) -> pd.DataFrame:
    # attributes as JSON text on both databases (PostgreSQL's driver would decode every one)
    as_text = "" if is_sqlite(conn) else "::text"
    columns = [f"c.{name}{as_text if name == 'attributes' else ''}" for name in names]
    m = marker(conn)
    within, params = "", _NO_PARAMS
    if ids is not None:
        within, params = f"WHERE c.id >= {m} AND c.id < {m} ", (int(ids[0]), int(ids[1]))
    rest = f"FROM contacts c LEFT JOIN suppressions s ON s.email_hash = c.email_hash {within}ORDER BY c.id"
    if is_sqlite(conn):
        values = fetch_columns(conn, [*columns, "s.reason"], rest, params)
        return pd.DataFrame(dict(zip([*names, "suppressed"], values, strict=True)))
    # COPY as CSV: no NULLs (only the suppression reason can be missing), booleans as 0/1
    cast = [
        f"{column}::int" if name in BOOLEAN_COLUMNS else column for name, column in zip(names, columns, strict=True)
    ]
    frame = copy_frame(
        conn,
        [*names, "suppressed"],
        [*cast, "coalesce(s.reason, '')"],
        rest,
        params,
        integers=("id", *(name for name in BOOLEAN_COLUMNS if name in names)),
    )
    frame["suppressed"] = frame["suppressed"].where(frame["suppressed"] != "")
    return frame


def read_lists(conn: Connection, *, ids: tuple[int, int] | None = None) -> dict[int, set[str]]:
    """The lists of every contact on one (of those with ids in [low, high))."""
    m = marker(conn)
    within, params = "", _NO_PARAMS
    if ids is not None:
        within, params = f" WHERE contact_id >= {m} AND contact_id < {m}", (int(ids[0]), int(ids[1]))
    by_contact: dict[int, set[str]] = {}
    for contact_id, name in zip(
        *fetch_columns(conn, ("contact_id", "list_name"), f"FROM contact_lists{within}", params), strict=True
    ):
        by_contact.setdefault(contact_id, set()).add(name)
    return by_contact


def contact_ids_by_email(conn: Connection, emails: list[str]) -> dict[str, int]:
    """The ids of the contacts with these addresses (one bound parameter however many there are)."""
    rows = fetch_rows(
        conn, ("email", "id"), f"FROM contacts WHERE {values_in(conn, 'email')}", (values_value(conn, emails),)
    )
    return {str(email): int(contact_id) for email, contact_id in rows}


def read_last_events(
    conn: Connection, types: tuple[str, ...] | None, *, ids: tuple[int, int] | None = None
) -> dict[str, dict[int, Any]]:
    """When each contact last had each kind of event (of `types`, or of every kind with None): kind ->
    contact id -> the latest `occurred_at` (naive UTC). Counted by the database (one GROUP BY)."""
    query = select(contact_events.c.type, contact_events.c.contact_id, func.max(contact_events.c.occurred_at))
    query = query.where(contact_events.c.contact_id.is_not(None))
    if types is not None:
        query = query.where(contact_events.c.type.in_(types))
    if ids is not None:
        query = query.where(contact_events.c.contact_id >= int(ids[0]), contact_events.c.contact_id < int(ids[1]))
    found: dict[str, dict[int, Any]] = {}
    for kind, contact_id, last in conn.execute(query.group_by(contact_events.c.type, contact_events.c.contact_id)):
        found.setdefault(str(kind), {})[int(contact_id)] = last
    return found


def contact_names(conn: Connection, ids: list[int]) -> dict[int, tuple[str, str, str]]:
    """The address, first and last name of each contact of `ids` (a page of a list: a few dozen)."""
    if not ids:
        return {}
    query = select(contacts.c.id, contacts.c.email, contacts.c.first_name, contacts.c.last_name)
    return {
        int(i): (str(e), str(f or ""), str(la or ""))
        for i, e, f, la in conn.execute(query.where(contacts.c.id.in_(ids)))
    }


def id_range(conn: Connection) -> tuple[int, int] | None:
    """The lowest and highest contact id, or None when there is no contact."""
    low, high = conn.execute(select(func.min(contacts.c.id), func.max(contacts.c.id))).one()
    return None if low is None else (int(low), int(high))


# The next zone after the one found, through `ix_contacts_time_zone` (migration 0021): one index seek per zone
# (a "loose index scan"), on both databases, however many contacts there are.
_TIME_ZONES = text(
    "WITH RECURSIVE z(tz) AS ("
    " SELECT MIN(time_zone) FROM contacts"
    " UNION ALL"
    " SELECT (SELECT MIN(c.time_zone) FROM contacts c WHERE c.time_zone > z.tz) FROM z WHERE z.tz IS NOT NULL"
    ") SELECT tz FROM z WHERE tz IS NOT NULL"
)


def time_zones(conn: Connection) -> set[str]:
    """The distinct time zones the contacts have ('' for those without one), an index seek per zone."""
    return {str(zone) for zone in conn.execute(_TIME_ZONES).scalars()}
