"""The segment summary: each segment's size, its members by variant and its exclusions by reason.

Contract: `segment_summaries(engine, workspace, frames=None, now=None)` evaluates every segment of
`audiences/segments.yaml` over the whole audience (through `frames`, the web app's shared `FrameCache`, when
given) and returns an `AudienceSummary`: how many contacts the store holds and one `SegmentSummary` per
segment, in the file's order. Variants and exclusion reasons are sorted by name, the same on every face.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.segments import evaluate, load_frame, load_segments
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for


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
