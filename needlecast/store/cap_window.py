"""Other campaigns' emails within the frequency cap's window: what a plan weighs a campaign's emails against.

Contract: `other_campaigns_emails(conn, campaign_id, since, states)` gives (contact id, moment) for every ledger
row of another campaign in one of `states` whose moment (sent, or else due) is at or after `since`.

The other campaigns are found one index seek at a time through `ix_deliveries_campaign_window` (a "loose index
scan": the next campaign id after the one found), and only their rows are read. "Every row whose campaign is not
this one" read the whole ledger instead, on both databases: a broadcast being sent to 200,000 is most of it, and
the "Send now" confirmation plans it again on every view.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from needlecast.store.schema import deliveries


def other_campaigns_emails(
    conn: Connection, campaign_id: str, since: datetime, states: Sequence[str]
) -> list[tuple[int, Any]]:
    """(contact id, sent or due moment) of the other campaigns' rows in `states` from `since` on."""
    d = deliveries.c
    after = deliveries.alias("after")
    campaigns = select(func.min(d.campaign_id).label("id")).cte("campaigns", recursive=True)
    following = select(
        select(func.min(after.c.campaign_id)).where(after.c.campaign_id > campaigns.c.id).scalar_subquery()
    ).where(campaigns.c.id.is_not(None))
    campaigns = campaigns.union_all(following)
    moment = func.coalesce(d.sent_at, d.due_at)
    rows = conn.execute(
        select(d.contact_id, moment)
        .select_from(campaigns.join(deliveries, d.campaign_id == campaigns.c.id))
        .where(campaigns.c.id != campaign_id, d.status.in_(states), moment >= since)
    ).all()
    return [(int(contact), at) for contact, at in rows]
