"""The Content page: every article's sections, the concern each got and why, the flagged ones first; a
reviewer corrects a tag with one click (written into `content/tags.yaml`, audited) and sees which campaigns
use the article and whose sign-off the correction makes stale.

The library is read on every request, so an article dropped into `content/` shows up without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import content as content_actions
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.signoff import stale_files
from needlecast.content.model import GENERAL, KIND_BENEFIT, KIND_SECTION, SET_BY_HAND, Article, Section
from needlecast.errors import NeedlecastError
from needlecast.web.console.auth import Console, Who, console_of, page


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


def _back(console: Console, request: Request, article_id: str, message: str, kind: str = "ok") -> Response:
    target = f"{console.prefix(request)}/content?flash={quote(message)}&kind={kind}#article-{quote(article_id)}"
    return RedirectResponse(target, status_code=303)


@page("content.view")
def content_page(request: Request, who: Who) -> Response:
    console = console_of(request)
    ctx = CampaignContext.load(console.workspace)
    return console.render(
        request,
        who,
        "content.html",
        title="Content",
        articles=_views(ctx),
        problems={i: str(e).split(": ", 1)[-1] for i, e in ctx.library.problems.items()},
        concerns=[(name, ctx.vocabulary.label(name)) for name in (*ctx.vocabulary.names, GENERAL)],
        flash=request.query_params.get("flash", ""),
        flash_kind=request.query_params.get("kind", ""),
    )


@page("content.tag")
def correct_tag(request: Request, who: Who) -> Response:
    console = console_of(request)
    assert who.form is not None
    article_id, slug = request.path_params["article"], request.path_params["slug"]
    choice = str(who.form.get("concern") or "")
    concerns = None if choice == "auto" else (choice,)
    try:
        content_actions.correct_section_tags(console.engine, console.workspace, who.actor, article_id, slug, concerns)
    except NeedlecastError as err:
        return _back(console, request, article_id, str(err), "bad")
    section = CampaignContext.load(console.workspace).library.article(article_id).section(slug)
    if concerns is None:
        done = f"“{section.title}” is back to its automatic tags ({', '.join(section.concerns)})."
    else:
        done = f"“{section.title}” now goes to the {choice} emails."
    return _back(console, request, article_id, done)


ROUTES = [
    Route("/content", content_page),
    Route("/content/{article}/{slug}/tags", correct_tag, methods=["POST"]),
]
