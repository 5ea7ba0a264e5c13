"""Read models of contacts: one person's profile and timeline, the members of a segment, the link that
confirms a double opt-in.

Contract: addresses are masked (`a***@example.org`) unless `unmasked` (a caller with
`contacts.view_unmasked`; the command line has every permission). `contact_view` is `NotFound` for an
address that is no contact; `segment_members` is `NotFound` naming the segments there are for one there is
not, and lists the first `limit` members in the segment's order with its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from needlecast.addresses import mask_email
from needlecast.audience.profile import Profile, contact_profile
from needlecast.audience.segments import evaluate, get_segment, load_frame, load_segments
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.templating.recipient import link_base

__all__ = ["Profile", "SegmentMembers", "confirmation_link", "contact_view", "segment_members"]


def contact_view(engine: Engine, email: str, *, unmasked: bool = False) -> Profile:
    """The contact's facts, consent history, emails and events (see `audience.profile`)."""
    with engine.connect() as conn:
        return contact_profile(conn, email, unmasked=unmasked)


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
