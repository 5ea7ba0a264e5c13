"""Every sent email counted by group, the counting done in the database: what the comparison and its trends read.

Contract: `email_groups(engine, attribution, time_zone)` returns one row per (campaign_id, step_id, segment,
variant, day) of the ledger's sent emails, `day` being the day of sending on the clinic's clock (`time_zone`,
a tz-naive midnight), with `emails` (how many) and, per figure of `metrics.METRICS`, how many of them count
towards it: the same columns as one email's flags (`compare.email_flags`) summed, plus `delivered_converted`
(delivered emails credited with a booking). `compare.compare` reads these groups or the emails one by one,
with the same result; the groups are a few thousand rows where the emails are millions.

The flags come from the database (`store.reports.email_groups`, the SQL twin of `delivery_flags`), and so do
the bookings (`store.reports.credited_emails`, the SQL twin of the attribution a campaign's report makes,
`statistics.attribution.attribute`): it reads the emails of the people who booked only (a booking can only be
credited to an email sent to its person), and hands back one row per credited booking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Connection, Engine

from needlecast.config import AttributionSettings
from needlecast.reports.data import add_conversions
from needlecast.store import reports as sql

KEYS = ["campaign_id", "step_id", "segment", "variant", "day"]
CREDIT = ["conversions", "converted", "delivered_converted"]
STEP = 6 * 3600  # zones change their offset at most twice a year, never twice within six hours
EARLIER = timedelta(days=400)  # the span of offsets begins this long before the first sent row's sending
DAY = timedelta(days=1)


def _offset(zone: ZoneInfo, second: int) -> int:
    found = datetime.fromtimestamp(second, UTC).astimezone(zone).utcoffset()
    return int(found.total_seconds()) if found is not None else 0


def utc_offsets(time_zone: str, first: datetime, last: datetime) -> list[tuple[int, int]]:
    """The UTC offset of `time_zone` from `first` to `last` (a day either side): `[(from epoch second, offset
    in seconds), ...]`, a piece per change of offset, each from the exact second it changes."""
    zone = ZoneInfo(time_zone)
    start, end = int(first.timestamp()) - 86_400, int(last.timestamp()) + 86_400
    pieces = [(start, _offset(zone, start))]
    moment = start
    while moment < end:
        ahead = min(moment + STEP, end)
        if _offset(zone, ahead) != pieces[-1][1]:
            low, high = moment, ahead  # the offset changes after `low`, by `high`
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if _offset(zone, middle) == pieces[-1][1] else (low, middle)
            pieces.append((high, _offset(zone, high)))
        moment = ahead
    return pieces


def credited_groups(conn: Connection, rules: AttributionSettings, offsets: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """Per group (`KEYS`): the bookings credited to its emails (`conversions`), its emails credited with one or
    more (`converted`), those of them delivered (`delivered_converted`) and the credited value per currency
    (`value_GBP`, ...), as a campaign's report credits them (`add_conversions`). The attribution is made in the
    database (`store.reports.credited_emails`, the SQL twin of `attribute`): what comes back is one row per
    credited booking, summed here as `add_conversions` sums them, in the order a report credits them."""
    credit = sql.credited_emails(conn, offsets, rules.conversions, rules.window_days)
    if credit.empty:
        return pd.DataFrame(columns=[*KEYS, *CREDIT])
    credit = credit.assign(value=pd.to_numeric(credit["value"], errors="coerce"))
    credit = credit.sort_values(["occurred_us", "conversion_id"], kind="stable")
    emails = credit.drop_duplicates("delivery_id").sort_values("delivery_id")
    emails = emails[["delivery_id", *KEYS, "delivered"]].rename(columns={"delivery_id": "id"})
    flags = add_conversions(emails.reset_index(drop=True), credit)
    flags = flags.assign(
        day=pd.to_datetime(flags["day"].astype("float64"), unit="D"),
        delivered_converted=(flags["delivered"] > 0) & flags["converted"],
    )
    values = sorted(c for c in flags.columns if c.startswith("value_"))
    return flags.groupby(KEYS, as_index=False)[[*CREDIT, *values]].sum()


def _counted(conn: Connection, time_zone: str) -> tuple[list[tuple[int, int]], pd.DataFrame]:
    """The clinic's offsets over every sending, and every sent email counted by group with them. No index holds
    the sending times (a send changes them), and reading the whole ledger for its first and last sending cost
    as much as a fifth of the counting: the offsets are worked out over a span around the sendings of the
    first and last sent rows by id instead (`store.reports.likely_sent_bounds`: `EARLIER` before the first, up
    to now or the last, whichever is later), and the counting's own first and last sending (`SENDINGS`)
    prove that they covered every email; when one lies outside (a row queued long before it was sent, say),
    the offsets are worked out over the true span and the ledger is counted again."""
    first, last = sql.likely_sent_bounds(conn)
    if first is None or last is None:
        return [], sql.count_groups(conn, []).drop(columns=list(sql.SENDINGS))
    start, end = first - EARLIER, max(last, datetime.now(UTC))
    offsets = utc_offsets(time_zone, start, end)
    counted = sql.count_groups(conn, offsets)
    seen_first, seen_last = counted["first_sent"].min(), counted["last_sent"].max()
    # `utc_offsets` covers a day either side of the span it is given.
    if not pd.isna(seen_first) and (seen_first < start - DAY or seen_last > end + DAY):
        offsets = utc_offsets(time_zone, seen_first.to_pydatetime(), seen_last.to_pydatetime())
        counted = sql.count_groups(conn, offsets)
    return offsets, counted.drop(columns=list(sql.SENDINGS))


def email_groups(
    engine: Engine, attribution: AttributionSettings | None = None, time_zone: str = "UTC"
) -> pd.DataFrame:
    """See the module contract."""
    rules = attribution or AttributionSettings()
    with engine.connect() as conn:
        offsets, counted = _counted(conn, time_zone)
        credited = credited_groups(conn, rules, offsets)
    days = (
        pd.to_datetime(counted["day"].astype("float64"), unit="D")  # NaT: a sent email without its time
        if not counted.empty
        else pd.Series(dtype="datetime64[ns]")
    )
    groups = counted.assign(day=days, sent=counted["emails"])
    groups = groups.assign(
        bounced=groups["bounced_hard"] + groups["bounced_soft"],
        opened_machine=groups["opened"] - groups["opened_human"],
    )
    groups = (
        groups.merge(credited, on=KEYS, how="left") if not credited.empty else groups.assign(**dict.fromkeys(CREDIT, 0))
    )
    counts = [c for c in groups.columns if c not in KEYS]
    return groups.fillna(dict.fromkeys(counts, 0)).astype(
        dict.fromkeys([*CREDIT, "sent", "bounced", "opened_machine"], "int64")
    )


def as_groups(emails: pd.DataFrame) -> pd.DataFrame:
    """Emails one per row (`compare.email_flags`) in the shape of `email_groups`' rows: each a group of one."""
    if "emails" in emails:
        return emails
    return emails.assign(emails=1, delivered_converted=emails["delivered"] & emails["converted"])
