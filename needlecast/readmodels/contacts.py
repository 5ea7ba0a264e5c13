"""Read models of contacts: the members of a segment, the link that confirms a double opt-in. One person's
profile (by id or by address) and page are `readmodels.contact_pages`.

Contract: addresses are masked (`a***@example.org`) unless `unmasked` (a caller with
`contacts.view_unmasked`; the command line has every permission). `segment_members` is `NotFound` naming
the segments there are for one there is not, and lists the first `limit` members in the segment's order
with its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from needlecast.addresses import mask_email
from needlecast.audience.membership import evaluate, load_frame
from needlecast.audience.profile import Profile
from needlecast.audience.segments import get_segment, load_segments
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.templating.recipient import link_base

__all__ = ["Profile", "SegmentMembers", "confirmation_link", "segment_members"]


@dataclass(frozen=True)
class SegmentMembers:
    segment: str
    size: int  # every member, however many are listed
    members: list[dict[str, Any]]  # id, email, first_name, variant, time_zone


def segment_members(
    engine: Engine, workspace: Workspace, name: str, limit: int, *, unmasked: bool = False
) -> SegmentMembers:
    """The segment `name` of `audiences/segments.yaml` as of now: its size and its first `limit` members."""
    segments = load_segments(workspace.audiences_dir / "segments.yaml", load_vocabulary_for(workspace).names)
    segment = get_segment(segments, name)
    with engine.connect() as conn:
        frame = load_frame(conn)
    result = evaluate(segment, frame, datetime.now(UTC))
    members = [
        {
            "id": int(row.id),
            "email": row.email if unmasked else mask_email(row.email),
            "first_name": row.first_name,
            "variant": row.variant,
            "time_zone": row.time_zone,
        }
        for row in result.members.head(max(0, limit)).itertuples()
    ]
    return SegmentMembers(name, result.size, members)


def confirmation_link(workspace: Workspace, token: str) -> str:
    """The public link that confirms a double opt-in with `token` (`actions.contacts.start_opt_in`)."""
    return f"{link_base(workspace.settings)}/confirm/{token}"
