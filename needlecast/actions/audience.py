"""Audience actions: import a file of contacts.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.audience.importer import ImportSummary, Progress, import_file
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for

if TYPE_CHECKING:
    pass


def import_audience(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    path: Path,
    *,
    list_name: str = "",
    mapping: dict[str, str] | None = None,
    progress: Progress | None = None,
    source_name: str | None = None,
) -> ImportSummary:
    """Import a CSV or XLSX file (see `audience.importer`), audited with its counts."""
    require(actor, "audiences.import")
    summary = import_file(
        engine,
        path,
        load_vocabulary_for(workspace),
        list_name=list_name,
        mapping=mapping,
        progress=progress,
        limits=workspace.settings.imports,
    )
    with engine.begin() as conn:
        audit.record(
            conn,
            actor,
            "audience.imported",
            f"import:#{summary.import_id}",
            file=source_name or path.name,
            read=summary.read,
            inserted=summary.inserted,
            updated=summary.updated,
            duplicates=summary.duplicates,
            rejected=summary.rejected,
        )
    return summary
