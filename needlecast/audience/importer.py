"""`needlecast audience import`: contacts from CSV/XLSX into the store.

Rules (documented in the README):
- Every row read ends in exactly one of: inserted, updated, duplicate (the address appeared earlier in the
  same file: the later row wins, field by field where it has a value) or rejected (written to
  `<file>.rejects.csv` with its line number, the reason and the original cells).
  read == inserted + updated + duplicates + rejected, always.
- A row for an address already in the store updates that contact: non-empty cells replace stored values,
  empty cells keep them. Lists and tags are added to, never removed.
- Consent: "yes"-like values grant, "no"-like values withdraw, "pending" starts double opt-in, an empty cell
  changes nothing. Each change appends to the consent history with the file as its source.
- An address erased on request is rejected, never re-imported.
- A concern the vocabulary does not know is kept as the tag `concern:<value>` (with a warning naming its
  lines), never guessed and never a rejection; dates are ISO or numeric in the column's order
  (`needlecast.audience.dates`).
- An import stops (as a failure) once `MAX_REJECT_RUN` rows in a row are rejected for one reason: such a
  file is not a contact export, and reading on only writes a huge rejects file.
- The import is one transaction: a failure at any point (or Ctrl-C) leaves the store as it was. The audit
  row of a failed import is written afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy import Engine, bindparam, insert, select, update

from needlecast.addresses import email_hasher, normalise_email
from needlecast.audience.columns import CONCERN_TAG, map_columns
from needlecast.audience.dates import DateColumns, DateProblem, Evidence
from needlecast.audience.rejects import Rejects
from needlecast.audience.table import Table as FileTable
from needlecast.audience.table import read_table
from needlecast.config import ImportSettings
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import AudienceFileError, InvalidAddress
from needlecast.logs import scrub
from needlecast.pacing import collect_seldom
from needlecast.store.audience import contact_ids_by_email
from needlecast.store.bulk import bulk_insert
from needlecast.store.contact_copy import contact_copier
from needlecast.store.helpers import hash_key, utcnow
from needlecast.store.schema import consent_events, contact_lists, contacts, imports, suppressions

Progress = Callable[[str, int, int], None]
CHUNK = 5000
# Rows rejected in a row for one reason after which an import stops: no contact export is like that.
MAX_REJECT_RUN = 1_000_000
# How many lines an unknown concern's warning names (the rest are counted), and how many unknown concerns
# get a warning of their own (the rest are counted in one more).
_WARN_LINES = 5
_WARN_VALUES = 20
_DATE_FIELDS = ("consent_date", "signed_up_at")

_YES = {"yes", "y", "true", "1", "x", "opted in", "opt in", "optin", "granted", "subscribed", "on"}
_NO = {"no", "n", "false", "0", "opted out", "opt out", "withdrawn", "unsubscribed", "off", "declined"}
_PENDING = {"pending", "unconfirmed", "awaiting confirmation"}
_SPLIT = re.compile(r"\s*[;,/|]\s*")
MAX_NAME = 200


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


@dataclass
class ImportSummary:
    source: str
    read: int = 0
    inserted: int = 0
    updated: int = 0
    duplicates: int = 0
    conflicting_duplicates: int = 0
    rejected: int = 0
    rejects_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    import_id: int | None = None

    @property
    def reconciles(self) -> bool:
        return self.read == self.inserted + self.updated + self.duplicates + self.rejected


class _RowError(ValueError):
    pass


@lru_cache(maxsize=1024)
def _consent(value: str, column: str) -> str | None:
    folded = " ".join(value.strip().lower().replace("-", " ").replace("_", " ").split())
    if not folded:
        return None
    if folded in _YES:
        return "granted"
    if folded in _NO:
        return "withdrawn"
    if folded in _PENDING:
        return "pending"
    raise _RowError(f"{column.replace('_', ' ')} '{value}' is not yes/no/pending")


@dataclass
class _Record:
    """One address's merged values from the file (later rows win where they have a value)."""

    line: int
    values: dict[str, Any]
    attributes: dict[str, str]
    lists: set[str]
    again: bool = False  # the address was written from an earlier part of the file: applied as its update


def _parse_row(
    cells: list[str], fields: dict[str, int], attrs: dict[str, int], vocabulary: Vocabulary, dates: DateColumns
) -> tuple[str, dict[str, Any], dict[str, str], set[str], tuple[str, ...]]:
    """(address, contact values, attributes, lists, unknown concerns) of one row; `_RowError` with the reason
    when the row is rejected."""
    width = len(cells)

    def cell(name: str) -> str:
        index = fields.get(name)
        return cells[index].strip() if index is not None and index < width else ""

    try:
        email = normalise_email(cell("email"))
    except InvalidAddress as err:
        raise _RowError(f"invalid email address: {err}") from None
    values: dict[str, Any] = {}
    for name in ("first_name", "last_name"):
        text = " ".join(cell(name).split())
        if len(text) > MAX_NAME:
            raise _RowError(f"{name} is longer than {MAX_NAME} characters")
        if text:
            values[name] = text
    concerns, unknown = _concerns(cell("concerns"), vocabulary)
    if concerns:
        values["concerns"] = concerns
    zone = cell("time_zone")
    if zone:
        if zone not in _zones():
            raise _RowError(f"unknown time zone '{zone}' (use an IANA name such as Europe/London)")
        values["time_zone"] = zone
    locale = cell("locale")
    if locale:
        values["locale"] = locale[:16]
    for name in ("marketing_consent", "concern_consent"):
        state = _consent(cell(name), name)
        if state:
            values[name] = state
    for name in _DATE_FIELDS:
        try:
            stamp = dates.parse(name, cell(name))
        except DateProblem as err:
            raise _RowError(str(err)) from None
        if stamp:
            values[name] = stamp
    wording = cell("consent_wording")
    if wording:
        values["consent_wording"] = wording[:100]
    tags = [t for t in _SPLIT.split(cell("tags")) if t] + [concern_tag(u) for u in unknown]
    if tags:
        values["tags"] = list(dict.fromkeys(tags))
    lists = {t for t in _SPLIT.split(cell("lists")) if t}
    attributes = {name: cells[i].strip() for name, i in attrs.items() if i < width and cells[i].strip()}
    return email, values, attributes, lists, unknown


def concern_tag(value: str) -> str:
    """The tag an unknown concern is kept as (`concern:rosacea`). It is health data like a concern: a
    segment that selects it leaves out contacts without concern consent (`audience.segments`)."""
    return CONCERN_TAG + " ".join(value.lower().split())


@lru_cache(maxsize=4096)  # a file repeats the same few concern spellings: parse each once
def _concerns(text: str, vocabulary: Vocabulary) -> tuple[str, tuple[str, ...]]:
    """(the known concerns of a cell, canonical and joined by ';'; the values the vocabulary does not know)."""
    canonical: list[str] = []
    unknown: list[str] = []
    for raw in _SPLIT.split(text):
        if not raw:
            continue
        concern = vocabulary.normalise(raw)
        if concern is None:
            unknown.append(raw)
        elif concern not in canonical:
            canonical.append(concern)
    return ";".join(canonical), tuple(unknown)


class _UnknownConcerns:
    """The unknown concerns of a file with the lines they are on, reported as one warning each."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.known = ", ".join(vocabulary.names)
        self.lines: dict[str, list[int]] = {}
        self.counts: dict[str, int] = {}
        self.others = 0  # values past `_WARN_VALUES`: counted, not named (a hostile file may have millions)

    def add(self, line: int, values: tuple[str, ...]) -> None:
        for value in values:
            tag = concern_tag(value)
            if tag not in self.counts and len(self.counts) >= _WARN_VALUES:
                self.others += 1
                continue
            self.counts[tag] = self.counts.get(tag, 0) + 1
            lines = self.lines.setdefault(tag, [])
            if len(lines) < _WARN_LINES:
                lines.append(line)

    def warnings(self) -> list[str]:
        found = []
        for tag, lines in self.lines.items():
            more = self.counts[tag] - len(lines)
            where = ", ".join(map(str, lines)) + (f" and {more:,} more" if more else "")
            found.append(
                f"line{'s' if self.counts[tag] > 1 else ''} {where}: the concern '{tag.removeprefix(CONCERN_TAG)}' "
                f"is not one the vocabulary knows ({self.known}), so it was kept as the tag '{tag}'. To use it "
                "to choose content, add it to a concern's synonyms in the vocabulary and import the file again."
            )
        if self.others:
            found.append(f"{self.others:,} more cells name other unknown concerns, kept as tags (concern:...) too")
        return found


class _RejectRun:
    """Stops an import once `MAX_REJECT_RUN` rows in a row are rejected for one reason (values in quotes
    aside: "unknown time zone 'X'" is one reason whatever X is)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.kind = ""
        self.first = (0, "")
        self.length = 0

    def rejected(self, line: int, reason: str) -> None:
        kind = re.sub(r"'[^']*'", "''", reason)
        if kind != self.kind:
            self.kind, self.first, self.length = kind, (line, reason), 0
        self.length += 1
        if self.length >= MAX_REJECT_RUN:
            raise AudienceFileError(
                f"{self.path}: lines {self.first[0]}-{line}: {self.length:,} rows in a row were rejected for one "
                f"reason ({self.first[1]}), so this is not a contact export: fix that and import it again"
            )

    def accepted(self) -> None:
        self.kind, self.length = "", 0


def import_file(
    engine: Engine,
    path: Path,
    vocabulary: Vocabulary,
    *,
    list_name: str = "",
    mapping: dict[str, str] | None = None,
    progress: Progress | None = None,
    limits: ImportSettings | None = None,
) -> ImportSummary:
    """Import `path` into the store (see the module rules); return the reconciled summary.

    A file that cannot be read, or that passes a limit (`[imports]`) midway, raises `AudienceFileError`
    naming the line; the store is left as it was and the failed attempt is recorded in the import audit.
    """
    summary = ImportSummary(source=path.name)
    started = utcnow()
    try:
        with collect_seldom(200_000):
            return _import(engine, path, vocabulary, list_name, mapping, progress, limits, summary, started)
    except BaseException as err:
        _record_failure(engine, path, list_name, summary, started, err)
        raise


def _record_failure(
    engine: Engine, path: Path, list_name: str, summary: ImportSummary, started: datetime, err: BaseException
) -> None:
    """The import audit's row for a failed attempt (its message scrubbed of addresses: a driver's error
    may quote the row it refused)."""
    with engine.begin() as conn:
        conn.execute(
            insert(imports),
            {
                "source_name": path.name,
                "list_name": list_name,
                "status": "failed",
                "rows_read": summary.read,
                "inserted": 0,
                "updated": 0,
                "duplicates": 0,
                "rejected": 0,
                "error": scrub(f"{type(err).__name__}: {err}")[:2000],
                "started_at": started,
                "finished_at": utcnow(),
            },
        )


def _import(
    engine: Engine,
    path: Path,
    vocabulary: Vocabulary,
    list_name: str,
    mapping: dict[str, str] | None,
    progress: Progress | None,
    limits: ImportSettings | None,
    summary: ImportSummary,
    started: datetime,
) -> ImportSummary:
    report = progress or (lambda _stage, _done, _total: None)
    limits = limits or ImportSettings()
    table = read_table(path, limits)
    fields, attrs = map_columns(table.headers, mapping or {}, str(path))
    summary.warnings = list(table.warnings)
    if "marketing_consent" not in fields:
        summary.warnings.append(
            "no marketing consent column: imported contacts are not mailed until consent is recorded "
            "(add a marketing consent column to the file, or record each contact's consent)"
        )
    dated = {name: fields[name] for name in _DATE_FIELDS if name in fields}
    dates = DateColumns(limits.date_order, lambda: _date_evidence(path, limits, dated))
    rejects = Rejects(path, table.headers)
    unknown = _UnknownConcerns(vocabulary)
    try:
        with engine.begin() as conn:
            writer = _Writer(engine, conn, summary, path.name, report, table.estimated_rows)
            with writer.behind:
                _stream(table, _Row(fields, attrs, vocabulary, dates, list_name), writer, rejects, unknown, path)
            report("writing", summary.read, summary.read)
            summary.rejected = rejects.count
            summary.import_id = conn.execute(
                insert(imports).returning(imports.c.id),
                {
                    "source_name": path.name,
                    "list_name": list_name,
                    "status": "completed",
                    "rows_read": summary.read,
                    "inserted": summary.inserted,
                    "updated": summary.updated,
                    "duplicates": summary.duplicates,
                    "rejected": summary.rejected,
                    "error": "",
                    "started_at": started,
                    "finished_at": utcnow(),
                },
            ).scalar_one()
    except BaseException:
        rejects.discard()
        raise
    summary.rejects_path = rejects.finish()
    summary.warnings += unknown.warnings()
    return summary


@dataclass(frozen=True)
class _Row:
    """How a row's cells become a contact's values: the columns, the vocabulary, the date orders."""

    fields: dict[str, int]
    attrs: dict[str, int]
    vocabulary: Vocabulary
    dates: DateColumns
    list_name: str


def _stream(
    table: FileTable, how: _Row, writer: _Writer, rejects: Rejects, unknown: _UnknownConcerns, path: Path
) -> None:
    """Read every row of `table` into the store through `writer`, counting each in `writer.summary`.

    The file streams through in parts of CHUNK addresses: only a part, and the set of addresses written so
    far, are ever held (rejected rows go straight to the rejects file). A repeat of an address from an
    earlier part is applied on top of what that part wrote (and counted as a duplicate), as a repeat within
    a part is merged.
    """
    summary = writer.summary
    width = len(table.headers)
    run = _RejectRun(path)
    part: dict[str, _Record] = {}
    for line, cells in table.rows:
        summary.read += 1
        if not summary.read % CHUNK:
            writer.report("reading", summary.read, max(summary.read, writer.total))
        try:
            if len(cells) > width:
                raise _RowError(f"has {len(cells)} fields, the header has {width}")
            email, values, attributes, lists, strange = _parse_row(
                cells, how.fields, how.attrs, how.vocabulary, how.dates
            )
        except _RowError as err:
            rejects.add(line, str(err), cells)
            run.rejected(line, str(err))
            continue
        run.accepted()
        unknown.add(line, strange)
        if how.list_name:
            lists.add(how.list_name)
        existing = part.get(email)
        if existing is None:
            again = email in writer.seen
            summary.duplicates += again
            part[email] = _Record(line, values, attributes, lists, again)
            if len(part) >= CHUNK:
                for late in writer.write(part):
                    rejects.add_late(*late)
                part = {}
            continue
        summary.duplicates += 1
        if any(existing.values.get(k, v) != v for k, v in values.items()):
            summary.conflicting_duplicates += 1
        existing.values.update(values)
        existing.attributes.update(attributes)
        existing.lists |= lists
    for late in writer.write(part):
        rejects.add_late(*late)


def _date_evidence(path: Path, limits: ImportSettings, columns: dict[str, int]) -> dict[str, Evidence]:
    """Each date column's `Evidence` of its order, from a second reading of the whole file (made only for a
    file with numeric dates and no `[imports] date_order`; it stops once every column is seen to mix)."""
    evidence = {name: Evidence() for name in columns}
    rows = read_table(path, limits).rows
    try:
        for line, cells in rows:
            for name, index in columns.items():
                if index < len(cells):
                    evidence[name].see(line, cells[index])
            if all(seen.settled for seen in evidence.values()):
                break
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
    return evidence


def _consent_changes(
    contact_id: int, values: dict[str, Any], current: dict[str, Any] | None, source: str, now: datetime
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(consent events to append, contact columns to set) for one contact."""
    events: list[dict[str, Any]] = []
    columns: dict[str, Any] = {}
    at = values.get("consent_date") or now
    wording = values.get("consent_wording", "")
    for name, purpose in (("marketing_consent", "marketing"), ("concern_consent", "concern")):
        state = values.get(name)
        has_now = bool(current and current[name])
        if state == "granted" and not has_now:
            columns[name] = True
        elif state == "withdrawn" and has_now:
            columns[name] = False
        elif state == "pending" and purpose == "marketing" and not has_now:
            columns["status"] = "pending"
        else:
            continue
        if state == "granted" and purpose == "marketing" and current and current["status"] == "pending":
            columns["status"] = "active"
        events.append(
            {
                "contact_id": contact_id,
                "purpose": purpose,
                "action": state,
                "source": source,
                "wording_version": wording,
                "recorded_at": at,
            }
        )
    return events, columns


class _Writer:
    """Writes an import's parts in its transaction (`conn`), in order.

    Into a store that was empty when the import began and that offers a copier (`store.contact_copy`:
    PostgreSQL), new contacts take ids reserved ahead, and this thread makes each part's rows ready without
    the database while a worker thread (`behind`) sends the part before: the server's work overlaps
    Python's. Otherwise (SQLite, or a store that had contacts) parts are written in this thread.
    """

    def __init__(
        self, engine: Engine, conn: Any, summary: ImportSummary, source_name: str, report: Progress, total: int
    ) -> None:
        self.engine = engine
        self.conn = conn
        self.summary = summary
        self.source = f"import:{source_name}"
        self.report = report
        self.total = total
        self.now = utcnow()
        self.hashed = email_hasher(hash_key(conn))
        self.erased = set(
            conn.execute(select(suppressions.c.email_hash).where(suppressions.c.reason == "erased")).scalars()
        )
        self.was_empty = conn.execute(select(contacts.c.id).limit(1)).first() is None
        self.copier = contact_copier(engine, conn) if self.was_empty else None
        self.behind = _WriteBehind(active=self.copier is not None)
        self.seen: set[str] = set()  # addresses written so far

    def write(self, part: dict[str, _Record]) -> list[tuple[int, str]]:
        """Write one part; the rejects it found (erased addresses): (line, reason)."""
        hashes = {email: self.hashed(email) for email in part}
        rejects: list[tuple[int, str]] = []
        for email in [e for e in part if hashes[e] in self.erased]:
            rejects.append((part.pop(email).line, "address was erased on request; it is not imported again"))
        self.seen.update(part)
        copier = self.copier
        if copier is None:
            self._write_rows(part, list(part), hashes)
            return rejects
        fresh = [email for email, record in part.items() if not record.again]
        again = [email for email, record in part.items() if record.again]
        if fresh:
            reserved = iter(copier.reserve_ids(len(fresh)))
            new_rows = _new_contacts(part, hashes, fresh, {}, self.source, self.now)
            ids: dict[str, int] = {}
            for row in new_rows:
                row["id"] = ids[row["email"]] = next(reserved)
            self.summary.inserted += len(new_rows)
            rows = _batch_rows(part, fresh, {}, ids, self.summary, self.source, self.now)
            prepared = copier.prepare(new_rows, rows.events, rows.list_rows)
            self.behind.submit(lambda: copier.send(prepared))
        if again:  # rare: in this thread, after the parts before (their counts are this thread's too)
            self.behind.drain()
            self._write_rows(part, again, hashes)
        done = self.summary.read  # progress is in rows read, as the file is counted
        self.behind.submit(lambda: self.report("writing", done, max(done, self.total)))
        return rejects

    def _write_rows(self, part: dict[str, _Record], batch: list[str], hashes: dict[str, str]) -> None:
        """Insert the batch's new contacts and update its existing ones (this part's addresses)."""
        conn = self.conn
        wanted = [email for email in batch if part[email].again] if self.was_empty else batch
        existing = (
            {
                row.email: row._asdict()
                for row in conn.execute(
                    select(
                        contacts.c.id,
                        contacts.c.email,
                        contacts.c.tags,
                        contacts.c.attributes,
                        contacts.c.status,
                        contacts.c.marketing_consent,
                        contacts.c.concern_consent,
                        *(contacts.c[name] for name in _UPDATABLE),
                    ).where(contacts.c.email.in_(wanted))
                )
            }
            if wanted
            else {}
        )
        new_rows = _new_contacts(part, hashes, batch, existing, self.source, self.now)
        ids: dict[str, int] = {}
        if new_rows:
            # Plain executemany, then one indexed lookup: RETURNING with guaranteed order is row-at-a-time on
            # SQLite, which made a million-row import ten times slower.
            bulk_insert(conn, contacts, new_rows)
            new = [row["email"] for row in new_rows]
            ids = contact_ids_by_email(conn, new)
        self.summary.inserted += len(new_rows)
        rows = _batch_rows(part, batch, existing, ids, self.summary, self.source, self.now)
        if rows.field_updates:
            conn.execute(_UPDATE_FIELDS, rows.field_updates)
        if rows.consent_updates:
            conn.execute(_UPDATE_CONSENT, rows.consent_updates)
        bulk_insert(conn, consent_events, rows.events)
        bulk_insert(conn, contact_lists, rows.list_rows, on_conflict_do_nothing=("contact_id", "list_name"))
        if self.copier is None:
            self.report("writing", self.summary.read, max(self.summary.read, self.total))


class _WriteBehind:
    """Runs jobs one at a time and in order in one worker thread: a job runs while the caller prepares the
    next, and `submit` waits for the one before (so at most two batches are in memory). Leaving the block
    waits for the last job and raises its error; leaving on an error waits too, so that the connection is
    idle when the transaction is rolled back."""

    def __init__(self, *, active: bool = True) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-writer") if active else None
        self._pending: Future[Any] | None = None

    def submit(self, job: Callable[[], Any]) -> None:
        if self._pool is None:  # inactive: run it here, now
            job()
            return
        self._wait()
        self._pending = self._pool.submit(job)

    def drain(self) -> None:
        """Wait for the job handed over last (and raise its error)."""
        self._wait()

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> _WriteBehind:
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        try:
            if error_type is None:
                self._wait()
            elif self._pending is not None:
                wait([self._pending])  # its own error, if any, is secondary to the one leaving the block
        finally:
            if self._pool is not None:
                self._pool.shutdown()


def _new_contacts(
    records: dict[str, _Record],
    hashes: dict[str, str],
    batch: list[str],
    existing: dict[str, dict[str, Any]],
    source: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """The contacts table rows of the batch's addresses not in `existing` (without ids)."""
    new_rows = []
    for email in batch:
        if email in existing:
            continue
        values = records[email].values
        _, consent_columns = _consent_changes(0, values, None, source, now)
        new_rows.append(
            {
                "email": email,
                "email_hash": hashes[email],
                "first_name": values.get("first_name", ""),
                "last_name": values.get("last_name", ""),
                "concerns": values.get("concerns", ""),
                "time_zone": values.get("time_zone", ""),
                "locale": values.get("locale", ""),
                "tags": ";".join(values.get("tags", [])),
                "attributes": records[email].attributes,
                "signed_up_at": values.get("signed_up_at") or now,
                "created_at": now,
                "updated_at": now,
                **_consent_update(consent_columns, None),
            }
        )
    return new_rows


@dataclass
class _BatchRows:
    """What a batch writes besides new contacts."""

    events: list[dict[str, Any]] = field(default_factory=list)
    consent_updates: list[dict[str, Any]] = field(default_factory=list)
    field_updates: list[dict[str, Any]] = field(default_factory=list)
    list_rows: list[dict[str, Any]] = field(default_factory=list)


def _batch_rows(
    records: dict[str, _Record],
    batch: list[str],
    existing: dict[str, dict[str, Any]],
    ids: dict[str, int],
    summary: ImportSummary,
    source: str,
    now: datetime,
) -> _BatchRows:
    """Consent history, updates of existing contacts and list memberships of a batch (`ids`: of the new
    contacts); counts the updated ones in `summary`."""
    rows = _BatchRows()
    for email in batch:
        record = records[email]
        current = existing.get(email)
        contact_id = current["id"] if current else ids[email]
        changes, columns = _consent_changes(contact_id, record.values, current, source, now)
        rows.events += changes
        if current and record.again:  # a repeat of an address written from an earlier part of the file
            if any(current[k] != v for k, v in record.values.items() if k in _UPDATABLE):
                summary.conflicting_duplicates += 1
        elif current:
            summary.updated += 1
        if current:
            update_values = {name: record.values.get(name, current[name]) for name in _UPDATABLE}
            tags = [t for t in (current["tags"] or "").split(";") if t]
            tags += [t for t in record.values.get("tags", []) if t not in tags]
            attributes = {**(current["attributes"] or {}), **record.attributes}
            rows.field_updates.append(
                {
                    "b_id": contact_id,
                    **_prefixed(update_values),
                    "v_tags": ";".join(tags),
                    "v_attributes": attributes,
                    "v_updated_at": now,
                }
            )
        if columns and current:
            rows.consent_updates.append({"b_id": contact_id, **_prefixed(_consent_update(columns, current))})
        rows.list_rows += [{"contact_id": contact_id, "list_name": name} for name in sorted(record.lists)]
    return rows


_UPDATABLE = ("first_name", "last_name", "concerns", "time_zone", "locale", "signed_up_at")
_UPDATE_FIELDS = (
    update(contacts)
    .where(contacts.c.id == bindparam("b_id"))
    .values(
        {
            **{name: bindparam(f"v_{name}") for name in _UPDATABLE},
            "tags": bindparam("v_tags"),
            "attributes": bindparam("v_attributes"),
            "updated_at": bindparam("v_updated_at"),
        }
    )
)
_UPDATE_CONSENT = (
    update(contacts)
    .where(contacts.c.id == bindparam("b_id"))
    .values(
        marketing_consent=bindparam("v_marketing_consent"),
        concern_consent=bindparam("v_concern_consent"),
        status=bindparam("v_status"),
    )
)


def _consent_update(columns: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    base = {
        "marketing_consent": bool(current and current["marketing_consent"]),
        "concern_consent": bool(current and current["concern_consent"]),
        "status": current["status"] if current else "active",
    }
    return {**base, **columns}


def _prefixed(values: dict[str, Any]) -> dict[str, Any]:
    return {f"v_{name}": value for name, value in values.items()}
