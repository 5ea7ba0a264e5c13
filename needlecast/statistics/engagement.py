"""Engagement per email, from the ledger and the stored provider events: the definitions that sending (the
A/B winner, send-time optimisation) and the reports share.

Contract: `delivery_flags` gives one row per ledger row with a boolean per funnel step, each email counted
once whatever number of events it had (`settle`: its one fate); `human_opened` leaves out machine opens (the
provider's flag, or an open within MACHINE_OPEN_SECONDS of delivery). Nothing here holds an address.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, String, func, select, type_coerce

from needlecast.store.reports import events_of
from needlecast.store.schema import contact_events, contacts, deliveries, events
from needlecast.tracking.events import MACHINE_OPEN

GROUP = ["campaign_id", "step_id", "segment", "variant", "arm"]
FLAGS = [
    "sent",
    "delivered",
    "bounced_hard",
    "bounced_soft",
    "dropped",
    "opened",
    "clicked",
    "unsubscribed",
    "complained",
]
KIND_FLAG = {
    "delivered": "delivered",
    "bounced": "bounced_hard",
    "blocked": "bounced_soft",
    "dropped": "dropped",
    "opened": "opened",
    "clicked": "clicked",
    "unsubscribed": "unsubscribed",
    "group_unsubscribed": "unsubscribed",
    "complained": "complained",
}
DERIVED = ["bounced", "opened_human", "opened_machine"]  # from the flags (`delivery_flags`)
TOTALS = {"opened": "opens", "clicked": "clicks"}  # event kind -> the column counting every such event


def frame_of(result: Any) -> pd.DataFrame:
    """A query's rows as a DataFrame, from the driver's own tuples: SQLAlchemy's per-row work (a `Row` each,
    which pandas then probes for fields) cost more than the database's read, seven times this at 200,000
    rows. Values are as the driver gives them: callers parse times with `utc_times` and numbers with
    `pd.to_numeric`."""
    return pd.DataFrame(result.cursor.fetchall(), columns=list(result.keys()))


def stored_time(column: Any) -> Any:
    """`column` (a UTC time) read as the database holds it, to be parsed column-wise by `utc_times`: the
    column type's own conversion runs once per row, which dominates reading ten million events."""
    return type_coerce(column, String).label(column.name)


def utc_times(values: pd.Series) -> pd.Series:
    """Stored UTC times (text from SQLite, datetimes from PostgreSQL) as timezone-aware UTC, NaT for none."""
    return pd.to_datetime(values, utc=True, format="ISO8601")


def ledger_and_events(
    engine: Engine, campaign: str | None, since: datetime | None, people: Any = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ledger rows (one campaign's, or all) created since `since`, and the provider events stored for them;
    their times timezone-aware UTC (`sent_at` NaT until sent). `people`: a query of contact ids (as
    `conversion_people`), to read only their emails and those emails' events, without the events' detail
    and campaign (`store.reports.events_of`): enough for each email's fate, clicks and attribution, not for
    telling human opens from machine ones."""
    query = select(
        deliveries.c.id,
        *(deliveries.c[c] for c in GROUP),
        deliveries.c.status,
        deliveries.c.outcome,
        deliveries.c.contact_id,
        stored_time(deliveries.c.sent_at),
        deliveries.c.timing,
    )
    event_query = select(
        events.c.delivery_id, events.c.kind, stored_time(events.c.occurred_at), events.c.detail, events.c.campaign_id
    )
    if campaign:
        query = query.where(deliveries.c.campaign_id == campaign)
        event_query = event_query.where(events.c.campaign_id == campaign)
    if since:
        query = query.where(deliveries.c.created_at >= since)
        event_query = event_query.where(events.c.occurred_at >= since)
    if people is not None:
        query = query.where(deliveries.c.contact_id.in_(people))
    with engine.connect() as conn:
        ledger = frame_of(conn.execute(query))
        # A few people's emails: their events looked up by delivery id, not found in a scan of every event.
        stored = events_of(conn, ledger["id"].tolist()) if people is not None else frame_of(conn.execute(event_query))
    ledger["sent_at"] = utc_times(ledger["sent_at"])
    if not stored.empty and people is None:  # `events_of` gives its times parsed
        stored["occurred_at"] = utc_times(stored["occurred_at"])
    return ledger, stored


def delivery_flags(ledger: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """One row per delivery (email) with a boolean per funnel step (see `settle` for an email's fate), the
    derived `bounced`, `opened_human` and `opened_machine` (`human_opened`), and the event totals `opens` and
    `clicks`: the definitions of `needlecast.reports.metrics.METRICS`."""
    frame = ledger.copy()
    frame["sent"] = frame["status"] == "sent"
    for flag in FLAGS[1:]:
        frame[flag] = False
    if not stored.empty:
        linked = stored.dropna(subset=["delivery_id"])
        linked = linked[linked["kind"].isin(KIND_FLAG)]
        for flag, part in linked.groupby(linked["kind"].map(KIND_FLAG)):
            frame[str(flag)] |= frame["id"].isin(part["delivery_id"].astype("int64"))
    frame = with_bounced(settle(frame))
    frame["opened_human"] = frame["id"].isin(human_opened(ledger, stored)) & frame["opened"]
    frame["opened_machine"] = frame["opened"] & ~frame["opened_human"]
    for kind, column in TOTALS.items():
        frame[column] = 0
        if not stored.empty:
            counted = stored[(stored["kind"] == kind) & stored["delivery_id"].notna()]
            per = counted["delivery_id"].astype("int64").value_counts()
            frame[column] = frame["id"].map(per).fillna(0).astype("int64")
    return frame


def settle(frame: pd.DataFrame) -> pd.DataFrame:
    """Each email's one fate, from the flags its events set and the ledger row's `outcome`: bounced (hard when
    any bounce was hard, else soft), else dropped, else delivered (a delivered event or outcome, or an open
    or click, which prove delivery), else none yet (a deferral is no fate: deferred-then-delivered is
    delivered). A bounce outranks a delivery the server reported before it. The outcome counts where no
    event says as much (it cannot tell a soft bounce from a hard one: without a blocked event it is hard)."""
    out = frame.copy()
    outcome = out["outcome"]
    out["bounced_hard"] |= (outcome == "bounced") & ~out["bounced_soft"]
    out["bounced_soft"] &= ~out["bounced_hard"]
    bounced = out["bounced_hard"] | out["bounced_soft"]
    out["dropped"] = (out["dropped"] | (outcome == "dropped")) & ~bounced
    proved = out["delivered"] | (outcome == "delivered") | out["opened"] | out["clicked"]
    out["delivered"] = proved & ~bounced & ~out["dropped"]
    return out


def with_bounced(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `bounced`: the email bounced, hard or soft (counted once however many bounces it had)."""
    return frame.assign(bounced=frame["bounced_hard"] | frame["bounced_soft"])


MACHINE_OPEN_SECONDS = 10  # an open this soon after delivery is a proxy or a scanner fetching the images


def human_opened(ledger: pd.DataFrame, stored: pd.DataFrame, seconds: float = MACHINE_OPEN_SECONDS) -> set[int]:
    """The deliveries that a person opened: opens marked as machine opens (`sg_machine_open`, stored with
    `detail` "machine") and opens within `seconds` of the delivery (its delivered event, else its sending)
    do not count."""
    if stored.empty or ledger.empty:
        return set()
    linked = stored.dropna(subset=["delivery_id"]).astype({"delivery_id": "int64"})
    opens = linked[(linked["kind"] == "opened") & (linked["detail"] != MACHINE_OPEN)]
    if opens.empty:
        return set()
    delivered = linked[linked["kind"] == "delivered"].groupby("delivery_id")["occurred_at"].min()
    sent = pd.to_datetime(ledger.set_index("id")["sent_at"], utc=True)
    arrived = delivered.combine_first(sent)
    lag = opens["occurred_at"] - opens["delivery_id"].map(arrived)
    human = opens[lag.isna() | (lag > pd.Timedelta(seconds=seconds))]
    return set(human["delivery_id"].tolist())


def _conversion_contact() -> Any:
    """A conversion's contact: its own id, or the contact with its address hash (the contact came later)."""
    return func.coalesce(contact_events.c.contact_id, contacts.c.id)


def conversion_people(types: tuple[str, ...]) -> Any:
    """The query of the contacts with a conversion event of `types` (as `conversion_events` links them)."""
    return (
        select(_conversion_contact())
        .select_from(contact_events.outerjoin(contacts, contacts.c.email_hash == contact_events.c.email_hash))
        .where(contact_events.c.type.in_(types))
    )


def conversion_events(engine: Engine, types: tuple[str, ...], since: datetime | None) -> pd.DataFrame:
    """The contact events that count as conversions, each linked to its contact (by id, or by the address hash
    when the contact came to exist after the event)."""
    query = (
        select(
            contact_events.c.source_id.label("conversion_id"),
            contact_events.c.type,
            stored_time(contact_events.c.occurred_at),
            contact_events.c.value,
            contact_events.c.currency,
            _conversion_contact().label("contact_id"),
        )
        .select_from(contact_events.outerjoin(contacts, contacts.c.email_hash == contact_events.c.email_hash))
        .where(contact_events.c.type.in_(types))
    )
    if since:
        query = query.where(contact_events.c.occurred_at >= since)
    with engine.connect() as conn:
        frame = frame_of(conn.execute(query))
    if not frame.empty:
        frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
        frame["occurred_at"] = utc_times(frame["occurred_at"])
    return frame
