"""Everything a plan or a run reads from the workspace, loaded once per job run (jobs carry ids only).

Contract: `CampaignContext.load(workspace)` reads the vocabulary, the content library, the segments and every
campaign file. A campaign file that does not validate (bad YAML, an unknown field, a template, segment or
article that does not exist) is kept in `problems` and leaves the other campaigns usable; `campaign(id)` names
it when asked for a campaign that is not among the loaded ones. An article that does not parse is in
`library.problems`: a step that uses it fails when it is rendered (naming the article), the others do not.
`article_for(step)` is the article a step draws on; `sections_for(step)` the sections its variants choose
from (its article's benefits, or every article's for a library-wide step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from jinja2.sandbox import SandboxedEnvironment

from needlecast.audience.segments import Segment, load_segments
from needlecast.campaign.definition.loader import load_campaigns
from needlecast.campaign.definition.model import Campaign, Step
from needlecast.config import Workspace
from needlecast.content.library import Library, article_ids
from needlecast.content.loader import load_library_for, load_vocabulary_for
from needlecast.content.model import Article, Section
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import CampaignFileError, NotFound
from needlecast.templating.context import variant_concerns
from needlecast.templating.environment import build_environment, campaign_templates


@dataclass
class CampaignContext:
    workspace: Workspace
    vocabulary: Vocabulary
    library: Library
    segments: dict[str, Segment]
    campaigns: dict[str, Campaign]
    problems: list[CampaignFileError] = field(default_factory=list)

    @classmethod
    def load(cls, workspace: Workspace) -> CampaignContext:
        vocabulary = load_vocabulary_for(workspace)
        library = load_library_for(workspace, vocabulary)
        segments = load_segments(workspace.audiences_dir / "segments.yaml", vocabulary.names)
        found = load_campaigns(
            workspace.campaigns_dir,
            variant_concerns(vocabulary),
            templates=campaign_templates(workspace.templates_dir),
            segments=segments,
            articles=article_ids(workspace),
        )
        return cls(workspace, vocabulary, library, segments, found.campaigns, found.problems)

    @property
    def article(self) -> Article:
        """The default article (`[content] article`)."""
        return self.library.default

    @property
    def article_ids(self) -> tuple[str, ...]:
        """Every article a campaign may name (parsed or not)."""
        return tuple(self.library.paths)

    def article_for(self, step: Step) -> Article:
        """The article `step` draws on; the article's `ContentError` when it does not parse."""
        return self.library.article(step.article) if step.article else self.library.default

    def sections_for(self, step: Step) -> tuple[Section, ...]:
        """The sections `step`'s variants choose their lead and deep dive from."""
        return self.library.benefits() if step.library else self.article_for(step).benefits

    def article_ids_of(self, campaign: Campaign) -> tuple[str, ...]:
        """Every article `campaign`'s emails draw on (a library-wide step: all of them), parsed or not."""
        if any(step.library for step in campaign.steps):
            return tuple(self.library.paths)
        return tuple(dict.fromkeys(step.article or self.library.default_id for step in campaign.steps))

    def campaign(self, campaign_id: str) -> Campaign:
        """The campaign with this id; `NotFound` (naming any file that failed to load) when there is none."""
        if campaign_id in self.campaigns:
            return self.campaigns[campaign_id]
        for problem in self.problems:
            if campaign_id in (problem.campaign_id, Path(problem.path).stem):
                raise problem
        broken = f" ({len(self.problems)} campaign file(s) could not be read: `needlecast campaign list`)"
        raise NotFound(
            f"no campaign '{campaign_id}' in {self.workspace.campaigns_dir}; "
            f"defined: {', '.join(sorted(self.campaigns)) or 'none'}{broken if self.problems else ''}",
            what="campaign",
            name=campaign_id,
        )

    def arm_subjects(self) -> dict[tuple[str, str, str], str]:
        """(campaign, step, arm) -> the arm's subject line as written in its campaign file (for reports)."""
        return {
            (c.id, step.id, arm.name): arm.subject
            for c in self.campaigns.values()
            for step in c.steps
            for arm in step.arms
        }

    @cached_property
    def templates(self) -> SandboxedEnvironment:
        return build_environment(self.workspace.templates_dir)
