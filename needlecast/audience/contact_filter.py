"""What a person asks of the contact list (a search and filters) and the contacts it selects.

Contract:
- `ContactFilter.from_fields(fields)` reads a form's fields (`q`, `concern`, `segment`, `consent`, `source`,
  `suppressed`, `activity`), trimmed and bounded; a value that is not one of the choices is dropped.
- `to_query(conn, workspace, wanted, ...)` turns it into the store's `ContactQuery`: the text matches a part
  of a name or an address when `unmasked`; otherwise (a role that sees addresses masked) only an exact
  address, so that masked names and addresses cannot be read back a letter at a time by searching. A
  segment's members are its members now (suppression, consent and pauses applied, as a send would), from
  the shared frame cache when given. An unknown segment or concern is `NotFound`/`InvalidRequest` naming it.
- `Selection`: a filter plus either every contact it matches or a few ids picked on a page.
- `describe(wanted, ...)`: the filter in words, for a confirmation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from needlecast.addresses import normalise_email
from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.membership import evaluate, load_frame
from needlecast.audience.segments import get_segment, load_segments
from needlecast.audience.sources import source_words
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import InvalidAddress, InvalidRequest
from needlecast.store.contact_search import ContactQuery

CONSENT_CHOICES = {
    "marketing": "Agreed to marketing emails",
    "pending": "Has not confirmed their address yet",
    "none": "Has not agreed to marketing emails",
    "concern": "Agreed to the use of their skin concern",
}
SUPPRESSION_CHOICES = {"no": "Can be emailed (not suppressed)", "yes": "Suppressed (never emailed)"}
ACTIVITY_CHOICES = {
    "7": "Active in the last 7 days",
    "30": "Active in the last 30 days",
    "90": "Active in the last 90 days",
    "quiet-90": "No activity for 90 days",
    "quiet-180": "No activity for 180 days",
    "quiet-365": "No activity for a year",
}
LONGEST_TEXT = 200


@dataclass(frozen=True)
class ContactFilter:
    text: str = ""
    concern: str = ""
    segment: str = ""
    consent: str = ""
    source: str = ""
    suppressed: str = ""
    activity: str = ""

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> ContactFilter:
        def value(name: str) -> str:
            raw = fields.get(name)
            return "".join(ch for ch in str(raw or "") if ch.isprintable()).strip()[:LONGEST_TEXT]

        return cls(
            text=value("q"),
            concern=value("concern"),
            segment=value("segment"),
            consent=value("consent") if value("consent") in CONSENT_CHOICES else "",
            source=value("source"),
            suppressed=value("suppressed") if value("suppressed") in SUPPRESSION_CHOICES else "",
            activity=value("activity") if value("activity") in ACTIVITY_CHOICES else "",
        )

    def fields(self) -> dict[str, str]:
        """The form fields that ask for this filter again (empty ones left out)."""
        named = {
            "q": self.text,
            "concern": self.concern,
            "segment": self.segment,
            "consent": self.consent,
            "source": self.source,
            "suppressed": self.suppressed,
            "activity": self.activity,
        }
        return {k: v for k, v in named.items() if v}

    @property
    def empty(self) -> bool:
        return not self.fields()


@dataclass(frozen=True)
class Selection:
    """Contacts to act on: every contact `wanted` matches, or (when `ids` is given) those of `ids` it matches."""

    wanted: ContactFilter = field(default_factory=ContactFilter)
    ids: tuple[int, ...] | None = None


def _segment_ids(conn: Connection, workspace: Workspace, name: str, frames: FrameCache | None, now: datetime) -> Any:
    defined = load_segments(workspace.audiences_dir / "segments.yaml", load_vocabulary_for(workspace).names)
    segment = get_segment(defined, name)
    result = frames.segment(conn, segment, now) if frames is not None else evaluate(segment, load_frame(conn), now)
    return [int(i) for i in result.members["id"]]


def to_query(
    conn: Connection,
    workspace: Workspace,
    wanted: ContactFilter,
    *,
    unmasked: bool,
    now: datetime,
    frames: FrameCache | None = None,
) -> ContactQuery:
    """The store's query for `wanted` (see the module contract)."""
    query = ContactQuery(consent=wanted.consent, source=wanted.source)
    if wanted.text and unmasked:
        query = replace(query, text=wanted.text)
    elif wanted.text:
        try:
            query = replace(query, email=normalise_email(wanted.text))
        except InvalidAddress:
            query = replace(query, email="-")  # not an address: no contact has it
    if wanted.concern:
        if wanted.concern not in load_vocabulary_for(workspace).names:
            raise InvalidRequest(f"concern: no concern named '{wanted.concern}'")
        query = replace(query, concern=wanted.concern)
    if wanted.segment:
        query = replace(query, member_ids=_segment_ids(conn, workspace, wanted.segment, frames, now))
    if wanted.suppressed:
        query = replace(query, suppressed=wanted.suppressed == "yes")
    if wanted.activity:
        quiet, _, days = wanted.activity.rpartition("-")
        since = now - timedelta(days=int(days))
        query = replace(query, quiet_since=since) if quiet else replace(query, active_since=since)
    return query


def selection_query(
    conn: Connection,
    workspace: Workspace,
    selection: Selection,
    *,
    unmasked: bool,
    now: datetime,
    frames: FrameCache | None = None,
) -> ContactQuery:
    """The store's query for `selection`: its filter's, limited to its ids when it has some."""
    query = to_query(conn, workspace, selection.wanted, unmasked=unmasked, now=now, frames=frames)
    return query if selection.ids is None else replace(query, chosen_ids=selection.ids)


def describe(wanted: ContactFilter, unmasked: bool, labels: Mapping[str, str] | None = None) -> list[str]:
    """The filter in words, one line each ("Searched for “kaia”", "Concern: Acne and scarring"...); `labels`
    names the concerns (the vocabulary's labels)."""
    lines = []
    if wanted.text:
        lines.append(f"Searched for “{wanted.text}”" if unmasked else "Found by their exact address")
    if wanted.concern:
        lines.append(f"Concern: {(labels or {}).get(wanted.concern, wanted.concern)}")
    if wanted.segment:
        lines.append(f"In the segment “{wanted.segment}”")
    if wanted.consent:
        lines.append(CONSENT_CHOICES[wanted.consent])
    if wanted.source:
        lines.append(f"Source: {source_words(wanted.source)}")
    if wanted.suppressed:
        lines.append(SUPPRESSION_CHOICES[wanted.suppressed])
    if wanted.activity:
        lines.append(ACTIVITY_CHOICES[wanted.activity])
    return lines
