"""Everything a plan or a run reads from the workspace, loaded once per job run (jobs carry ids only)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from jinja2.sandbox import SandboxedEnvironment

from needlecast.audience.segments import Segment, load_segments
from needlecast.campaign.loader import load_campaigns
from needlecast.campaign.model import Campaign
from needlecast.config import Workspace
from needlecast.content.loader import load_article, load_vocabulary_for
from needlecast.content.model import Article
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import NotFound
from needlecast.templating.context import variant_concerns
from needlecast.templating.environment import build_environment


@dataclass
class CampaignContext:
    workspace: Workspace
    vocabulary: Vocabulary
    article: Article
    segments: dict[str, Segment]
    campaigns: dict[str, Campaign]

    @classmethod
    def load(cls, workspace: Workspace) -> CampaignContext:
        vocabulary = load_vocabulary_for(workspace)
        article = load_article(workspace, vocabulary)
        segments = load_segments(workspace.audiences_dir / "segments.yaml", vocabulary.names)
        campaigns = load_campaigns(workspace.campaigns_dir, variant_concerns(vocabulary))
        for campaign in campaigns.values():
            if campaign.segment not in segments:
                from needlecast.errors import CampaignFileError

                raise CampaignFileError(
                    str(campaign.path),
                    "segment",
                    f"'{campaign.segment}' is not defined",
                    f"use one of: {', '.join(sorted(segments))} (audiences/segments.yaml)",
                )
        return cls(workspace, vocabulary, article, segments, campaigns)

    def campaign(self, campaign_id: str) -> Campaign:
        if campaign_id not in self.campaigns:
            raise NotFound(
                f"no campaign '{campaign_id}' in {self.workspace.campaigns_dir}; "
                f"defined: {', '.join(sorted(self.campaigns)) or 'none'}"
            )
        return self.campaigns[campaign_id]

    @cached_property
    def templates(self) -> SandboxedEnvironment:
        return build_environment(self.workspace.templates_dir)
