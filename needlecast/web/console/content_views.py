"""The Content page: every article's sections, the concern each got and why, the flagged ones first; a
reviewer corrects a tag with one click (written into `content/tags.yaml`, audited) and sees which campaigns
use the article and whose sign-off the correction makes stale.

The library is read on every request, so an article dropped into `content/` shows up without a restart.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import content as content_actions
from needlecast.errors import NeedlecastError
from needlecast.readmodels.content_review import content_review, section_of
from needlecast.web.console.auth import Console, Who, console_of, page


def _back(console: Console, request: Request, article_id: str, message: str, kind: str = "ok") -> Response:
    target = f"{console.prefix(request)}/content?flash={quote(message)}&kind={kind}#article-{quote(article_id)}"
    return RedirectResponse(target, status_code=303)


@page("content.view")
def content_page(request: Request, who: Who) -> Response:
    console = console_of(request)
    review = content_review(console.workspace)
    return console.render(
        request,
        who,
        "content.html",
        title="Content",
        articles=review.articles,
        problems=review.problems,
        concerns=review.concerns,
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
    section = section_of(console.workspace, article_id, slug)
    if concerns is None:
        done = f"“{section.title}” is back to its automatic tags ({', '.join(section.concerns)})."
    else:
        done = f"“{section.title}” now goes to the {choice} emails."
    return _back(console, request, article_id, done)


ROUTES = [
    Route("/content", content_page),
    Route("/content/{article}/{slug}/tags", correct_tag, methods=["POST"]),
]
