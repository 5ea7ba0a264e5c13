"""Conversions: bookings (or any event type named in `[attribution] conversions`) credited to our emails.

Contract: `attribute(deliveries, provider_events, conversions, window_days)` credits each conversion to the
last email of ours that the person clicked within `window_days` before it ("last click"), else to the last
one sent to them within the window ("last delivered": sent, and not bounced or dropped, by the email's one
fate when `deliveries` carries the settled `bounced` and `dropped` flags); a conversion with
neither stays unattributed (`rule` "none"). One row per conversion: its id, type, time, value and currency,
the rule that applied, and the delivery with its campaign, step, segment, variant and arm. Vectorised
(pandas merges), no personal data in the result.
"""

from __future__ import annotations

import pandas as pd

GROUP = ["campaign_id", "step_id", "segment", "variant", "arm"]
COLUMNS = ["conversion_id", "type", "occurred_at", "value", "currency", "rule", "delivery_id", *GROUP]
LAST_CLICK, LAST_DELIVERED, NONE = "last click", "last delivered", "none"


def _latest(candidates: pd.DataFrame, moment: str) -> pd.DataFrame:
    """Per conversion, the candidate with the latest `moment`."""
    if candidates.empty:
        return candidates
    ordered = candidates.sort_values(["conversion_id", moment, "delivery_id"])
    return ordered.groupby("conversion_id", sort=False).tail(1)


def attribute(
    deliveries: pd.DataFrame, provider_events: pd.DataFrame, conversions: pd.DataFrame, window_days: int
) -> pd.DataFrame:
    """See the module contract. `deliveries`: id, contact_id, sent_at, status, outcome and the group columns;
    `provider_events`: delivery_id, kind, occurred_at; `conversions`: conversion_id, contact_id, type,
    occurred_at, value, currency."""
    if conversions.empty:
        return pd.DataFrame(columns=COLUMNS)
    window = pd.Timedelta(days=window_days)
    conv = conversions.copy()
    conv["occurred_at"] = pd.to_datetime(conv["occurred_at"], utc=True)
    sent = deliveries[deliveries["status"] == "sent"].rename(columns={"id": "delivery_id"})
    sent = sent.assign(sent_at=pd.to_datetime(sent["sent_at"], utc=True))
    clicks = pd.DataFrame(columns=["delivery_id", "clicked_at"])
    if not provider_events.empty:
        clicked = provider_events[(provider_events["kind"] == "clicked") & provider_events["delivery_id"].notna()]
        clicks = pd.DataFrame(
            {
                "delivery_id": clicked["delivery_id"].astype("int64"),
                "clicked_at": pd.to_datetime(clicked["occurred_at"], utc=True),
            }
        )
    people = conv.dropna(subset=["contact_id"]).astype({"contact_id": "int64"})
    by_click = people.merge(sent[["delivery_id", "contact_id"]], on="contact_id").merge(clicks, on="delivery_id")
    by_click = by_click[
        (by_click["clicked_at"] <= by_click["occurred_at"])
        & (by_click["clicked_at"] >= by_click["occurred_at"] - window)
    ]
    clicked_best = _latest(by_click, "clicked_at")[["conversion_id", "delivery_id"]].assign(rule=LAST_CLICK)
    rest = people[~people["conversion_id"].isin(clicked_best["conversion_id"])]
    # An email's fate (`data.settle`: bounced or dropped, whatever came later) when the caller has settled it;
    # else the ledger's outcome (the latest report, which a later deferral or delivery can hide).
    settled = {"bounced", "dropped"} <= set(sent.columns)
    bounced = (sent["bounced"] | sent["dropped"]) if settled else sent["outcome"].isin(["bounced", "dropped"])
    by_send = rest.merge(sent.loc[~bounced, ["delivery_id", "contact_id", "sent_at"]], on="contact_id")
    by_send = by_send[
        (by_send["sent_at"] <= by_send["occurred_at"]) & (by_send["sent_at"] >= by_send["occurred_at"] - window)
    ]
    sent_best = _latest(by_send, "sent_at")[["conversion_id", "delivery_id"]].assign(rule=LAST_DELIVERED)
    credited = pd.concat([df for df in (clicked_best, sent_best) if not df.empty] or [clicked_best], ignore_index=True)
    result = conv.merge(credited, on="conversion_id", how="left")
    result["rule"] = result["rule"].fillna(NONE)
    result = result.merge(sent[["delivery_id", *GROUP]], on="delivery_id", how="left")
    return result[COLUMNS].sort_values(["occurred_at", "conversion_id"]).reset_index(drop=True)
