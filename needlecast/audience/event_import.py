"""`needlecast events import FILE`: events from a booking system's export, with a rejects file.

Contract: `import_events(engine, actor, path, source, limits, now)` reads a CSV or XLSX (the audience
importer's reader, limits and rejects file), recognises the columns by header (`id` / `booking id` /
`event id`, `email`, `type` / `event`, `occurred_at` / `date` / `time`, `value` / `amount`, `currency`),
validates every row on its own (`audience.events.validate_event`), stores the good ones once per id in one
transaction (those for an erased address are dropped and counted, never stored), and writes the others to
`FILE.rejects.csv` with their line and reason. `read = stored + duplicates + dropped + rejected`, always.
Audited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.audience.events import ContactEvent, EventProblem, store_events, validate_event
from needlecast.audience.rejects import write_rejects
from needlecast.audience.table import read_table
from needlecast.config import ImportSettings
from needlecast.errors import AudienceFileError

ALIASES = {
    "id": ("id", "booking id", "event id", "reference", "booking reference"),
    "email": ("email", "e-mail", "email address", "client email", "customer email"),
    "type": ("type", "event", "event type", "status"),
    "occurred_at": ("occurred at", "occurred_at", "date", "time", "when", "booked at", "timestamp"),
    "value": ("value", "amount", "price", "total"),
    "currency": ("currency",),
}


def _fold(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


@dataclass
class EventImport:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    dropped: int = 0  # for an erased address: never stored
    rejected: int = 0
    rejects_path: Path | None = None


def import_events(
    engine: Engine, actor: Actor, path: Path, source: str, limits: ImportSettings, now: datetime
) -> EventImport:
    require(actor, "events.write")
    table = read_table(path, limits)
    folded = {_fold(alias): name for name, aliases in ALIASES.items() for alias in aliases}
    columns: dict[str, int] = {}
    for index, header in enumerate(table.headers):
        name = folded.get(_fold(header))
        if name and name not in columns:
            columns[name] = index
    missing = [name for name in ("id", "email", "type", "occurred_at") if name not in columns]
    if missing:
        raise AudienceFileError(
            f"{path}: no column for {', '.join(missing)}. Columns found: "
            f"{', '.join(repr(h) for h in table.headers)}; name them id, email, type, "
            "occurred_at (and value, currency)"
        )
    summary = EventImport()
    good: list[ContactEvent] = []
    rejects: list[tuple[int, str, list[str]]] = []
    for line, cells in table.rows:
        summary.read += 1
        raw = {name: cells[i] if i < len(cells) else "" for name, i in columns.items()}
        result = validate_event(raw, line)
        if isinstance(result, EventProblem):
            rejects.append((line, f"{result.field}: {result.message}", cells))
        else:
            good.append(result)
    with engine.begin() as conn:
        stored = store_events(conn, good, source, now)
        audit.record(
            conn,
            actor,
            "events.imported",
            f"file:{path.name}",
            read=summary.read,
            stored=stored.stored,
            duplicates=stored.duplicates,
            dropped=stored.dropped,
            rejected=len(rejects),
        )
    summary.stored, summary.duplicates, summary.dropped = stored.stored, stored.duplicates, stored.dropped
    summary.rejected = len(rejects)
    summary.rejects_path = write_rejects(path, table.headers, rejects)
    return summary
