"""The segment summary: each segment's size, its members by variant and its exclusions by reason.

Contract: `segment_summaries(engine, workspace, frames=None, now=None)` evaluates every segment of
`audiences/segments.yaml` over the whole audience (through `frames`, the web app's shared `FrameCache`, when
given) and returns an `AudienceSummary`: how many contacts the store holds and one `SegmentSummary` per
segment, in the file's order. Variants and exclusion reasons are sorted by name, the same on every face.
With `frames` (the web app), the summary is kept (`readmodels.kept.KEPT`) and counted again at once when the
audience's fingerprint or a workspace file changes; what changes with the clock alone (a "signed up in the
last 30 days" rule) within `KEPT.max_age` seconds, counted off the request.

The console's segment pages: `segment_page` (one segment, its exclusions by reason and a page of members,
masked unless `unmasked`), `segment_form` (the builder's starting rows) and `count_rows` (the size of rows
not yet saved, counted the same way as a saved segment, so the builder's count is what the command line's
`audience segments` reports once it is saved).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from needlecast.addresses import mask_email
from needlecast.audience.frame_cache import FrameCache, fingerprint
from needlecast.audience.membership import SegmentResult, evaluate, load_frame
from needlecast.audience.segment_rows import (
    FIELDS,
    OPERATORS,
    Row,
    SegmentRowsError,
    row_words,
    rows_of,
    segment_of,
)
from needlecast.audience.segments import Segment, get_segment, load_segments
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.readmodels.elsewhere import Where, opened
from needlecast.readmodels.kept import KEPT, Remote, Shown
from needlecast.readmodels.plans import workspace_marks
from needlecast.store.audience import contact_names

__all__ = [
    "FIELDS",
    "OPERATORS",
    "PAGE_SIZE",
    "AudienceSummary",
    "Row",
    "SegmentForm",
    "SegmentPage",
    "SegmentRowsError",
    "SegmentSummary",
    "count_rows",
    "segment_form",
    "segment_page",
    "segment_summaries",
    "segment_summaries_shown",
]


@dataclass(frozen=True)
class SegmentSummary:
    segment: str
    members: int
    variants: dict[str, int]  # members by variant (concern or general), sorted by variant
    excluded: dict[str, int]  # contacts left out by reason (no consent, suppressed...), sorted by reason


@dataclass(frozen=True)
class AudienceSummary:
    contacts: int  # every contact in the store
    segments: list[SegmentSummary]


def segment_summaries(
    engine: Engine, workspace: Workspace, frames: FrameCache | None = None, now: datetime | None = None
) -> AudienceSummary:
    """Every segment's summary, now (see the module contract)."""
    if frames is None or now is not None:
        return _summaries(engine, workspace, frames, now)
    name, inputs, compute, remote = _kept_summaries(engine, workspace, frames)
    return KEPT.get(name, inputs, compute, remote=remote)[0]


def segment_summaries_shown(engine: Engine, workspace: Workspace, frames: FrameCache) -> Shown[AudienceSummary]:
    """Every segment's summary as the web app's Audiences page shows it (`kept.Kept.look`): never waited for;
    the kept one (`updating` while it is counted again after a change), or none yet (`ready` False)."""
    name, inputs, compute, remote = _kept_summaries(engine, workspace, frames)
    return KEPT.look(name, inputs, compute, remote=remote)


def _kept_summaries(
    engine: Engine, workspace: Workspace, frames: FrameCache
) -> tuple[tuple[str, ...], tuple[object, ...], Callable[[], AudienceSummary], Remote | None]:
    """(name, inputs, compute, remote) of the kept summaries (`remote`: counted in another process)."""
    with engine.connect() as conn:
        inputs = (workspace_marks(workspace), fingerprint(conn))
    name = ("segments", str(workspace.root), str(engine.url))
    where = Where.of(engine, workspace)
    remote = Remote(summaries_elsewhere, (where,)) if where is not None else None
    return name, inputs, lambda: _summaries(engine, workspace, frames, None), remote


def summaries_elsewhere(where: Where) -> AudienceSummary:
    """Every segment's summary, counted in the kept figures' process (`kept.Remote`) from its own engine,
    workspace and audience cache (`elsewhere.opened`)."""
    engine, workspace, frames = opened(where)
    return _summaries(engine, workspace, frames, None)


def _summaries(
    engine: Engine, workspace: Workspace, frames: FrameCache | None, now: datetime | None
) -> AudienceSummary:
    defined = load_segments(workspace.audiences_dir / "segments.yaml", load_vocabulary_for(workspace).names)
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        if frames is not None:
            contacts = len(frames.frame(conn))
            results = [frames.segment(conn, segment, now) for segment in defined.values()]
        else:
            frame = load_frame(conn)
            contacts = len(frame)
            results = [evaluate(segment, frame, now) for segment in defined.values()]
    summaries = []
    for segment, result in zip(defined.values(), results, strict=True):
        variants = result.members["variant"].value_counts().sort_index()
        summaries.append(
            SegmentSummary(
                segment=segment.name,
                members=result.size,
                variants={str(k): int(v) for k, v in variants.items()},
                excluded={str(k): int(v) for k, v in sorted(result.excluded.items())},
            )
        )
    return AudienceSummary(contacts, summaries)


PAGE_SIZE = 50


@dataclass(frozen=True)
class SegmentPage:
    """One segment as its page shows it: its definition in words, its size, its exclusions by reason, and
    one page of its members (`PAGE_SIZE` each; names and addresses masked unless `unmasked`)."""

    segment: str
    description: str
    rules: list[str]  # its conditions, one sentence each
    members: int
    excluded: dict[str, int]
    variants: dict[str, int]
    page: int
    pages: int
    people: list[dict[str, Any]]  # id, name, email, variant


def _defined(workspace: Workspace) -> dict[str, Segment]:
    return load_segments(workspace.audiences_dir / "segments.yaml", load_vocabulary_for(workspace).names)


def _result(engine: Engine, segment: Segment, frames: FrameCache | None, now: datetime | None) -> SegmentResult:
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        if frames is not None:
            return frames.segment(conn, segment, now)
        return evaluate(segment, load_frame(conn), now)


def mask_name(first: str, last: str) -> str:
    """'Ana Lopez' -> 'A*** L***', as an analyst sees people."""
    return " ".join(f"{part[:1]}***" for part in (first, last) if part)


def segment_page(
    engine: Engine,
    workspace: Workspace,
    name: str,
    page: int = 1,
    *,
    unmasked: bool = False,
    frames: FrameCache | None = None,
    now: datetime | None = None,
) -> SegmentPage:
    """The segment `name` (NotFound naming the defined ones) with its members' page `page` (from 1)."""
    segment = get_segment(_defined(workspace), name)
    result = _result(engine, segment, frames, now)
    pages = max(1, -(-result.size // PAGE_SIZE))
    page = min(max(1, page), pages)
    shown = result.members.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    with engine.connect() as conn:
        names = contact_names(conn, [int(i) for i in shown["id"]])
    people = []
    for contact_id, variant in zip(shown["id"], shown["variant"], strict=True):
        email, first, last = names.get(int(contact_id), ("", "", ""))
        people.append(
            {
                "id": int(contact_id),
                "name": f"{first} {last}".strip() if unmasked else mask_name(first, last),
                "email": email if unmasked else mask_email(email),
                "variant": str(variant),
            }
        )
    variants = result.members["variant"].value_counts().sort_index()
    return SegmentPage(
        segment=segment.name,
        description=segment.description,
        rules=[row_words(row) for row in rows_of(segment)],
        members=result.size,
        excluded={str(k): int(v) for k, v in sorted(result.excluded.items())},
        variants={str(k): int(v) for k, v in variants.items()},
        page=page,
        pages=pages,
        people=people,
    )


@dataclass(frozen=True)
class SegmentForm:
    """What the builder starts from: the segment's name, description and rows (empty for a new one), and the
    clinic's concerns (the concern row's choices)."""

    name: str
    description: str
    rows: list[Row]
    concerns: tuple[str, ...]


def segment_form(workspace: Workspace, name: str | None) -> SegmentForm:
    """The builder for segment `name` (NotFound when there is none), or for a new segment with None."""
    concerns = load_vocabulary_for(workspace).names
    if name is None:
        return SegmentForm("", "", [], concerns)
    segment = get_segment(_defined(workspace), name)
    return SegmentForm(segment.name, segment.description, rows_of(segment), concerns)


def count_rows(
    engine: Engine,
    workspace: Workspace,
    rows: list[Row],
    *,
    frames: FrameCache | None = None,
    now: datetime | None = None,
) -> SegmentSummary:
    """How many the rows (not yet saved) would reach now, by variant, and whom they leave out by reason;
    `SegmentRowsError` names the rows that say nothing countable."""
    segment, _spec = segment_of("count", "", rows, load_vocabulary_for(workspace).names, check_name=False)
    result = _result(engine, segment, frames, now)
    variants = result.members["variant"].value_counts().sort_index()
    return SegmentSummary(
        segment="",
        members=result.size,
        variants={str(k): int(v) for k, v in variants.items()},
        excluded={str(k): int(v) for k, v in sorted(result.excluded.items())},
    )
