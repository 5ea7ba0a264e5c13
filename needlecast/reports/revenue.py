"""Revenue: booking value per campaign, per email delivered and per person mailed, in each currency; and the
bookings each attribution model credits, side by side.

Contract: `load_revenue(engine, attribution)` reads every email once, with the flags and credited bookings
of a campaign's report (`data.delivery_flags`, `attribution.attribute`, `data.add_conversions`: the
definitions of `metrics.METRICS`), and returns a `Revenue`:
- `campaigns`: one row per campaign and currency of its credited bookings (currency "" for bookings that
  came without a value): `bookings`, `value`, the campaign's `delivered` and `mailed` (people with a sent
  email), `value_per_delivered` and `value_per_recipient` (`metrics.REVENUE_RATES`); then one "All
  campaigns" row per currency. A campaign without bookings has one row, currency "", value 0. The two
  ratios are NaN below `min_group` delivered (they would describe individuals).
- `attribution`: per campaign and currency, the bookings (and value) that last click alone credits
  (`last_click`: only bookings with a click on the campaign's email within the window) beside those that
  last delivered alone credits (`last_delivered`: the last email sent and not bounced or dropped, clicked or
  not), both with `attribution.attribute` itself: the report's rule is last click, else last delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Engine

from needlecast.config import AttributionSettings
from needlecast.reports.data import MIN_GROUP, add_conversions, conversion_events, delivery_flags, ledger_and_events
from needlecast.reports.metrics import REVENUE_RATES
from needlecast.statistics.attribution import LAST_CLICK, LAST_DELIVERED, attribute

TOTAL = "All campaigns"
REVENUE_COLUMNS = [
    "campaign_id",
    "currency",
    "bookings",
    "value",
    "delivered",
    "mailed",
    "value_per_delivered",
    "value_per_recipient",
]
ATTRIBUTION_COLUMNS = [
    "campaign_id",
    "currency",
    "last_click",
    "last_click_value",
    "last_delivered",
    "last_delivered_value",
]


@dataclass
class Revenue:
    campaigns: pd.DataFrame
    attribution: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"revenue": self.campaigns, "attribution": self.attribution}


def _credited_by(credited: pd.DataFrame) -> pd.DataFrame:
    """Credited bookings per campaign and currency: `bookings` and `value` (a booking without a value counts,
    under currency "", and adds nothing)."""
    if credited.empty:
        return pd.DataFrame(columns=["campaign_id", "currency", "bookings", "value"])
    rows = credited.dropna(subset=["delivery_id"]).assign(
        currency=lambda f: f["currency"].fillna("").where(f["value"].notna(), ""),
        value=lambda f: pd.to_numeric(f["value"], errors="coerce").fillna(0.0).astype(float),
    )
    return rows.groupby(["campaign_id", "currency"], as_index=False).agg(
        bookings=("conversion_id", "size"), value=("value", "sum")
    )


def _people(emails: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    sent = emails[emails["sent"]]
    return sent.groupby(by).agg(delivered=("delivered", "sum"), mailed=("contact_id", "nunique")).reset_index()


def _ratios(table: pd.DataFrame, min_group: int) -> pd.DataFrame:
    out = table.copy()
    for rate, (numerator, denominator) in REVENUE_RATES.items():
        shown = out[denominator] >= max(min_group, 1)
        out[rate] = (out[numerator] / out[denominator].where(shown)).astype(float)
    return out


def revenue_table(emails: pd.DataFrame, credited: pd.DataFrame, min_group: int = MIN_GROUP) -> pd.DataFrame:
    """See `campaigns` in the module contract. `emails`: the flags of every email (`add_conversions`);
    `credited`: `attribute`'s rows (one per booking, with its campaign)."""
    if emails.empty:
        return pd.DataFrame(columns=REVENUE_COLUMNS)
    people = _people(emails, ["campaign_id"])
    booked = _credited_by(credited)
    per = people.merge(booked, on="campaign_id", how="left")
    per = per.assign(
        currency=per["currency"].fillna(""),
        bookings=per["bookings"].fillna(0).astype("int64"),
        value=per["value"].fillna(0.0).astype(float),
    )
    everyone = _people(emails.assign(campaign_id=TOTAL), ["campaign_id"])
    over = booked.groupby("currency", as_index=False)[["bookings", "value"]].sum()
    if over.empty:
        over = pd.DataFrame({"currency": [""], "bookings": [0], "value": [0.0]})
    totals = everyone.merge(over.assign(campaign_id=TOTAL), on="campaign_id")
    table = pd.concat([per.sort_values(["campaign_id", "currency"]), totals], ignore_index=True)
    table = table.astype({"bookings": "int64", "delivered": "int64", "mailed": "int64", "value": float})
    return _ratios(table, min_group)[REVENUE_COLUMNS].reset_index(drop=True)


def attribution_table(
    settled: pd.DataFrame, stored: pd.DataFrame, conversions: pd.DataFrame, window_days: int
) -> pd.DataFrame:
    """See `attribution` in the module contract: `attribute` run as it is (its last-click rows are what last
    click alone credits) and without the clicks (then every booking goes to its last delivered email)."""
    by_click = attribute(settled, stored, conversions, window_days)
    by_click = by_click[by_click["rule"] == LAST_CLICK]
    no_clicks = stored[stored["kind"] != "clicked"] if not stored.empty else stored
    by_send = attribute(settled, no_clicks, conversions, window_days)
    by_send = by_send[by_send["rule"] == LAST_DELIVERED]
    clicked = _credited_by(by_click).rename(columns={"bookings": "last_click", "value": "last_click_value"})
    delivered = _credited_by(by_send).rename(columns={"bookings": "last_delivered", "value": "last_delivered_value"})
    table = clicked.merge(delivered, on=["campaign_id", "currency"], how="outer")
    if table.empty:
        return pd.DataFrame(columns=ATTRIBUTION_COLUMNS)
    for column in ("last_click", "last_delivered"):
        table[column] = table[column].fillna(0).astype("int64")
        table[f"{column}_value"] = table[f"{column}_value"].fillna(0.0).astype(float)
    return table[ATTRIBUTION_COLUMNS].sort_values(["campaign_id", "currency"]).reset_index(drop=True)


def load_revenue(
    engine: Engine, attribution: AttributionSettings | None = None, *, min_group: int = MIN_GROUP
) -> Revenue:
    """See the module contract."""
    rules = attribution or AttributionSettings()
    ledger, stored = ledger_and_events(engine, None, None)
    settled = delivery_flags(ledger, stored)
    conversions = conversion_events(engine, rules.conversions, None)
    credited = attribute(settled, stored, conversions, rules.window_days)
    emails = add_conversions(settled, credited)
    return Revenue(
        campaigns=revenue_table(emails, credited, min_group),
        attribution=attribution_table(settled, stored, conversions, rules.window_days),
    )
