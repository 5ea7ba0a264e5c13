"""The database: SQLAlchemy 2 Core tables, an engine from a URL (SQLite default, PostgreSQL), migrations."""

from needlecast.store.engine import open_store, upgrade
from needlecast.store.schema import metadata

__all__ = ["metadata", "open_store", "upgrade"]
