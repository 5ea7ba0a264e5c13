"""The delivery store: the ledger's SQL, one implementation per database behind one protocol.

`delivery_store(bind)` returns the store for an engine or connection: `SqliteDeliveryStore` or
`PostgresDeliveryStore`. The domain (`needlecast.ledger`, the planner, the dispatcher, the webhook) speaks
only to `DeliveryStore`; every hand-written statement, parameter binding, queue upkeep and write turn of
the ledger lives behind it, and so does what a dispatch keeps beside the ledger (`sending.py`: campaign
state, claim tokens, request intents (`intents.py`), senders' heartbeats, the fleet's rate limits).
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from needlecast.store.delivery.postgres import PostgresDeliveryStore
from needlecast.store.delivery.protocol import (
    CAMPAIGN_ACTIVE,
    CAMPAIGN_CANCELLED,
    CAMPAIGN_PAUSED,
    CANCELLED,
    CLAIMED_FIELDS,
    FAILED,
    QUEUE_ENTRY_SIZE,
    QUEUED,
    SENDING,
    SENT,
    SKIPPED,
    STATUSES,
    UNKNOWN,
    DeliveryStore,
    RequestEvidence,
)
from needlecast.store.delivery.sqlite import SqliteDeliveryStore

__all__ = [
    "CAMPAIGN_ACTIVE",
    "CAMPAIGN_CANCELLED",
    "CAMPAIGN_PAUSED",
    "CANCELLED",
    "CLAIMED_FIELDS",
    "FAILED",
    "QUEUED",
    "QUEUE_ENTRY_SIZE",
    "SENDING",
    "SENT",
    "SKIPPED",
    "STATUSES",
    "UNKNOWN",
    "DeliveryStore",
    "PostgresDeliveryStore",
    "RequestEvidence",
    "SqliteDeliveryStore",
    "delivery_store",
]


def delivery_store(bind: Engine | Connection) -> DeliveryStore:
    """The delivery store of this engine's (or connection's) database."""
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine.dialect.name == "sqlite":
        return SqliteDeliveryStore(engine)
    if engine.dialect.name == "postgresql":
        return PostgresDeliveryStore(engine)
    raise ValueError(f"no delivery store for {engine.dialect.name}: use SQLite or PostgreSQL")
