"""Settings actions: upgrade the database's schema; make a new workspace.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require

if TYPE_CHECKING:
    pass


def upgrade_database(url: str, actor: Actor) -> tuple[str | None, str]:
    """Apply pending schema migrations (`store.engine.upgrade`); returns the revisions before and after. A
    change is audited as `database.upgraded`, right after it (the audit log is a table of that schema)."""
    from needlecast.store.engine import current_revision, make_engine, upgrade

    require(actor, "database.upgrade")
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        after = upgrade(engine)
        if before != after:
            with engine.begin() as conn:
                audit.record(conn, actor, "database.upgraded", "database", before=before or "empty", after=after)
    finally:
        engine.dispose()
    return before, after


def create_workspace(directory: Path, *, force: bool = False) -> list[Path]:
    """Make a new workspace in `directory` (`scaffold.init_workspace`): the sample article, templates and
    audience, and example campaigns as drafts; returns the files made. A folder that is a workspace already
    is refused (`ConfigurationError`) unless `force`.

    The one change outside the actions' contract: it takes no actor and writes no audit entry, because there
    is no store yet (the audit log is a table of the database the workspace's first command creates)."""
    from needlecast.scaffold import init_workspace

    return init_workspace(directory, force=force)
