"""What the console's journey editor reads: a journey's file (its mapping and its text, comments included) and
the choices its form offers (segments, email templates, variants). Reads only.

Contract: `journey_source(workspace, campaign_id)` is the journey's `JourneySource` (`NotFound` for an
unknown id, and for a campaign of another kind: the journey editor has nothing to show for it);
`journey_source(workspace, None)` is the choices with an empty document, for a new journey.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.editor import document_of
from needlecast.campaign.definition.model import JOURNEY
from needlecast.config import Workspace
from needlecast.errors import NotFound
from needlecast.templating.context import variant_concerns
from needlecast.templating.environment import campaign_templates


@dataclass
class JourneySource:
    document: dict[str, Any]
    text: str
    segments: list[str]
    templates: list[str]
    variants: tuple[str, ...]
    draft: bool = False
    name: str = ""
    others: list[str] = field(default_factory=list)  # the other campaigns' ids (an id a new journey may not take)


def journey_source(workspace: Workspace, campaign_id: str | None) -> JourneySource:
    """The journey's file and the form's choices (see the module contract)."""
    ctx = CampaignContext.load(workspace)
    document: dict[str, Any] = {}
    text = ""
    draft = False
    name = ""
    if campaign_id is not None:
        campaign = ctx.campaigns.get(campaign_id)
        if campaign is None or campaign.kind != JOURNEY:
            raise NotFound(f"no journey '{campaign_id}'", what="journey", name=campaign_id)
        document = document_of(campaign)
        text = campaign.path.read_text(encoding="utf-8")
        draft, name = campaign.draft, campaign.name
    return JourneySource(
        document,
        text,
        sorted(ctx.segments),
        list(campaign_templates(workspace.templates_dir)),
        tuple(variant_concerns(ctx.vocabulary)),
        draft,
        name,
        sorted(c for c in ctx.campaigns if c != campaign_id),
    )
