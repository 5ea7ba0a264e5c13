"""Content review: every article's sections with the concern each got and why (flagged ones first), which
campaigns use each article, and whose claims sign-off a tag correction would make stale; as the console's
Content page shows them.

Contract: `content_review(workspace)` reads the library afresh (an article dropped into `content/` shows up at
once) and returns a `ContentReview`: the articles by most flagged sections, then id; the articles that did not
load, with their problem; and the concerns a section may be given (each concern, then general), with labels.
`section_of(workspace, article_id, slug)` is one section (`NotFound` naming the ones there are).
"""

from __future__ import annotations

from dataclasses import dataclass

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.signoff import stale_files
from needlecast.config import Workspace
from needlecast.content.model import GENERAL, KIND_BENEFIT, KIND_SECTION, SET_BY_HAND, Article, Section


@dataclass(frozen=True)
class CampaignUse:
    id: str
    name: str
    signed_by: str  # "" when the campaign has no sign-off
    stale: bool  # its sign-off no longer covers what it sends


@dataclass(frozen=True)
class ArticleView:
    article: Article
    sections: list[Section]  # flagged first, then in article order
    corrected: set[str]  # slugs whose tags were set by hand
    campaigns: list[CampaignUse]

    @property
    def flagged(self) -> int:
        return sum(1 for s in self.sections if s.review)


def _views(ctx: CampaignContext) -> list[ArticleView]:
    uses: dict[str, list[CampaignUse]] = {}
    for campaign in ctx.campaigns.values():
        signed = campaign.signoff.reviewer if campaign.signoff else ""
        use = CampaignUse(
            campaign.id, campaign.name or campaign.id, signed, bool(signed) and bool(stale_files(ctx, campaign))
        )
        for article_id in ctx.article_ids_of(campaign):
            uses.setdefault(article_id, []).append(use)
    views = []
    for article in ctx.library.articles.values():
        taggable = [s for s in article.sections if s.kind in (KIND_BENEFIT, KIND_SECTION)]
        ordered = sorted(taggable, key=lambda s: (not s.review, article.sections.index(s)))
        corrected = {s.slug for s in taggable if s.reasons[:1] == (SET_BY_HAND,)}
        views.append(ArticleView(article, ordered, corrected, uses.get(article.id, [])))
    return sorted(views, key=lambda v: (-v.flagged, v.article.id))


@dataclass(frozen=True)
class ContentReview:
    articles: list[ArticleView]
    problems: dict[str, str]  # article id -> why it did not load
    concerns: list[tuple[str, str]]  # (name, label) of each concern a section may go to, then general


def content_review(workspace: Workspace) -> ContentReview:
    """The Content page (see the module contract)."""
    ctx = CampaignContext.load(workspace)
    return ContentReview(
        _views(ctx),
        {i: str(e).split(": ", 1)[-1] for i, e in ctx.library.problems.items()},
        [(name, ctx.vocabulary.label(name)) for name in (*ctx.vocabulary.names, GENERAL)],
    )


def section_of(workspace: Workspace, article_id: str, slug: str) -> Section:
    """One section of one article, as the library has it now; `NotFound` for another."""
    return CampaignContext.load(workspace).library.article(article_id).section(slug)
