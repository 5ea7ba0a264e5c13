"""Each sent email's events summed up as they arrive (`email_summaries`), so reports count a million emails,
not ten million events.

One row per ledger row with events, keyed by `delivery_id`, holding what every report figure needs of its
events (`store/reports.py` reads it, with the ledger row, for the definitions of `reports.metrics.METRICS`):
- `seen`: a bit per event kind it had (delivered 1, bounced 2, blocked 4, dropped 8, opened 16, clicked 32,
  unsubscribed or group_unsubscribed 64, complained 128);
- `delivered_at`: its first delivered event; `human_open_at`: its last open not marked a machine's;
- `opens`, `clicks`: how many open and click events.
Every column is an OR, a least, a greatest or a sum over the events: the same whatever order the events come
in, in however many statements and transactions, so an event that arrives late (a bounce after a delivery,
an open before the delivered event) changes the row exactly as if it had come in order.

The database keeps it, in the transaction that writes the events, whoever writes them (the webhook, the
benchmarks' COPY, a test's INSERT): triggers on `events` add each new event to its email's row with one
upsert whose every column is combined with the row already there (`seen | new`, `least`, `greatest`,
`+`), so two transactions adding events to one email at once both count (PostgreSQL's ON CONFLICT DO
UPDATE waits for the other and updates the row it committed). A deleted or changed event (the tests empty
the table; needlecast itself never changes or deletes an event) has its emails' rows counted again from
their remaining events; TRUNCATE empties the summary.

The upgrade fills the table from the events already stored (one pass over `ix_events_delivery_kind` and
`ix_events_human_opens`) with the events table locked against writes, then adds the triggers, so no event
is counted twice or missed.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from needlecast.store.types import UtcDateTime

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# `store.reports.KIND_BITS` when this was written: an email's `seen` mask.
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
KINDS = ", ".join(f"'{kind}'" for kind in KIND_BITS)
COLUMNS = "delivery_id, seen, delivered_at, human_open_at, opens, clicks"
HUMAN_OPEN = "kind = 'opened' AND detail <> 'machine'"  # an open not marked a machine's (`sg_machine_open`)


def _aggregate(sqlite: bool, source: str, where: str = "") -> str:
    """Per email of `source` (a table of events): its summary row, in delivery order."""
    if sqlite:  # no bit_or aggregate: the mask as a sum of per-bit maxima
        by_bit: dict[int, list[str]] = {}
        for kind, bit in KIND_BITS.items():
            by_bit.setdefault(bit, []).append(f"'{kind}'")
        seen = " + ".join(f"{bit} * max(kind IN ({', '.join(kinds)}))" for bit, kinds in by_bit.items())
        delivered = "min(CASE WHEN kind = 'delivered' THEN occurred_at END)"
        human = f"max(CASE WHEN {HUMAN_OPEN} THEN occurred_at END)"
        counts = "sum(kind = 'opened'), sum(kind = 'clicked')"
    else:
        bits = " ".join(f"WHEN '{kind}' THEN {bit}" for kind, bit in KIND_BITS.items())
        seen = f"bit_or(CASE kind {bits} ELSE 0 END)"
        delivered = "min(occurred_at) FILTER (WHERE kind = 'delivered')"
        human = f"max(occurred_at) FILTER (WHERE {HUMAN_OPEN})"
        counts = "count(*) FILTER (WHERE kind = 'opened'), count(*) FILTER (WHERE kind = 'clicked')"
    return f"""
        SELECT delivery_id, {seen}, {delivered}, {human}, {counts}
        FROM {source}
        WHERE delivery_id IS NOT NULL AND kind IN ({KINDS}) {where}
        GROUP BY delivery_id ORDER BY delivery_id"""


def _backfill(sqlite: bool) -> str:
    """Every email's row from the stored events. On PostgreSQL from the two indexes alone (index-only scans
    in delivery order, merged): `ix_events_delivery_kind` does not hold the open's machine mark, so each
    email's last human open comes from `ix_events_human_opens`."""
    if sqlite:
        return f"INSERT INTO email_summaries ({COLUMNS}) {_aggregate(True, 'events')}"
    bits = " ".join(f"WHEN '{kind}' THEN {bit}" for kind, bit in KIND_BITS.items())
    return f"""
        INSERT INTO email_summaries ({COLUMNS})
        SELECT e.delivery_id, e.seen, e.delivered_at, h.human_open_at, e.opens, e.clicks
        FROM (
            SELECT delivery_id,
                   bit_or(CASE kind {bits} ELSE 0 END) AS seen,
                   min(occurred_at) FILTER (WHERE kind = 'delivered') AS delivered_at,
                   count(*) FILTER (WHERE kind = 'opened') AS opens,
                   count(*) FILTER (WHERE kind = 'clicked') AS clicks
            FROM events WHERE delivery_id IS NOT NULL AND kind IN ({KINDS}) GROUP BY delivery_id
        ) e
        LEFT JOIN (
            SELECT delivery_id, max(occurred_at) AS human_open_at
            FROM events WHERE {HUMAN_OPEN} AND delivery_id IS NOT NULL GROUP BY delivery_id
        ) h ON h.delivery_id = e.delivery_id
        ORDER BY e.delivery_id"""


def _postgres_triggers() -> list[str]:
    """Statement triggers: the events a statement added (a COPY's million, a webhook's one) summed per email
    and merged into the rows there with one upsert, in delivery order (two transactions lock the rows they
    share in the same order: no deadlock)."""
    merge = """
        ON CONFLICT (delivery_id) DO UPDATE SET
            seen = s.seen | excluded.seen,
            delivered_at = least(s.delivered_at, excluded.delivered_at),
            human_open_at = greatest(s.human_open_at, excluded.human_open_at),
            opens = s.opens + excluded.opens,
            clicks = s.clicks + excluded.clicks"""
    recount = f"""
        DELETE FROM email_summaries WHERE delivery_id = ANY(ids);
        INSERT INTO email_summaries ({COLUMNS}) {_aggregate(False, "events", "AND delivery_id = ANY(ids)")};"""
    return [
        f"""CREATE FUNCTION email_summaries_add() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO email_summaries AS s ({COLUMNS}) {_aggregate(False, "added")} {merge};
            RETURN NULL;
        END $$""",
        f"CREATE FUNCTION email_summaries_recount(ids bigint[]) RETURNS void LANGUAGE sql AS $$ {recount} $$",
        """CREATE FUNCTION email_summaries_removed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM email_summaries_recount(ARRAY(SELECT DISTINCT delivery_id FROM removed));
            RETURN NULL;
        END $$""",
        """CREATE FUNCTION email_summaries_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM email_summaries_recount(
                ARRAY(SELECT delivery_id FROM removed UNION SELECT delivery_id FROM added));
            RETURN NULL;
        END $$""",
        """CREATE FUNCTION email_summaries_emptied() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            TRUNCATE email_summaries;
            RETURN NULL;
        END $$""",
        "CREATE TRIGGER email_summaries_add AFTER INSERT ON events REFERENCING NEW TABLE AS added"
        " FOR EACH STATEMENT EXECUTE FUNCTION email_summaries_add()",
        "CREATE TRIGGER email_summaries_removed AFTER DELETE ON events REFERENCING OLD TABLE AS removed"
        " FOR EACH STATEMENT EXECUTE FUNCTION email_summaries_removed()",
        "CREATE TRIGGER email_summaries_changed AFTER UPDATE ON events"
        " REFERENCING OLD TABLE AS removed NEW TABLE AS added"
        " FOR EACH STATEMENT EXECUTE FUNCTION email_summaries_changed()",
        "CREATE TRIGGER email_summaries_emptied AFTER TRUNCATE ON events"
        " FOR EACH STATEMENT EXECUTE FUNCTION email_summaries_emptied()",
    ]


def _sqlite_triggers() -> list[str]:
    """Row triggers (SQLite has no others; its writers take turns, so the upsert never races). Its min and
    max of two values are NULL when either is: each side falls back on the other."""
    bits = " ".join(f"WHEN '{kind}' THEN {bit}" for kind, bit in KIND_BITS.items())

    def recount(row: str) -> str:
        return f"""
            DELETE FROM email_summaries WHERE delivery_id = {row}.delivery_id;
            INSERT INTO email_summaries ({COLUMNS})
                {_aggregate(True, "events", f"AND delivery_id = {row}.delivery_id")};"""

    return [
        f"""CREATE TRIGGER email_summaries_add AFTER INSERT ON events
        WHEN NEW.delivery_id IS NOT NULL AND NEW.kind IN ({KINDS})
        BEGIN
            INSERT INTO email_summaries ({COLUMNS}) VALUES (
                NEW.delivery_id,
                CASE NEW.kind {bits} ELSE 0 END,
                CASE WHEN NEW.kind = 'delivered' THEN NEW.occurred_at END,
                CASE WHEN NEW.kind = 'opened' AND NEW.detail <> 'machine' THEN NEW.occurred_at END,
                NEW.kind = 'opened',
                NEW.kind = 'clicked')
            ON CONFLICT (delivery_id) DO UPDATE SET
                seen = seen | excluded.seen,
                delivered_at = min(coalesce(delivered_at, excluded.delivered_at),
                                   coalesce(excluded.delivered_at, delivered_at)),
                human_open_at = max(coalesce(human_open_at, excluded.human_open_at),
                                    coalesce(excluded.human_open_at, human_open_at)),
                opens = opens + excluded.opens,
                clicks = clicks + excluded.clicks;
        END""",
        f"""CREATE TRIGGER email_summaries_removed AFTER DELETE ON events WHEN OLD.delivery_id IS NOT NULL
        BEGIN {recount("OLD")} END""",
        f"""CREATE TRIGGER email_summaries_changed AFTER UPDATE OF delivery_id, kind, occurred_at, detail ON events
        BEGIN {recount("OLD")} {recount("NEW")} END""",
    ]


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    op.create_table(
        "email_summaries",
        sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("seen", sa.Integer, nullable=False),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        sa.Column("human_open_at", UtcDateTime(), nullable=True),
        sa.Column("opens", sa.BigInteger, nullable=False),
        sa.Column("clicks", sa.BigInteger, nullable=False),
    )
    if not sqlite:  # no event may be written between the backfill and the triggers (SQLite's writer waits)
        bind.exec_driver_sql("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
        bind.exec_driver_sql("SET LOCAL jit = off")
        bind.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
    bind.exec_driver_sql(_backfill(sqlite))
    for statement in _sqlite_triggers() if sqlite else _postgres_triggers():
        bind.exec_driver_sql(statement)


def downgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    for trigger in ("add", "removed", "changed", *(() if sqlite else ("emptied",))):
        bind.exec_driver_sql(f"DROP TRIGGER email_summaries_{trigger}" + ("" if sqlite else " ON events"))
    if not sqlite:
        for function in ("add()", "removed()", "changed()", "emptied()", "recount(bigint[])"):
            bind.exec_driver_sql(f"DROP FUNCTION email_summaries_{function}")
    op.drop_table("email_summaries")
