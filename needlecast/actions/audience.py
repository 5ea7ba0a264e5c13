"""Audience actions: import a file of contacts, import a file of events, save a segment built in the console.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.audience.columns import load_mapping
from needlecast.audience.event_import import EventImport, import_events
from needlecast.audience.importer import ImportSummary, Progress, import_file
from needlecast.audience.segment_rows import Row, segment_of, write_segment
from needlecast.audience.segments import Segment
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for

if TYPE_CHECKING:
    pass


def save_segment(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    name: str,
    description: str,
    rows: list[Row],
    replacing: str | None = None,
) -> Segment:
    """Write the segment `name` built from `rows` into `audiences/segments.yaml` (a new one with `replacing`
    None, else in the place of the segment `replacing`, renamed when the names differ), through the loader
    that validates the file, keeping every other segment (see `audience.segment_rows`). Needs `segments.edit`;
    `SegmentRowsError` (by row) or `ConfigurationError` (in words) and nothing written on a mistake; audited
    as `segment.saved` on `segment:<name>` with how many rows it has."""
    require(actor, "segments.edit")
    known = load_vocabulary_for(workspace).names
    segment, spec = segment_of(name, description, rows, known)
    write_segment(workspace.audiences_dir / "segments.yaml", name, spec, replacing, known)
    with engine.begin() as conn:
        audit.record(
            conn,
            actor,
            "segment.saved",
            f"segment:{name}",
            rows=sum(1 for r in rows if r.field),
            renamed_from=replacing if replacing and replacing != name else "",
        )
    return segment


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
    mapping_file: Path | None = None,
) -> ImportSummary:
    """Import a CSV or XLSX file (see `audience.importer`), audited with its counts. The column mapping is
    `mapping` or, with `mapping_file`, the YAML file's (`audience.columns.load_mapping`: 'Correo: email')."""
    require(actor, "audiences.import")
    if mapping_file is not None:
        mapping = {**load_mapping(mapping_file), **(mapping or {})}
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


def import_event_file(engine: Engine, workspace: Workspace, actor: Actor, path: Path, source: str = "") -> EventImport:
    """Import events from a booking system's export (see `audience.event_import`): each stored once per id,
    bad rows to `PATH.rejects.csv`. Needs `events.write`; audited as `events.imported` on `file:<name>` with
    every count, in the same transaction as the events. `source` defaults to `file:<name>`."""
    require(actor, "events.write")
    return import_events(
        engine, actor, path, source or f"file:{path.name}", workspace.settings.imports, datetime.now(UTC)
    )
