"""Report aggregates in SQL: every sent email settled by its events and counted per group, in the database.

Contract: `email_groups(conn, offsets)` returns one row per (campaign_id, step_id, segment, variant, day) of
the ledger's sent emails, where `day` is the day of the email's sending on the clinic's clock, as whole days
since 1970-01-01, and `offsets` is the clinic's UTC offset over the emails' sending (`[(from epoch second,
offset in seconds), ...]`, ascending, the first from the earliest sending; `reports.clock.utc_offsets`).
Columns: `emails` (how many) and, per figure of `reports.metrics.METRICS`, how many of them count towards
it: delivered, bounced_hard, bounced_soft, dropped, opened, opened_human, clicked, unsubscribed, complained,
and the event totals opens and clicks. Each email counts once per figure, whatever number of events it had.

This is the SQL twin of `statistics.engagement.delivery_flags` (and `settle`, `human_opened`): the same
definitions, computed in the database from each email's summary of its events (`email_summaries`, kept by
triggers on `events` as they are written: migration 0020), so that a report over ten million events reads
one row per email and moves a few hundred rows. The property tests (`tests/test_report_figures.py`,
`tests/test_email_summaries.py`) hold the two to the same independent count on both databases, whatever
order the events came in; a change to one is a change to the other.

Each row also has `first_sent` and `last_sent` (`SENDINGS`): its emails' first and last sending, timezone-aware
UTC, so that the caller can check that `offsets` covered them. `likely_sent_bounds(conn)` gives the sendings of
the first and last sent row by id (None, None when nothing was sent), from which `offsets` are built.
`credited_emails(conn, offsets, types, window_days)` attributes every conversion (the contact events of `types`)
in the database, by the rules of `statistics.attribution.attribute` ("last click" within `window_days` before
it, else "last delivered": the last email sent to the person within the window whose fate is not a bounce or a
drop; ties go to the later email): one row per credited conversion (conversion_id; `occurred_us`, its time as
integer microseconds since 1970; value and currency as stored) with its email (delivery_id, the columns of
`KEYS`, `day` as in `email_groups`, and `delivered`, 1 when the email's fate is delivered, else 0).
`events_of(conn, ids)` reads the provider events of the ledger rows `ids` (delivery_id, kind, occurred_at
timezone-aware UTC; not the detail), from the index by delivery, however many events there are in all.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar, cast

import pandas as pd
from sqlalchemy import Connection, select

from needlecast.store.driver import ids_in, ids_value, is_sqlite
from needlecast.store.schema import deliveries

# Each provider event kind that sets a flag, as a bit of an email's `seen` mask (`email_summaries.seen`: the
# triggers of migration 0020 set these bits; a new kind or bit is a migration).
KIND_BITS = {
    "delivered": 1,
    "bounced": 2,
    "blocked": 4,
    "dropped": 8,
    "opened": 16,
    "clicked": 32,
    "unsubscribed": 64,
    "group_unsubscribed": 64,
    "complained": 128,
}
ENGAGED = 1 | 16 | 32  # a delivered event, an open or a click proves delivery
MACHINE_OPEN_SECONDS = 10  # `statistics.engagement.MACHINE_OPEN_SECONDS`
KEYS = ("campaign_id", "step_id", "segment", "variant", "day")
COUNTS = (
    "emails",
    "delivered",
    "bounced_hard",
    "bounced_soft",
    "dropped",
    "opened",
    "opened_human",
    "clicked",
    "unsubscribed",
    "complained",
    "opens",
    "clicks",
)
SENDINGS = ("first_sent", "last_sent")  # each group's first and last sending (what the offsets must cover)


def _sqlite_micros(column: str) -> str:
    """A stored time (ISO text, microseconds after the 20th character) as integer microseconds since 1970. Its
    whole seconds are read from the first 19 characters: SQLite rounds a time to the millisecond, so a time a
    fraction of a millisecond before a whole second would otherwise count that second twice."""
    return (
        f"(CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000"
        f" + CAST(substr({column}, 21, 6) AS INTEGER))"
    )


# The whole seconds since 1970 of `d.sent_at` (its first 19 characters: no rounding of its fraction up to the
# next second), without formatting them as text and reading them back as `strftime('%s')` would (a third of
# the day's cost on SQLite): julianday is SQLite's own count of milliseconds (`iJD`) over 86,400,000, which the
# rounded product gives back exactly (its error is a ten-thousandth of a millisecond), and the seconds are then
# `iJD` / 1000 - 210,866,760,000 by integer division, as strftime computes them.
_SQLITE_SENT_SECONDS = (
    "((CAST(round(julianday(substr(d.sent_at, 1, 19)) * 86400000) AS INTEGER) - 210866760000000) / 1000)"
)


def _sqlite_text(second: int) -> str:
    """The UTC moment `second` (since 1970) as SQLite stores a time, to the second."""
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _local_day(sqlite: bool, offsets: Sequence[tuple[int, int]]) -> str:
    """The day of `d.sent_at` on the clinic's clock, as days since 1970 (see the module contract)."""
    epoch = _SQLITE_SENT_SECONDS if sqlite else "floor(date_part('epoch', d.sent_at))"
    if len(offsets) <= 1:
        shift = str(int(offsets[0][1]) if offsets else 0)
    else:
        # SQLite compares the stored text with the moment's ("2026-10-25 01:00:00"): the same answer as its
        # whole seconds against the moment's (a longer text with the same first 19 characters is the greater),
        # without working the seconds out again for each branch (once per email instead of twice).
        moment = (lambda start: f"'{_sqlite_text(start)}'") if sqlite else (lambda start: str(int(start)))
        tested = "d.sent_at" if sqlite else epoch
        branches = " ".join(
            f"WHEN {tested} < {moment(start)} THEN {int(before)}"
            for (_, before), (start, _) in itertools.pairwise(offsets)
        )
        shift = f"CASE {branches} ELSE {int(offsets[-1][1])} END"
    if sqlite:  # integer division truncates; sendings are after 1970, so it floors
        return f"(({epoch} + {shift}) / 86400)"
    return f"CAST(floor(({epoch} + {shift}) / 86400.0) AS bigint)"


def _human(sqlite: bool) -> str:
    """1 when the email has an open not marked a machine's more than MACHINE_OPEN_SECONDS after its arrival
    (its first delivered event, else its sending), else 0: its last such open is enough to tell."""
    arrival = "COALESCE(e.delivered_at, d.sent_at)"
    last = "e.human_open_at"
    if sqlite:
        late = f"{_sqlite_micros(last)} - {_sqlite_micros(arrival)} > {MACHINE_OPEN_SECONDS * 1_000_000}"
        # Most last opens are minutes or days after the arrival: told from the text alone. An open in a later
        # minute than an arrival before its 50th second is more than 10 s after it.
        later = f"substr({last}, 1, 16) > substr({arrival}, 1, 16) AND substr({arrival}, 18, 2) < '50'"
        return (
            f"CASE WHEN {last} IS NULL THEN 0 WHEN {arrival} IS NULL THEN 1 WHEN {later} THEN 1"
            f" WHEN {late} THEN 1 ELSE 0 END"
        )
    late = f"{last} > {arrival} + interval '{MACHINE_OPEN_SECONDS} seconds'"
    return f"CASE WHEN {last} IS NOT NULL AND ({arrival} IS NULL OR {late}) THEN 1 ELSE 0 END"


def email_groups_sql(sqlite: bool, offsets: Sequence[tuple[int, int]], ids: tuple[int, int] | None = None) -> str:
    """The statement of `email_groups` (see the module contract and `statistics.engagement.settle`): a bounce
    outranks every other fate (hard when any bounce was hard, or the row's outcome says bounced and no block
    came), a drop outranks delivery, and delivery is proved by a delivered event or outcome, an open or a
    click. Each email's events are read from its row of `email_summaries` (one per ledger row with events,
    kept by the database as they arrive: migration 0020), joined to the ledger by its primary key. SQLite
    reads the ledger in its table's order: left to itself it walked the unique index on (campaign, step,
    contact), for the grouping's order, and fetched each row from there (1.8 times the time at 100,000).
    `ids`: only the ledger rows with ids from the first to the second, both included (`count_groups`)."""
    within = f" AND d.id BETWEEN {int(ids[0])} AND {int(ids[1])}" if ids else ""
    hard = "((m & 2) <> 0 OR (outcome = 'bounced' AND (m & 4) = 0))"
    soft = "((m & 4) <> 0 AND (m & 2) = 0)"
    return f"""
        SELECT campaign_id, step_id, segment, variant, day,
               count(*) AS emails,
               sum(CASE WHEN b = 0 AND dr = 0 AND ((m & {ENGAGED}) <> 0 OR outcome = 'delivered') THEN 1 ELSE 0 END)
                   AS delivered,
               sum(CASE WHEN {hard} THEN 1 ELSE 0 END) AS bounced_hard,
               sum(CASE WHEN {soft} THEN 1 ELSE 0 END) AS bounced_soft,
               sum(dr) AS dropped,
               sum(CASE WHEN (m & 16) <> 0 THEN 1 ELSE 0 END) AS opened,
               sum(human) AS opened_human,
               sum(CASE WHEN (m & 32) <> 0 THEN 1 ELSE 0 END) AS clicked,
               sum(CASE WHEN (m & 64) <> 0 THEN 1 ELSE 0 END) AS unsubscribed,
               sum(CASE WHEN (m & 128) <> 0 THEN 1 ELSE 0 END) AS complained,
               sum(opens) AS opens,
               sum(clicks) AS clicks,
               min(sent_at) AS first_sent,
               max(sent_at) AS last_sent
        FROM (
            SELECT y.*, CASE WHEN b = 0 AND ((m & 8) <> 0 OR outcome = 'dropped') THEN 1 ELSE 0 END AS dr
            FROM (
                SELECT x.*, CASE WHEN (m & 6) <> 0 OR outcome = 'bounced' THEN 1 ELSE 0 END AS b
                FROM (
                    SELECT d.campaign_id, d.step_id, d.segment, d.variant, d.outcome, d.sent_at,
                           {_local_day(sqlite, offsets)} AS day,
                           COALESCE(e.seen, 0) AS m,
                           COALESCE(e.opens, 0) AS opens,
                           COALESCE(e.clicks, 0) AS clicks,
                           {_human(sqlite)} AS human
                    FROM deliveries d{" NOT INDEXED" if sqlite else ""}
                    LEFT JOIN email_summaries e ON e.delivery_id = d.id
                    WHERE d.status = 'sent'{within}
                ) x
            ) y
        ) z
        GROUP BY campaign_id, step_id, segment, variant, day"""


def _micros(sqlite: bool, column: str) -> str:
    """A stored time as integer microseconds since 1970 (exact on both databases)."""
    return _sqlite_micros(column) if sqlite else f"CAST(extract(epoch FROM {column}) * 1000000 AS bigint)"


def _fate_sql(outcome: str) -> tuple[str, str]:
    """(neither bounced nor dropped, delivered): the fate of the email with the ledger outcome `outcome` and the
    summary `e`, as `email_groups_sql` settles it."""
    mask = "COALESCE(e.seen, 0)"
    kept = f"(({mask} & 14) = 0 AND {outcome} NOT IN ('bounced', 'dropped'))"
    return kept, f"({kept} AND (({mask} & {ENGAGED}) <> 0 OR {outcome} = 'delivered'))"


def credited_emails_sql(sqlite: bool, offsets: Sequence[tuple[int, int]], types: int, window_days: int) -> str:
    """The statement of `credited_emails` (see the module contract), `types` placeholders for the conversion
    types. The people who converted are few: each one's sent emails are looked up in `ix_deliveries_contact`
    (migration 0022) with their group, day and fate (from `email_summaries`), then their clicks in
    `ix_events_delivery_kind`; nothing else of the ledger is read. PostgreSQL looks each person up by the index
    (a LATERAL subquery it cannot flatten: left to itself it scanned the whole index in a merge join, as the
    people's ids looked like the ledger's order). On PostgreSQL the times are compared as stored (the window
    in hours, which no clock change alters); SQLite compares microseconds."""
    mark = "?" if sqlite else "%s"
    at = (lambda column: _sqlite_micros(column)) if sqlite else (lambda column: column)
    window = f"{int(window_days) * 86_400_000_000}" if sqlite else f"interval '{int(window_days) * 24} hours'"
    kept, delivered = _fate_sql("d.outcome")
    emails = f"""
                SELECT d.contact_id, d.id AS delivery_id, {at("d.sent_at")} AS sent, d.campaign_id, d.step_id,
                       d.segment, d.variant, {_local_day(sqlite, offsets)} AS day,
                       CASE WHEN {kept} THEN 1 ELSE 0 END AS kept, CASE WHEN {delivered} THEN 1 ELSE 0 END AS delivered
                FROM deliveries d LEFT JOIN email_summaries e ON e.delivery_id = d.id
                WHERE d.status = 'sent'"""
    if sqlite:
        person = f"FROM conv v JOIN ({emails}) m ON m.contact_id = v.contact_id"
    else:
        person = f"FROM conv v CROSS JOIN LATERAL ({emails} AND d.contact_id = v.contact_id OFFSET 0) m"
    return f"""
        WITH conv AS (
            SELECT ce.source_id AS conversion_id, {at("ce.occurred_at")} AS at,
                   {_micros(sqlite, "ce.occurred_at")} AS occurred_us, ce.value, ce.currency,
                   COALESCE(ce.contact_id, c.id) AS contact_id
            FROM contact_events ce LEFT JOIN contacts c ON c.email_hash = ce.email_hash
            WHERE ce.type IN ({", ".join([mark] * types)})
        ), mine AS (
            SELECT v.conversion_id, v.at, m.delivery_id, m.sent, m.campaign_id, m.step_id, m.segment, m.variant,
                   m.day, m.kept, m.delivered
            {person}
        ), clicks AS (
            SELECT m.conversion_id, m.delivery_id, max({at("k.occurred_at")}) AS moment
            FROM mine m JOIN events k ON k.delivery_id = m.delivery_id AND k.kind = 'clicked'
            WHERE {at("k.occurred_at")} <= m.at AND {at("k.occurred_at")} >= m.at - {window}
            GROUP BY m.conversion_id, m.delivery_id
        ), sends AS (
            SELECT m.conversion_id, m.delivery_id, m.sent AS moment
            FROM mine m
            WHERE m.sent <= m.at AND m.sent >= m.at - {window} AND m.kept = 1
              AND m.conversion_id NOT IN (SELECT conversion_id FROM clicks)
        ), ranked AS (
            SELECT conversion_id, delivery_id,
                   row_number() OVER (PARTITION BY conversion_id ORDER BY moment DESC, delivery_id DESC) AS n
            FROM (SELECT * FROM clicks UNION ALL SELECT * FROM sends) u
        )
        SELECT v.conversion_id, v.occurred_us, v.value, v.currency, m.delivery_id, m.campaign_id, m.step_id,
               m.segment, m.variant, m.day, m.delivered
        FROM ranked r
        JOIN mine m ON m.conversion_id = r.conversion_id AND m.delivery_id = r.delivery_id
        JOIN conv v ON v.conversion_id = r.conversion_id
        WHERE r.n = 1"""


def credited_emails(
    conn: Connection, offsets: Sequence[tuple[int, int]], types: Sequence[str], window_days: int
) -> pd.DataFrame:
    """See the module contract."""
    columns = ["conversion_id", "occurred_us", "value", "currency", "delivery_id", *KEYS, "delivered"]
    if not types:
        return pd.DataFrame(columns=columns)
    if not is_sqlite(conn):
        conn.exec_driver_sql("SET LOCAL jit = off")
    result = conn.exec_driver_sql(credited_emails_sql(is_sqlite(conn), offsets, len(types), window_days), tuple(types))
    return pd.DataFrame(result.cursor.fetchall(), columns=columns)


def email_groups(
    conn: Connection, offsets: Sequence[tuple[int, int]], ids: tuple[int, int] | None = None
) -> pd.DataFrame:
    """See the module contract; `ids`, the ledger rows with ids in that range only (both ends included)."""
    if not is_sqlite(conn):
        # Compiling the statement (JIT) cost more than it saved. No parallel plan: over the events, each worker
        # aggregated them all again; over the summaries, two workers and the leader (a parallel hash join of a
        # million summaries, spilled in batches) spent 5.8 s of CPU where one process spends about 3 s
        # (BENCHMARKS.md). SQLite's ranges (`count_groups`) share the work without adding to it.
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
    result = conn.exec_driver_sql(email_groups_sql(is_sqlite(conn), offsets, ids))
    frame = pd.DataFrame(result.cursor.fetchall(), columns=list(result.keys()))
    if frame.empty:
        return pd.DataFrame(
            {key: pd.Series(dtype="object") for key in KEYS}
            | {c: pd.Series(dtype="int64") for c in COUNTS}
            | {c: pd.Series(dtype="datetime64[us, UTC]") for c in SENDINGS}
        )
    # `day` is NULL for a sent email without its sending time (none should be; it is counted, on no day).
    frame = frame.astype({"day": "float64", **dict.fromkeys(COUNTS, "int64")})
    return frame.assign(**{c: _utc_times(frame[c]) for c in SENDINGS})


def _utc_times(stored: pd.Series) -> pd.Series:
    """Stored times (SQLite's text, PostgreSQL's naive UTC datetimes) as timezone-aware UTC, to the microsecond."""
    return pd.to_datetime(stored, utc=True, format="ISO8601").astype("datetime64[us, UTC]")


T = TypeVar("T")

PART_ROWS = 250_000  # SQLite: a ledger of fewer rows is counted in one statement
MAX_PARTS = 4  # threads at most (one per core)
SLICES = 4  # ranges per thread: see `_in_ranges`


def _threads() -> int:
    return min(os.cpu_count() or 1, MAX_PARTS)


def _id_ranges(conn: Connection, parts: int = 0) -> list[tuple[int, int]]:
    """SQLite: the ledger's ids cut into `parts` ranges (default: SLICES per thread, when the ledger has
    PART_ROWS ids or more); empty when it is one statement's work (a small or in-memory ledger, PostgreSQL)."""
    if not is_sqlite(conn) or conn.engine.url.database in (None, "", ":memory:"):
        return []
    low, high = conn.exec_driver_sql("SELECT min(id), max(id) FROM deliveries").one()
    if low is None:
        return []
    if not parts:
        parts = _threads() * SLICES if high - low + 1 >= PART_ROWS else 1
    if parts <= 1:
        return []
    step = (high - low) // parts + 1
    return [(low + i * step, min(high, low + (i + 1) * step - 1)) for i in range(parts)]


def _in_ranges(
    conn: Connection,
    ranges: Sequence[tuple[int, int]],
    work: Callable[[Connection, tuple[int, int]], T],
    threads: int = 0,
) -> list[T]:
    """`work` done for every range, in order, by `threads` threads at once (default: one per core, at most
    MAX_PARTS): this one on `conn`, the others each on its own connection (sqlite3 lets go of the GIL while a
    statement runs). A thread that finishes a range takes the next one not yet taken, so that ranges of
    unequal work share it out: a ledger's sent emails are its older rows, and with one range per thread the
    first thread counted all of them while the second found its range still queued (the same wall time as
    one thread)."""
    threads = max(1, min(len(ranges), threads or _threads()))
    found: list[T | None] = [None] * len(ranges)
    untaken = iter(range(len(ranges)))
    lock = threading.Lock()

    def take(own: Connection) -> None:
        while True:
            with lock:
                index = next(untaken, None)
            if index is None:
                return
            found[index] = work(own, ranges[index])

    def elsewhere() -> None:
        with conn.engine.connect() as own:
            take(own)

    if threads == 1:
        take(conn)
    else:
        with ThreadPoolExecutor(threads - 1) as pool:
            others = [pool.submit(elsewhere) for _ in range(threads - 1)]  # started first: they run while
            take(conn)  # this thread works too (waiting for them first made it serial)
            for other in others:
                other.result()
    return cast("list[T]", found)  # every range was worked: none is left None


def count_groups(
    conn: Connection, offsets: Sequence[tuple[int, int]], parts: int = 0, threads: int = 0
) -> pd.DataFrame:
    """`email_groups` of the whole ledger. SQLite runs in this process, each statement on one core: a large
    ledger (PART_ROWS or more ids) is counted in `parts` ranges of ids (`_id_ranges`) by `threads` threads at
    once (`_in_ranges`), and each group's counts summed over the ranges: every email is in one range, so the
    counts are those of one statement. PostgreSQL counts in one statement, in its server process."""
    ranges = _id_ranges(conn, parts)
    if not ranges:
        return email_groups(conn, offsets)
    frames = _in_ranges(conn, ranges, lambda own, ids: email_groups(own, offsets, ids), threads)
    found = [frame for frame in frames if not frame.empty]
    if len(found) <= 1:
        return found[0] if found else frames[0]
    grouped = pd.concat(found, ignore_index=True).groupby(list(KEYS), dropna=False, as_index=False)
    summed = grouped.agg({**dict.fromkeys(COUNTS, "sum"), "first_sent": "min", "last_sent": "max"})
    return summed.astype({"day": "float64", **dict.fromkeys(COUNTS, "int64")})


def likely_sent_bounds(conn: Connection) -> tuple[datetime | None, datetime | None]:
    """The sendings of the first and the last sent email by ledger id (timezone-aware UTC; None, None when none
    was sent): where the ledger's sendings most likely begin and end, found without reading it (the primary
    key's order, from either end, to the first sent row). Not their bounds: a row queued early can be sent
    late. `reports.groups` widens them, works the clinic's offsets out over that span, and checks it against
    the first and last sending that the counting itself finds (`SENDINGS`), counting again in the rare case
    that one lies outside."""

    def sending(newest: bool) -> datetime | None:
        order = deliveries.c.id.desc() if newest else deliveries.c.id
        query = select(deliveries.c.sent_at).where(deliveries.c.status == "sent", deliveries.c.sent_at.is_not(None))
        found: datetime | None = conn.execute(query.order_by(order).limit(1)).scalar()
        return found

    return sending(False), sending(True)


def events_of(conn: Connection, ids: Sequence[int]) -> pd.DataFrame:
    """See the module contract. Only what `ix_events_delivery_kind` holds, so that the index alone answers;
    the times read as integer microseconds and made timezone-aware UTC here, column-wise."""
    columns = ["delivery_id", "kind", "occurred_at"]
    if not ids:
        return pd.DataFrame(columns=columns)
    micros = (
        _sqlite_micros("occurred_at")
        if is_sqlite(conn)
        else "CAST(extract(epoch FROM occurred_at) * 1000000 AS bigint)"
    )
    result = conn.exec_driver_sql(
        f"SELECT delivery_id, kind, {micros} FROM events WHERE {ids_in(conn, 'delivery_id')}",
        (ids_value(conn, ids),),
    )
    frame = pd.DataFrame(result.cursor.fetchall(), columns=columns)
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"].astype("int64"), unit="us", utc=True)
    return frame
