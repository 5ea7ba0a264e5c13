"""Segment membership: a segment evaluated over the contacts, with pandas.

Contract: `evaluate(segment, frame, now)` returns the members and the excluded counts by reason. Members
never include a contact who lacks marketing consent, is pending double opt-in, or is suppressed; a
`concerns` filter matches only contacts with consent to use their concern. Each member gets a `variant`:
the concern whose content they receive (the first of their concerns the segment targets, or their primary
concern for a segment without a concern filter), or `general` without concern consent.
`load_frame` and `load_frame_for` read the contacts' frame that `evaluate` takes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

from needlecast.audience.columns import CONCERN_TAG
from needlecast.audience.segments import COLUMNS, EVENT_FIELD, Condition, Segment, attributes_of, variant_for
from needlecast.ledger import is_paused
from needlecast.store.audience import id_range, read_contacts, read_last_events, read_lists

EXCLUDED_SUPPRESSED = "suppressed: {}"
EXCLUDED_PENDING = "pending double opt-in"
EXCLUDED_NO_CONSENT = "no marketing consent"
EXCLUDED_NO_CONCERN_CONSENT = "no consent to use concern"
EXCLUDED_PAUSED = "paused by the person"


@dataclass
class SegmentResult:
    segment: Segment
    members: pd.DataFrame
    excluded: Counter[str] = field(default_factory=Counter)

    @property
    def size(self) -> int:
        return len(self.members)


_FRAME_COLUMNS = (
    "id",
    "email",
    "first_name",
    "last_name",
    "concerns",
    "time_zone",
    "locale",
    "tags",
    "status",
    "marketing_consent",
    "concern_consent",
    "attributes",
    "signed_up_at",
    "created_at",
)
# What evaluating any segment and planning for it read: consent, suppression, pauses, variant, time zone.
_ALWAYS = ("id", "concerns", "time_zone", "status", "marketing_consent", "concern_consent", "attributes")
_NO_LISTS: frozenset[str] = frozenset()
_BOOLEANS = ("marketing_consent", "concern_consent")
_FRAME_PART = 200_000  # contact ids read at once by `load_frame_for`


def load_frame(conn: Connection, segment: Segment | None = None, *, ids: tuple[int, int] | None = None) -> pd.DataFrame:
    """Contacts with what segmenting needs, one row each, plus its suppression reason (or None); with
    `ids` (low, high), only the contacts whose id is in [low, high): a part of the audience.

    With a `segment`, only the columns evaluating and planning for that segment read (a million-contact
    broadcast reads a third of the data); without one, every column and the lists, for any segment,
    sequence exit rule or preview. Read column-wise by `store.audience` (a million contacts through
    SQLAlchemy's row processing took most of a broadcast's planning time); attributes stay JSON text,
    decoded on demand (`attributes_of`).
    """
    if segment is None:
        return _read_frame(conn, _FRAME_COLUMNS, lists=True, kinds=None, ids=ids)
    return _read_frame(conn, _columns_for(segment), lists=bool(segment.lists), kinds=_event_kinds(segment), ids=ids)


def load_frame_for(conn: Connection, segments: Iterable[Segment], *, also: Iterable[str] = ()) -> pd.DataFrame:
    """`load_frame` with what evaluating any of `segments` reads (their columns, lists and events), plus the
    contact columns `also` names (those of `load_frame`'s that are not among them): a journey sweep reads
    a third of the whole audience's data and holds it in a fraction of the memory."""
    chosen = list(segments)
    wanted = {name for segment in chosen for name in _columns_for(segment)} | set(also)
    names = tuple(name for name in _FRAME_COLUMNS if name in wanted)
    kinds = tuple(sorted({kind for segment in chosen for kind in _event_kinds(segment)}))
    lists = any(s.lists for s in chosen)
    span = id_range(conn)
    if span is None:
        return _read_frame(conn, names, lists=lists, kinds=kinds, ids=None)
    # In parts: a million contacts' columns read in one piece took 600 MB as Python values before they
    # became the frame's own (much smaller) arrays.
    parts = [
        _read_frame(conn, names, lists=lists, kinds=kinds, ids=(low, low + _FRAME_PART))
        for low in range(span[0], span[1] + 1, _FRAME_PART)
    ]
    filled = [part for part in parts if len(part)] or parts[:1]  # an empty part's columns have no dtype
    if len(filled) == 1:
        return filled[0]
    frame = pd.concat(filled, ignore_index=True)
    for column in frame.columns:  # an event kind that a part lacked is missing there
        if column.startswith(EVENT_FIELD):
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _read_frame(
    conn: Connection, names: tuple[str, ...], *, lists: bool, kinds: tuple[str, ...] | None, ids: tuple[int, int] | None
) -> pd.DataFrame:
    """The contacts' `names` columns, their suppression, their lists (when `lists`) and their latest events
    of `kinds` (every kind with None), as `load_frame` documents."""
    frame = read_contacts(conn, names, ids=ids)
    for column in ("signed_up_at", "created_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in _BOOLEANS:
        frame[column] = frame[column].astype(bool)
    if lists:
        by_contact = read_lists(conn, ids=ids)
        frozen = {k: frozenset(v) for k, v in by_contact.items()}
        frame["lists"] = [frozen.get(i, _NO_LISTS) for i in frame["id"]] if frozen else [_NO_LISTS] * len(frame)
    if kinds != ():
        for kind, last in read_last_events(conn, kinds, ids=ids).items():
            frame[EVENT_FIELD + kind] = pd.to_datetime(frame["id"].map(last), utc=True)
    return frame


def _event_kinds(segment: Segment) -> tuple[str, ...]:
    return tuple(sorted({c.field[len(EVENT_FIELD) :] for c in segment.where if c.field.startswith(EVENT_FIELD)}))


def _columns_for(segment: Segment) -> tuple[str, ...]:
    wanted = set(_ALWAYS)
    if segment.tags:
        wanted.add("tags")
    if segment.signed_up_within_days is not None:
        wanted.add("signed_up_at")
    wanted.update(cond.field for cond in segment.where if cond.field in COLUMNS)
    return tuple(name for name in _FRAME_COLUMNS if name in wanted)


def _by_distinct(series: pd.Series, fn: Any) -> pd.Series:
    """`series.map(fn)`, calling `fn` once per distinct value: an audience's attribute texts, concerns and tags
    repeat (a few hundred distinct values among 200,000 contacts), and a Python call per contact made the
    segment builder's live count take most of a second."""
    try:
        codes, uniques = pd.factorize(series, use_na_sentinel=False)
    except TypeError:  # unhashable cells (attributes already decoded to dicts)
        return series.map(fn)
    results = np.empty(len(uniques), dtype=object)
    results[:] = [fn(value) for value in uniques]
    return pd.Series(results[codes], index=series.index)


def _values(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in COLUMNS:
        return frame[name]
    if name.startswith(EVENT_FIELD):  # a kind nobody has had yet is a column of nothing
        return frame[name] if name in frame else pd.Series(pd.NaT, index=frame.index)
    return _by_distinct(frame["attributes"], lambda a: attributes_of(a).get(name))


def _condition_mask(frame: pd.DataFrame, cond: Condition, now: datetime) -> pd.Series:
    values = _values(frame, cond.field)
    if cond.op == "exists":
        return values.notna() & (values.astype(str) != "")
    if cond.op in ("equals", "not_equals"):
        mask = values.astype(str).str.lower() == str(cond.value).lower()
        return mask if cond.op == "equals" else ~mask
    if cond.op in ("in", "not_in"):
        wanted = {str(v).lower() for v in (cond.value or [])}
        mask = values.astype(str).str.lower().isin(wanted)
        return mask if cond.op == "in" else ~mask
    if cond.op == "within_days":
        stamps = pd.to_datetime(values, utc=True, errors="coerce")
        return stamps >= pd.Timestamp(now - timedelta(days=int(cond.value)))
    if cond.op in ("before", "after"):
        stamps = pd.to_datetime(values, utc=True, errors="coerce")
        edge = pd.Timestamp(cond.value)
        edge = edge.tz_localize("UTC") if edge.tzinfo is None else edge
        return stamps < edge if cond.op == "before" else stamps > edge
    numbers = pd.to_numeric(values, errors="coerce")
    if cond.op == "min":
        return numbers >= float(cond.value)
    if cond.op == "max":
        return numbers <= float(cond.value)
    low, high = cond.value
    return (numbers >= float(low)) & (numbers <= float(high))


def _variants(members: pd.DataFrame, targeted: tuple[str, ...]) -> np.ndarray:
    """`variant_for` of each member, called once per distinct concerns text and consent (a million calls,
    one per member, took a journey sweep seconds)."""
    codes, uniques = pd.factorize(members["concerns"], use_na_sentinel=False)
    table = np.empty((len(uniques), 2), dtype=object)
    for row, concerns in enumerate(uniques):
        table[row, 0] = variant_for(concerns, False, targeted)
        table[row, 1] = variant_for(concerns, True, targeted)
    if not len(members):
        return np.empty(0, dtype=object)
    return table[codes, members["concern_consent"].astype(bool).to_numpy().astype(np.intp)]


def evaluate(segment: Segment, frame: pd.DataFrame, now: datetime) -> SegmentResult:
    """Members and exclusions of `segment` over `frame` (from `load_frame`) at `now` (aware UTC)."""
    mask = pd.Series(True, index=frame.index)
    if segment.lists:
        wanted = set(segment.lists)
        mask &= frame["lists"].map(lambda names: bool(wanted & names))
    if segment.tags:
        wanted_tags = set(segment.tags)
        mask &= _by_distinct(
            frame["tags"], lambda t: bool(wanted_tags & set(filter(None, (t or "").split(";"))))
        ).astype(bool)
    if segment.signed_up_within_days is not None:
        mask &= frame["signed_up_at"] >= pd.Timestamp(now - timedelta(days=segment.signed_up_within_days))
    for cond in segment.where:
        mask &= _condition_mask(frame, cond, now).fillna(False).astype(bool)

    excluded: Counter[str] = Counter()
    if segment.concerns:
        targeted = set(segment.concerns)
        has_concern = _by_distinct(
            frame["concerns"], lambda c: bool(targeted & set(filter(None, (c or "").split(";"))))
        ).astype(bool)
        mask &= has_concern
        # Exclusions are counted once each, in order: suppression outranks consent problems.
        candidates = frame[mask]
    else:
        candidates = frame[mask]
    suppressed = candidates["suppressed"].notna()
    for reason, count in candidates.loc[suppressed, "suppressed"].value_counts().items():
        excluded[EXCLUDED_SUPPRESSED.format(reason)] = int(count)
    rest = candidates[~suppressed]
    maybe = rest["attributes"].astype(str).str.contains("paused_until", regex=False)
    paused = pd.Series(False, index=rest.index)
    if maybe.any():
        paused[maybe] = [is_paused(attributes_of(a), now) for a in rest.loc[maybe, "attributes"]]
    excluded[EXCLUDED_PAUSED] = int(paused.sum())
    rest = rest[~paused]
    pending = rest["status"] == "pending"
    excluded[EXCLUDED_PENDING] = int(pending.sum())
    rest = rest[~pending]
    no_consent = ~rest["marketing_consent"].astype(bool)
    excluded[EXCLUDED_NO_CONSENT] = int(no_consent.sum())
    rest = rest[~no_consent]
    # A tag kept from an unknown concern (`concern:rosacea`) is health data too: targeting by it needs consent.
    if segment.concerns or any(tag.startswith(CONCERN_TAG) for tag in segment.tags):
        no_concern_consent = ~rest["concern_consent"].astype(bool)
        excluded[EXCLUDED_NO_CONCERN_CONSENT] = int(no_concern_consent.sum())
        rest = rest[~no_concern_consent]
    members = rest.drop(columns=["suppressed", "attributes"]).copy()
    members["variant"] = _variants(members, segment.concerns)
    return SegmentResult(segment, members.reset_index(drop=True), +excluded)
