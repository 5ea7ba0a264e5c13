"""Draft a campaign from an article: `needlecast content draft ARTICLE`.

Contract: `draft_campaign(ctx, article_id, kind, segment, campaign_id)` returns a `Draft`: the campaign file's
mapping and the notes that explain it. A sequence has the three nurture steps (welcome with the concern's
lead section, a deep dive, a consultation invitation) at 0, 3 and 7 days; a broadcast one step a week ahead
at 09:00 in each recipient's zone; a clinic journey (recall, aftercare, no-show, win-back) the graph of
`needlecast.campaign.journeys.drafts`. Its variants are the concerns the article covers and `general`; a concern
the article has no section for falls back to general content, and a note says so. The draft is
`draft: true` (planned and previewed, never sent until a person removes the line) and has no sign-off: lint
decides whether it needs one. `write_draft(ctx, draft, force)` writes `campaigns/ID.yaml` through the same
loader that validates every campaign file, with the notes as a comment on top, and refuses to overwrite a
file unless `force`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.editor import save_document
from needlecast.campaign.definition.model import BROADCAST, JOURNEY, SEQUENCE
from needlecast.campaign.journeys.drafts import CLINIC_KINDS, Course, clinic_steps
from needlecast.content.model import GENERAL
from needlecast.errors import InvalidRequest

SEQUENCE_STEPS = (
    ("welcome", "emails/welcome", "0d"),
    ("deep-dive", "emails/deep_dive", "3d"),
    ("consultation", "emails/consultation", "7d"),
)
BROADCAST_TEMPLATE = "emails/broadcast"


@dataclass
class Draft:
    document: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.document["id"])


def draft_campaign(
    ctx: CampaignContext,
    article_id: str,
    kind: str = SEQUENCE,
    segment: str | None = None,
    campaign_id: str | None = None,
    today: date | None = None,
    course: Course | None = None,
) -> Draft:
    """A campaign that uses `article_id` (see the module contract)."""
    if kind not in (SEQUENCE, BROADCAST, *CLINIC_KINDS):
        raise InvalidRequest(
            f"kind: '{kind}' is not a kind of draft; use sequence, broadcast, {', '.join(CLINIC_KINDS)}"
        )
    article = ctx.library.article(article_id)
    segment = segment or ("new-leads" if kind == SEQUENCE and "new-leads" in ctx.segments else "all-leads")
    label = {SEQUENCE: "nurture", BROADCAST: "broadcast"}.get(kind, kind)
    if segment not in ctx.segments:
        raise InvalidRequest(
            f"segment: '{segment}' is not defined; use one of: {', '.join(sorted(ctx.segments))} "
            "(audiences/segments.yaml)"
        )
    covered = [c for c in ctx.vocabulary.names if article.covers(c)]
    missing = [c for c in ctx.vocabulary.names if c not in covered]
    notes = [
        f"Drafted by `needlecast content draft {article.id}` from {article.path.name} ({article.treatment}).",
        f"Variants: {', '.join([*covered, GENERAL])} (the concerns the article has sections for, and general).",
    ]
    if missing:
        notes.append(f"No section of the article is about {', '.join(missing)}: those leads get the general variant.")
    notes.append("A draft is planned and previewed but never sent: remove 'draft: true' when it is ready.")
    notes.append("No sign-off: run `needlecast lint`; a reviewer signs off if it finds errors.")
    variants = [*covered, GENERAL]
    document: dict[str, Any] = {
        "id": campaign_id or f"{article.id}-{label}",
        "name": f"{article.treatment} {label}",
        "kind": JOURNEY if kind in CLINIC_KINDS else kind,
        "draft": True,
        "segment": segment,
        "time_zone": "Europe/London",
        "article": article.id,
    }
    if kind in CLINIC_KINDS:
        fields, journey_notes = clinic_steps(kind, article, variants, course or Course())
        document.update(fields)
        notes[2:2] = journey_notes
    elif kind == SEQUENCE:
        document["steps"] = [
            {"id": step_id, "template": template, "variants": variants, "delay": delay}
            for step_id, template, delay in SEQUENCE_STEPS
        ]
        document["enrol"] = {"joined_after": (today or date.today()).isoformat()}
        document["exits"] = [{"event": "booked"}]
    else:
        document["steps"] = [{"id": "guide", "template": BROADCAST_TEMPLATE, "variants": variants}]
        on = (today or date.today()) + timedelta(days=7)
        document["schedule"] = {"local_time": "09:00", "date": on.isoformat()}
    return Draft(document, notes)


def write_draft(ctx: CampaignContext, draft: Draft, force: bool = False) -> Path:
    """Write the draft as `campaigns/ID.yaml` (see the module contract); the path written."""
    path = ctx.workspace.campaigns_dir / f"{draft.id}.yaml"
    if path.exists() and not force:
        raise InvalidRequest(
            f"{path} exists already: give the draft another id with --id, or replace the file with --force"
        )
    if draft.id in ctx.campaigns and ctx.campaigns[draft.id].path.resolve() != path.resolve():
        raise InvalidRequest(f"'{draft.id}' is the id of {ctx.campaigns[draft.id].path.name}: use --id")
    comment = "".join(f"# {note}\n" for note in draft.notes)
    save_document(ctx, draft.document, replacing=path if path.exists() else None, comment=comment)
    return path
