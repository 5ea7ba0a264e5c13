"""The database: SQLAlchemy 2 Core tables, an engine from a URL (SQLite default, PostgreSQL), migrations.

The one place for database-specific SQL and dialect branches (`tests/test_architecture.py` checks it): the
delivery store per database behind one protocol (`delivery/`), the hot paths' driver-level statements
(`driver.py`, `bulk.py`), reading the audience column-wise (`audience.py`) and the import's COPY path
(`contact_copy.py`). It imports nothing of needlecast's but `errors`.
"""

from needlecast.store.engine import open_store, upgrade
from needlecast.store.schema import metadata

__all__ = ["metadata", "open_store", "upgrade"]
