"""What a queued email would meet if it were sent now: the reach a resume shows before it is confirmed.

Contract: `queued_not_mailable(conn, campaign_id)` counts a campaign's queued ledger rows whose person the
sender would refuse at this moment, by the sender's own reasons (`ledger.unsendable_reason`, in its order):
`erased` (the contact is gone), `suppressed: <reason>` (unsubscribed, bounced, complained, by hand), `no
marketing consent` (withdrawn, or a signup still unconfirmed). The rows stay queued: at send time the
sender marks them skipped with the same reason; this only says so first. A person's own pause (an attribute)
is judged by the sender alone and not counted here.
"""

from __future__ import annotations

from sqlalchemy import Connection, case, func, select

from needlecast.store.schema import contacts, deliveries, suppressions


def queued_not_mailable(conn: Connection, campaign_id: str) -> dict[str, int]:
    """Queued rows of `campaign_id` the sender would not send now, by reason (see the module contract)."""
    reason = case(
        (contacts.c.id.is_(None), "erased"),
        (suppressions.c.reason.is_not(None), "suppressed: " + func.coalesce(suppressions.c.reason, "")),
        ((contacts.c.status == "pending") | ~contacts.c.marketing_consent, "no marketing consent"),
        else_="",
    ).label("reason")
    joined = deliveries.outerjoin(contacts, contacts.c.id == deliveries.c.contact_id).outerjoin(
        suppressions, suppressions.c.email_hash == contacts.c.email_hash
    )
    found = (
        select(reason, func.count())
        .select_from(joined)
        .where(deliveries.c.campaign_id == campaign_id, deliveries.c.status == "queued")
        .group_by(reason)
    )
    return {str(why): int(count) for why, count in conn.execute(found) if why}
