"""The SQL of the console's contact list: which contacts match a search and filters, a page of them with what
the list shows, how many match, and a person's journey positions.

Everything is one statement over `contacts` with indexed lookups per person (consent history by contact id,
opens and clicks by address hash, the clinic's events by contact id), so a page of 50 out of 200,000
contacts never reads the whole audience into Python. A segment's members come in as ids (the segment is
evaluated by `audience.segments` over the cached frame) and are matched in one bound value: a JSON array read
by `json_each` on SQLite, an array compared with `= ANY` on PostgreSQL (SQLite takes at most 32,766 bound
values, and a list of 100,000 separate values would be slow on either).

Contract:
- `ContactQuery`: the conditions, all optional, combined with AND (see its fields). A search by a part of an
  address or a name (three letters or more) is found through trigram indexes: on PostgreSQL its GIN indexes
  (migration 0019, where the server offers `pg_trgm`), on SQLite an FTS5 trigram table (`contacts_search`,
  migration 0023) that gives the candidates, which the same LIKE as before then decides, so both find exactly
  what the scan finds; a shorter text, or a database without them, is a scan with the same result.
- `forget_erased(conn)`: after an erasure, SQLite's trigram table keeps nothing of the erased contacts.
- A source filter matches a contact with any consent recorded from that source (an index finds them); the
  list shows the source of their first consent.
- `count(conn, query)`: how many contacts match. `ids(conn, query)`: their ids, newest first.
- `find(conn, query, offset, limit)`: how many match and a page's ids; `details(conn, ids)` what the list
  shows of them; `rows(conn, query, offset, limit)` the two at once: a page, newest first (latest signed
  up first, then highest id; an index keeps this order, so a page never sorts the whole audience): each a dict with
  id, email, email_hash, first_name, last_name, concerns, tags, status, marketing_consent, concern_consent,
  signed_up_at, suppressed (the reason or None), source (of their first consent, "" when none) and
  last_activity (the latest of signing up, an open or click, an event the clinic reported).
- `sources(conn)`: every consent source recorded, sorted (the raw values; the reader words them).
- `journey_positions_of(conn, contact_id)`: the person's journey positions, latest entry first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    String,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import text as text_clause
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from needlecast.store.helpers import insert_ignore
from needlecast.store.schema import consent_events, contact_events, contacts, events, journey_positions, suppressions

NEWEST_FIRST = (contacts.c.signed_up_at.desc(), contacts.c.id.desc())
FEW = 5000  # matches sorted here rather than found by walking the whole index in order
# What the person did themselves: an open or a click (not what was done to them, such as a delivery).
ACTIVITY_KINDS = ("opened", "clicked")
TRIGRAM_TABLE = "contacts_search"  # SQLite's FTS5 trigram index of the address and names (migration 0023)
TRIGRAM = 3  # the fewest letters a trigram index finds


@dataclass(frozen=True)
class ContactQuery:
    """Conditions on contacts (each left at its default is no condition)."""

    text: str = ""  # a part of the address, of the first or last name, or of "first last" (any case)
    email: str = ""  # exactly this (normalised) address
    concern: str = ""  # one of the person's concerns
    member_ids: Sequence[int] | None = None  # only these ids (a segment's members)
    chosen_ids: Sequence[int] | None = None  # only these ids (a few, picked on a page)
    consent: str = ""  # marketing | pending | none | concern
    source: str = ""  # a source their consent was recorded from (an import, a form...), as recorded
    suppressed: bool | None = None
    active_since: datetime | None = None  # signed up, opened, clicked or had an event since then
    quiet_since: datetime | None = None  # none of those since then


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _member_id(conn: Connection) -> Any:
    """The contact's id for a membership test. On SQLite, `id + 0`: otherwise the planner drives the query
    from the (large) set of members, looks each up and sorts them all, instead of walking the order's index
    and stopping after a page."""
    return contacts.c.id if conn.dialect.name == "postgresql" else contacts.c.id + 0


def _ids_in(conn: Connection, ids: Sequence[int]) -> ColumnElement[bool]:
    values = [int(i) for i in ids]
    if conn.dialect.name == "postgresql":
        return contacts.c.id == any_(bindparam("member_ids", values, type_=postgresql.ARRAY(BigInteger)))
    each = func.json_each(bindparam("member_ids", json.dumps(values))).table_valued("value")
    return _member_id(conn).in_(select(each.c.value))


def first_source() -> Any:
    """The source of the contact's first consent (a scalar subquery per contact, by its index)."""
    return (
        select(consent_events.c.source)
        .where(consent_events.c.contact_id == contacts.c.id)
        .order_by(consent_events.c.recorded_at, consent_events.c.id)
        .limit(1)
        .scalar_subquery()
    )


def _text_matches(conn: Connection, text: str) -> ColumnElement[bool]:
    """The address, or the first and last name, holds `text`. PostgreSQL's ILIKE folds any case. SQLite's
    LIKE folds ASCII only (as its lower() does), so a text with other letters is also tried in lower case and
    with each word capitalised, the way names are written ("MÜLLER" and "mü" find "Müller"). On SQLite the
    trigram table (`trigram_query`) gives the candidates and the LIKE decides among them."""
    c = contacts.c
    # One word is looked for in each name; only a text with a space needs them joined (a string per row). The
    # space is written in the SQL, not bound: PostgreSQL's trigram index on "first last" (migration 0019) is
    # on this very expression.
    joined = c.first_name.op("||", return_type=String)(literal_column("' '")).op("||", return_type=String)(c.last_name)
    whole = [joined] if " " in text else [c.first_name, c.last_name]
    if conn.dialect.name == "postgresql":
        pattern = f"%{_escaped(text)}%"
        return or_(*(column.ilike(pattern, escape="\\") for column in (c.email, *whole)))
    variants = sorted({text} if text.isascii() else {text, text.lower(), text.lower().title()})
    patterns = [f"%{_escaped(v)}%" for v in variants]
    like = or_(*(column.like(p, escape="\\") for p in patterns for column in (c.email, *whole)))
    trigrams = trigram_query(variants)
    if trigrams is None or not _has_trigram_index(conn):
        return like
    found = text_clause(f"SELECT rowid FROM {TRIGRAM_TABLE} WHERE {TRIGRAM_TABLE} MATCH :trigrams")
    candidates = found.bindparams(trigrams=trigrams).columns(rowid=Integer)
    return and_(c.id.in_(candidates), like)  # the index finds the candidates, the LIKE decides


def trigram_query(variants: Sequence[str]) -> str | None:
    """The FTS5 query (migration 0023) whose rows hold every match of the LIKE of any of `variants`: per
    variant, each of its words of three letters or more as a phrase (a word holds no space, so it lies within
    the address, the first or the last name even when the variant spans "first last"), all of them; None when
    some variant has no such word (a trigram index cannot find it: the LIKE scans). The trigram tokenizer folds
    case at least as widely as SQLite's LIKE (which folds ASCII), so these rows include all the LIKE's."""
    alternatives = []
    for variant in variants:
        words = [w for w in variant.split(" ") if len(w) >= TRIGRAM]
        if not words:
            return None
        alternatives.append("(" + " AND ".join('"' + w.replace('"', '""') + '"' for w in words) + ")")
    return " OR ".join(alternatives) if alternatives else None


def _has_trigram_index(conn: Connection) -> bool:
    """Whether this SQLite database has the trigram table (migration 0023 skips it where FTS5 lacks the
    tokenizer), looked up once per database connection."""
    info = conn.connection.info
    if "needlecast_trigrams" not in info:
        found = conn.execute(
            text_clause("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": TRIGRAM_TABLE},
        ).first()
        info["needlecast_trigrams"] = found is not None
    return bool(info["needlecast_trigrams"])


@contextmanager
def indexed_after(conn: Connection, table: str, given_ids: Sequence[int] | None = None) -> Iterator[None]:
    """Around a bulk insert into `table`: for new contacts on SQLite with the trigram table, the insert
    trigger stands aside (a flag set in this transaction, which no other writer sees) and the new rows are
    indexed in one statement afterwards, even if the insert failed part way (an FTS5 insert per row cost more
    than the import's own inserts). Elsewhere nothing changes. The new rows: `given_ids` when the insert gives
    the ids, else those with an id above the largest before it."""
    if table != "contacts" or conn.dialect.name != "sqlite" or not _has_trigram_index(conn):
        yield
        return
    before = conn.execute(select(func.max(contacts.c.id))).scalar() or 0
    conn.execute(text_clause("UPDATE contacts_search_state SET deferred = 1"))
    try:
        yield
    finally:
        picked = "id > :before" if given_ids is None else "id IN (SELECT value FROM json_each(:ids))"
        ids = json.dumps([int(i) for i in given_ids or ()])
        conn.execute(
            text_clause(
                f"INSERT INTO {TRIGRAM_TABLE}(rowid, email, first_name, last_name)"
                f" SELECT id, email, first_name, last_name FROM contacts WHERE {picked}"
            ),
            {"before": before, "ids": ids},
        )
        conn.execute(text_clause("UPDATE contacts_search_state SET deferred = 0"))


def forget_erased(conn: Connection) -> None:
    """After contacts were deleted (an erasure): on SQLite, merge the trigram index (migration 0023) into one
    segment, so that the deleted contacts' entries are dropped from it rather than only marked deleted. A
    no-op on PostgreSQL (its indexes are the table's)."""
    if conn.dialect.name == "sqlite" and _has_trigram_index(conn):
        conn.execute(text_clause(f"INSERT INTO {TRIGRAM_TABLE}({TRIGRAM_TABLE}) VALUES ('optimize')"))


def _active_since(moment: datetime) -> ColumnElement[bool]:
    opened = exists().where(
        events.c.email_hash == contacts.c.email_hash,
        events.c.occurred_at >= moment,
        events.c.kind.in_(ACTIVITY_KINDS),
    )
    reported = exists().where(contact_events.c.contact_id == contacts.c.id, contact_events.c.occurred_at >= moment)
    return or_(contacts.c.signed_up_at >= moment, opened, reported)


def _is_suppressed() -> ColumnElement[bool]:
    return exists().where(suppressions.c.email_hash == contacts.c.email_hash)


def _consent(state: str) -> ColumnElement[bool]:
    c = contacts.c
    return {
        "marketing": and_(c.marketing_consent.is_(True), c.status != "pending"),
        "pending": c.status == "pending",
        "none": and_(c.marketing_consent.is_(False), c.status != "pending"),
        "concern": c.concern_consent.is_(True),
    }[state]


def conditions(conn: Connection, query: ContactQuery) -> list[ColumnElement[bool]]:
    """The WHERE clauses of `query` (see `ContactQuery`)."""
    c = contacts.c
    where: list[ColumnElement[bool]] = []
    if query.email:
        where.append(c.email == query.email)
    if query.concern:
        where.append((";" + c.concerns + ";").like(f"%;{_escaped(query.concern)};%", escape="\\"))
    if query.member_ids is not None:
        where.append(_ids_in(conn, query.member_ids))
    if query.chosen_ids is not None:
        where.append(c.id.in_([int(i) for i in query.chosen_ids]))
    if query.consent:
        where.append(_consent(query.consent))
    if query.source:
        recorded = select(consent_events.c.contact_id).where(consent_events.c.source == query.source)
        where.append(_member_id(conn).in_(recorded))
    if query.suppressed is not None:
        where.append(_is_suppressed() if query.suppressed else not_(_is_suppressed()))
    if query.active_since is not None:
        where.append(_active_since(query.active_since))
    if query.quiet_since is not None:
        where.append(not_(_active_since(query.quiet_since)))
    if query.text:  # last: matching a part of three texts costs most, so the others sift first
        where.append(_text_matches(conn, query.text))
    return where


def _matching(conn: Connection, query: ContactQuery, *columns: Any) -> Select[Any]:
    return select(*columns).where(*conditions(conn, query))


def _without_jit(conn: Connection) -> None:
    """PostgreSQL compiles a query whose estimated cost is high (a count over the whole audience with a
    lookup per person) with JIT first: 0.6 s of compiling for a 0.1 s scan. Not for this transaction."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")


def count(conn: Connection, query: ContactQuery) -> int:
    _without_jit(conn)
    return int(conn.execute(_matching(conn, query, func.count()).select_from(contacts)).scalar() or 0)


def ids(conn: Connection, query: ContactQuery) -> list[int]:
    _without_jit(conn)
    found = conn.execute(_matching(conn, query, contacts.c.id).order_by(*NEWEST_FIRST)).scalars()
    return [int(i) for i in found]


def find(
    conn: Connection, query: ContactQuery, offset: int, limit: int, *, counted: int | None = None
) -> tuple[int, list[int]]:
    """How many contacts match, and the ids of a page of them, newest first. `counted`: how many match, already
    counted (the web app keeps the counts of filters without a text), not counted again here.

    When few match (at most `FEW`), they are read in one pass without an order and sorted here; otherwise
    they are counted, and the page is found by walking the order's index, which stops after the page.
    (Walking the index for a handful of matches would read every contact, in the index's order, to find
    them.) A search by text or address usually finds few: it is read first, and counted only when it finds
    more; other filters are counted first.
    """
    offset, limit = max(0, offset), max(0, limit)
    _without_jit(conn)
    few: list[Any] | None = None
    if query.text or query.email or query.chosen_ids is not None:
        found = conn.execute(_matching(conn, query, contacts.c.id, contacts.c.signed_up_at).limit(FEW + 1)).all()
        few = list(found) if len(found) <= FEW else None
        total = len(found) if few is not None else count(conn, query)
    else:
        total = count(conn, query) if counted is None else counted
        if total <= FEW:
            few = list(conn.execute(_matching(conn, query, contacts.c.id, contacts.c.signed_up_at)).all())
    if few is not None:
        ordered = sorted(few, key=lambda row: (_utc(row[1]), row[0]), reverse=True)
        return total, [int(row[0]) for row in ordered[offset : offset + limit]]
    statement = _matching(conn, query, contacts.c.id).order_by(*NEWEST_FIRST).offset(offset).limit(limit)
    with _walking_the_order(conn):
        return total, [int(i) for i in conn.execute(statement).scalars()]


@contextmanager
def _walking_the_order(conn: Connection) -> Iterator[None]:
    """Around the page's statement when many match: PostgreSQL walks the order's index too. Its planner has no
    statistics for a condition on an expression (the concern's `';' || concerns || ';' LIKE ...`) and guesses
    that a handful of rows match (2 of 200,000, where 50,000 did), so it read every contact and sorted them
    (73 ms) rather than walk the index and stop after the page (a few hundred rows). Sorting is made its last
    resort for this statement only (the transaction's setting is put back after it)."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SET LOCAL enable_sort = off")
    try:
        yield
    finally:
        conn.exec_driver_sql("SET LOCAL enable_sort = on")


def rows(conn: Connection, query: ContactQuery, offset: int, limit: int) -> list[dict[str, Any]]:
    """A page of matching contacts with what the list shows (see the module contract)."""
    return details(conn, find(conn, query, offset, limit)[1])


def details(conn: Connection, wanted: Sequence[int]) -> list[dict[str, Any]]:
    """What the list shows of each contact of `wanted` (see the module contract), in that order; the
    per-person lookups run for these contacts only."""
    if not wanted:
        return []
    c = contacts.c
    suppressed = select(suppressions.c.reason).where(suppressions.c.email_hash == c.email_hash).scalar_subquery()
    opened = (
        select(func.max(events.c.occurred_at))
        .where(events.c.email_hash == c.email_hash, events.c.kind.in_(ACTIVITY_KINDS))
        .scalar_subquery()
    )
    reported = select(func.max(contact_events.c.occurred_at)).where(contact_events.c.contact_id == c.id)
    statement = select(
        c.id,
        c.email,
        c.email_hash,
        c.first_name,
        c.last_name,
        c.concerns,
        c.tags,
        c.status,
        c.marketing_consent,
        c.concern_consent,
        c.signed_up_at,
        suppressed.label("suppressed"),
        first_source().label("source"),
        opened.label("opened_at"),
        reported.scalar_subquery().label("reported_at"),
    ).where(c.id.in_(wanted))
    by_id = {}
    for row in conn.execute(statement).mappings():
        item = dict(row)
        moments = [m for m in (item.pop("opened_at"), item.pop("reported_at"), item["signed_up_at"]) if m]
        item["last_activity"] = max(moments, key=_utc) if moments else None
        item["source"] = item["source"] or ""
        by_id[int(item["id"])] = item
    return [by_id[i] for i in wanted if i in by_id]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Every distinct source, one index seek each (a "loose index scan"): DISTINCT would read every consent event.
_SOURCES = text(
    "WITH RECURSIVE found(source) AS ("
    " SELECT min(source) FROM consent_events"
    " UNION ALL"
    " SELECT (SELECT min(e.source) FROM consent_events e WHERE e.source > found.source)"
    " FROM found WHERE found.source IS NOT NULL"
    ") SELECT source FROM found WHERE source IS NOT NULL"
)


def sources(conn: Connection) -> list[str]:
    return [str(s) for s in conn.execute(_SOURCES).scalars() if s]


def journey_positions_of(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    p = journey_positions.c
    found = conn.execute(
        select(p.campaign_id, p.entry, p.node, p.state, p.since, p.due_at, p.entered_at, p.left_at, p.reason)
        .where(p.contact_id == contact_id)
        .order_by(p.entered_at.desc(), p.campaign_id, p.entry.desc())
    ).mappings()
    return [dict(row) for row in found]


def names_of(conn: Connection, contact_id: int) -> tuple[str, str, str]:
    """The contact's first name, last name and the source of their first consent ("" each when unknown)."""
    found = conn.execute(
        select(contacts.c.first_name, contacts.c.last_name, first_source()).where(contacts.c.id == contact_id)
    ).first()
    return (str(found[0]), str(found[1]), str(found[2] or "")) if found else ("", "", "")


def add_tag(conn: Connection, query: ContactQuery, tag: str, now: datetime) -> int:
    """Add `tag` to every matching contact that lacks it (and has room for it: tags hold 500 characters); how
    many contacts changed. One statement: the conditions are the list's, evaluated by the database."""
    c = contacts.c
    lacking = not_((";" + c.tags + ";").like(f"%;{_escaped(tag)};%", escape="\\"))
    room = func.length(c.tags) + len(tag) + 1 <= 500
    statement = (
        update(contacts)
        .where(*conditions(conn, query), lacking, room)
        .values(tags=case((c.tags == "", tag), else_=c.tags + ";" + tag), updated_at=now)
    )
    return int(conn.execute(statement).rowcount or 0)


def hashes(conn: Connection, query: ContactQuery) -> list[str]:
    """The address hashes of the matching contacts (what a suppression keeps)."""
    return [str(h) for h in conn.execute(_matching(conn, query, contacts.c.email_hash)).scalars()]


def export_rows(conn: Connection, query: ContactQuery, chunk: int = 5000) -> Iterator[dict[str, Any]]:
    """Every matching contact as `rows` gives them, newest first, read `chunk` at a time by id."""
    found = ids(conn, query)
    for start in range(0, len(found), chunk):
        part = found[start : start + chunk]
        yield from details(conn, part)


def suppress_hashes(conn: Connection, found: Sequence[str], reason: str, source: str, now: datetime) -> int:
    """Suppress these address hashes (a thousand a statement; one already there keeps its first reason);
    how many were new."""
    added = 0
    for start in range(0, len(found), 1000):
        rows = [
            {"email_hash": h, "reason": reason, "source": source[:200], "created_at": now}
            for h in found[start : start + 1000]
        ]
        added += insert_ignore(conn, suppressions, rows, ("email_hash",))
    return added


def concerns_of(conn: Connection, contact_id: int) -> list[str]:
    """The contact's concerns, primary first ([] when there is no such contact)."""
    found = conn.execute(select(contacts.c.concerns).where(contacts.c.id == contact_id)).scalar()
    return [c for c in str(found or "").split(";") if c]
