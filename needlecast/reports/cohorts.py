"""Lead cohorts: leads by signup month and by source or concern, with the share who booked within 30, 60, 90 days.

Contract: `load_leads(engine)` reads one row per contact (erased contacts are gone from the store): its
signup moment, its source (the source of its first consent event, e.g. `import:leads.csv`, `form:spring`;
`unknown` without one) and its concern (the first of its concerns when it consented to their use, else
`general`: a concern given without consent is never used, not even to count). `cohort_table(leads,
bookings, by, now=..., time_zone=..., min_group=...)` groups them by signup month (on the clinic's clock)
and `by` ("source" or "concern"): `leads`, and per window n of `metrics.COHORT_DAYS` `booked_<n>d` (leads
with a conversion event at or after signing up and at most n days after it) and `booked_<n>d_rate` (against
`leads`). A rate is NaN while the window is still open for someone in the cohort (the month's last signup
moment plus n days is after `now`), and for a cohort of fewer than `min_group` leads (counts shown, rates
not: they would describe individuals). Names and addresses are never read.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, select

from needlecast.reports.data import MIN_GROUP, conversion_events
from needlecast.reports.metrics import COHORT_DAYS
from needlecast.store.schema import consent_events, contacts

BY = ("source", "concern")
UNKNOWN_SOURCE, GENERAL = "unknown", "general"


def cohort_columns(by: str) -> list[str]:
    return [
        "month",
        by,
        "leads",
        *(f"booked_{n}d" for n in COHORT_DAYS),
        *(f"booked_{n}d_rate" for n in COHORT_DAYS),
    ]


def load_leads(engine: Engine) -> pd.DataFrame:
    """One row per contact: `contact_id`, `signed_up_at` (UTC), `source`, `concern` (see the module contract)."""
    with engine.connect() as conn:
        people = conn.execute(
            select(contacts.c.id, contacts.c.signed_up_at, contacts.c.concerns, contacts.c.concern_consent)
        ).all()
        consents = conn.execute(
            select(consent_events.c.contact_id, consent_events.c.source, consent_events.c.recorded_at).order_by(
                consent_events.c.recorded_at, consent_events.c.id
            )
        ).all()
    frame = pd.DataFrame(people, columns=["contact_id", "signed_up_at", "concerns", "concern_consent"])
    first = pd.DataFrame(consents, columns=["contact_id", "source", "recorded_at"]).drop_duplicates("contact_id")
    sources = first.set_index("contact_id")["source"]
    frame["signed_up_at"] = pd.to_datetime(frame["signed_up_at"], utc=True)
    found = frame["contact_id"].map(sources).astype(object)  # object: a contact without a consent maps to NaN
    frame["source"] = found.where(found.notna() & (found != ""), UNKNOWN_SOURCE)
    primary = frame["concerns"].fillna("").str.split(";").str[0].str.strip()
    consented = frame["concern_consent"].astype(bool) & (primary != "")
    frame["concern"] = primary.where(consented, GENERAL)
    return frame[["contact_id", "signed_up_at", "source", "concern"]]


def load_bookings(engine: Engine, types: tuple[str, ...]) -> pd.DataFrame:
    """The conversion events of `types` with their contact (`conversion_id`, `contact_id`, `occurred_at`)."""
    found = conversion_events(engine, types, None)
    if found.empty:
        return pd.DataFrame(columns=["conversion_id", "contact_id", "occurred_at"])
    found = found.dropna(subset=["contact_id"]).astype({"contact_id": "int64"})
    return found.assign(occurred_at=pd.to_datetime(found["occurred_at"], utc=True))


def days_to_first_booking(leads: pd.DataFrame, bookings: pd.DataFrame) -> pd.Series:
    """Per lead (by index of `leads`): the time from signing up to its first booking at or after it (NaT
    without one)."""
    if bookings.empty or leads.empty:
        return pd.Series(pd.NaT, index=leads.index, dtype="timedelta64[ns]")
    joined = leads[["contact_id", "signed_up_at"]].reset_index().merge(bookings, on="contact_id")
    lag = joined["occurred_at"] - joined["signed_up_at"]
    joined = joined.assign(lag=lag)[lag >= pd.Timedelta(0)]
    first = joined.groupby("index")["lag"].min()
    return first.reindex(leads.index).astype("timedelta64[ns]")


def cohort_table(
    leads: pd.DataFrame,
    bookings: pd.DataFrame,
    by: str = "source",
    *,
    now: datetime,
    time_zone: str = "UTC",
    min_group: int = MIN_GROUP,
) -> pd.DataFrame:
    """See the module contract; sorted by month, then `by`."""
    if by not in BY:
        raise ValueError(f"a cohort is by {' or '.join(BY)}, not {by!r}")
    if leads.empty:
        return pd.DataFrame(columns=cohort_columns(by))
    local = leads["signed_up_at"].dt.tz_convert(time_zone).dt.tz_localize(None)
    frame = leads.assign(month=local.dt.strftime("%Y-%m"), lag=days_to_first_booking(leads, bookings))
    for n in COHORT_DAYS:
        frame[f"booked_{n}d"] = frame["lag"].notna() & (frame["lag"] <= pd.Timedelta(days=n))
    grouped = frame.groupby(["month", by])
    table = grouped.size().rename("leads").to_frame()
    table = table.join(grouped[[f"booked_{n}d" for n in COHORT_DAYS]].sum().astype("int64"))
    table = table.join(grouped["signed_up_at"].max().rename("last_signup")).reset_index()
    moment = pd.Timestamp(now).tz_convert("UTC") if pd.Timestamp(now).tzinfo else pd.Timestamp(now, tz="UTC")
    for n in COHORT_DAYS:
        closed = table["last_signup"] + pd.Timedelta(days=n) <= moment
        rate = table[f"booked_{n}d"] / table["leads"]
        table[f"booked_{n}d_rate"] = rate.where(closed & (table["leads"] >= min_group)).astype(float)
    return table[cohort_columns(by)].sort_values(["month", by]).reset_index(drop=True)


def load_cohorts(
    engine: Engine,
    by: str = "source",
    *,
    now: datetime,
    time_zone: str = "UTC",
    conversions: tuple[str, ...] = ("booked",),
    min_group: int = MIN_GROUP,
) -> pd.DataFrame:
    """The cohort table of the store's leads and their conversion events (`conversions`, the attribution
    settings' types)."""
    return cohort_table(
        load_leads(engine), load_bookings(engine, conversions), by, now=now, time_zone=time_zone, min_group=min_group
    )
