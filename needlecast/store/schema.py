"""Table definitions (SQLAlchemy Core). Alembic migrations in `needlecast/store/migrations` create them.

Privacy: the only personal data is in `contacts` (address, names, concerns) and `consent_events`.
Suppressions hold a keyed hash of the address, never the address, so an erased person stays suppressed
without their data being kept.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from needlecast.store.types import UtcDateTime as DateTime

metadata = MetaData()

# Key/value facts about the store itself (e.g. the key of the address hash).
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("email_hash", String(64), nullable=False, unique=True),
    Column("first_name", String(200), nullable=False, default=""),
    Column("last_name", String(200), nullable=False, default=""),
    # Canonical concerns, ";"-joined in the order given (the first is the primary concern).
    Column("concerns", String(200), nullable=False, default=""),
    Column("time_zone", String(64), nullable=False, default=""),
    Column("locale", String(16), nullable=False, default=""),
    Column("tags", String(500), nullable=False, default=""),
    # active: may be mailed when consent allows; pending: double opt-in not yet confirmed.
    Column("status", String(16), nullable=False, default="active"),
    # Current consent, kept in step with the append-only consent_events history.
    Column("marketing_consent", Boolean, nullable=False, default=False),
    Column("concern_consent", Boolean, nullable=False, default=False),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("signed_up_at", DateTime(), nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
)

contact_lists = Table(
    "contact_lists",
    metadata,
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("list_name", String(100), primary_key=True),
    Index("ix_contact_lists_list", "list_name"),
)

consent_events = Table(
    "consent_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("contact_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, index=True),
    Column("purpose", String(16), nullable=False),  # marketing | concern
    Column("action", String(16), nullable=False),  # granted | withdrawn | pending | confirmed
    Column("source", String(200), nullable=False),
    Column("wording_version", String(100), nullable=False, default=""),
    Column("recorded_at", DateTime(), nullable=False),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email_hash", String(64), primary_key=True),
    Column("reason", String(32), nullable=False),  # unsubscribed | hard_bounce | complaint | manual | erased
    Column("source", String(200), nullable=False, default=""),
    Column("created_at", DateTime(), nullable=False),
)

imports = Table(
    "imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_name", String(300), nullable=False),
    Column("list_name", String(100), nullable=False, default=""),
    Column("status", String(16), nullable=False),  # completed | failed
    Column("rows_read", Integer, nullable=False, default=0),
    Column("inserted", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("error", Text, nullable=False, default=""),
    Column("started_at", DateTime(), nullable=False),
    Column("finished_at", DateTime(), nullable=True),
)
