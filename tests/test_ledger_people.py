"""What plans read of the ledger, on both databases.

The people a campaign's ledger holds, read one row per step (`store.ledger_people`), are exactly the rows the
ledger has, on both databases: every state, an erased person's negated id, ids beyond 32 bits, nothing of
another campaign; and the skipped rows are those skipped for the reason asked (its beginning, taken
literally). The other campaigns' emails within the cap's window (`store.cap_window`) are every campaign's
but this one's, before and after it in the index's order, in the states asked, sent or else due since the
moment asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select, update

from needlecast import ledger
from needlecast.store.cap_window import other_campaigns_emails
from needlecast.store.delivery import delivery_store
from needlecast.store.ledger_people import ledger_people
from needlecast.store.schema import deliveries

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _enqueue(
    engine: Engine,
    campaign: str,
    step: str,
    ids: list[int],
    status: str = "queued",
    error: str = "",
    due_at: datetime = NOW,
) -> None:
    with engine.begin() as conn:
        ledger.enqueue_columns(
            delivery_store(conn),
            conn,
            {
                "campaign_id": campaign,
                "step_id": step,
                "contact_id": ids,
                "segment": "all",
                "variant": "general",
                "arm": "",
                "due_at": due_at,
                "status": status,
                "error": error,
            },
        )


def test_each_steps_people_are_the_ledgers_rows_of_that_step(engine: Engine) -> None:
    big = 2**40 + 7  # beyond a 32-bit integer
    _enqueue(engine, "spring", "s1", [*range(1, 1201), big])
    _enqueue(engine, "spring", "s2", [5, 6, 7])
    _enqueue(engine, "spring", "s2", [8, 9], status="skipped", error="capped: another email within 24 hours")
    _enqueue(engine, "spring", "s2", [10], status="skipped", error="suppressed: bounced")
    _enqueue(engine, "spring", "s2", [11], status="skipped", error="cappedX: not the prefix")
    _enqueue(engine, "spring", "s1", [1300], status="skipped", error="capped_ another underscore")
    _enqueue(engine, "other", "s1", [5000, 5001])
    with engine.begin() as conn:  # one row sent, one erased (its id negated), as a send and an erasure leave them
        conn.execute(update(deliveries).where(deliveries.c.contact_id == 6).values(status="sent"))
        conn.execute(update(deliveries).where(deliveries.c.contact_id == 7).values(contact_id=-999))

    with engine.connect() as conn:
        people = ledger_people(conn, "spring", "capped_")  # "_" is not a wildcard here
        capped = ledger_people(conn, "spring", "capped: ")
        rows = conn.execute(
            select(deliveries.c.step_id, deliveries.c.contact_id).where(deliveries.c.campaign_id == "spring")
        ).all()
        assert ledger_people(conn, "nobody", "capped: ") == {}

    expected: dict[str, set[int]] = {}
    for step, contact in rows:
        expected.setdefault(step, set()).add(int(contact))
    found = {step: p.contacts for step, p in people.items()}
    assert {step: set(ids.tolist()) for step, ids in found.items()} == expected
    assert {step: len(ids) for step, ids in found.items()} == {"s1": 1202, "s2": 7}  # no id lost or doubled
    assert big in found["s1"] and -999 in found["s2"] and str(found["s1"].dtype) == "int64"
    assert {step: sorted(p.skipped.tolist()) for step, p in capped.items()} == {"s1": [], "s2": [8, 9]}
    assert {step: sorted(p.skipped.tolist()) for step, p in people.items()} == {"s1": [1300], "s2": []}


def test_the_other_campaigns_emails_are_every_campaigns_but_this_ones_in_the_window(engine: Engine) -> None:
    since = NOW - timedelta(days=8)
    _enqueue(engine, "apple", "s1", [1, 2])  # before "spring" in the index's order
    _enqueue(engine, "spring", "s1", list(range(1, 500)))  # the campaign asked about: none of its rows
    _enqueue(engine, "zebra", "s1", [3])  # after it
    _enqueue(engine, "zebra", "s2", [4], due_at=since - timedelta(hours=1))  # due before the window...
    _enqueue(engine, "zebra", "s3", [5], due_at=since - timedelta(hours=1))  # ...but sent within it
    _enqueue(engine, "zebra", "s4", [6], status="cancelled")  # a state that does not count
    _enqueue(engine, "middle", "s1", [7], due_at=since)  # the window's first moment counts
    with engine.begin() as conn:
        sent = NOW - timedelta(days=1)
        conn.execute(
            update(deliveries)
            .where(deliveries.c.campaign_id == "zebra", deliveries.c.step_id.in_(["s2", "s3"]))
            .values(status="sent", sent_at=None)
        )
        conn.execute(
            update(deliveries)
            .where(deliveries.c.campaign_id == "zebra", deliveries.c.step_id == "s3")
            .values(sent_at=sent)
        )
    with engine.connect() as conn:
        found = other_campaigns_emails(conn, "spring", since, ("queued", "sent"))
        assert other_campaigns_emails(conn, "nobody", since, ("queued",)) != []  # every campaign is another one
    moments = {contact: at.astimezone(UTC) for contact, at in found}
    assert moments == {1: NOW, 2: NOW, 3: NOW, 5: sent, 7: since}
