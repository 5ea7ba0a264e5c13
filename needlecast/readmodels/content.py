"""Read models of the content library: its articles with their sections per concern, and one article's
sections with their concern tags and the reasons for them.

Contract: `library_view(workspace)` lists every article that loads (id, file, title, treatment, whether it is
the `[content] article`, how many sections each concern gets, how many sections are flagged for review) and
every file that does not, with why; `article_view(workspace, article_id)` is one article (default: the
`[content] article`; `NotFound` naming the articles there are), each section with its line, kind, slug,
title, concerns, reasons and review note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from needlecast.config import Workspace
from needlecast.content.loader import load_library_for, load_vocabulary_for
from needlecast.content.model import GENERAL


@dataclass(frozen=True)
class LibraryView:
    concerns: list[str]  # the vocabulary's concerns, then "general": the columns of the sections' counts
    articles: list[dict[str, Any]]
    problems: list[dict[str, str]]  # id, problem: a file that did not load


def library_view(workspace: Workspace) -> LibraryView:
    """Every article of `content/`, with its sections per concern; files that cannot be read, with why."""
    vocabulary = load_vocabulary_for(workspace)
    library = load_library_for(workspace, vocabulary)
    concerns = [*vocabulary.names, GENERAL]
    articles = [
        {
            "id": article.id,
            "file": article.path.name,
            "title": article.title,
            "treatment": article.treatment,
            "default": article.id == library.default_id,
            "sections": {c: len(article.for_concern(c)) for c in concerns},
            "to_review": sum(1 for s in article.sections if s.review),
        }
        for article in library.articles.values()
    ]
    problems = [{"id": article_id, "problem": str(err)} for article_id, err in library.problems.items()]
    return LibraryView(concerns, articles, problems)


def article_view(workspace: Workspace, article_id: str | None = None) -> dict[str, Any]:
    """One article and its sections (see the module contract), in the article's order."""
    library = load_library_for(workspace)
    chosen = library.article(article_id) if article_id else library.default
    return {
        "id": chosen.id,
        "file": chosen.path.name,
        "title": chosen.title,
        "treatment": chosen.treatment,
        "sections": [
            {
                "line": s.line,
                "kind": s.kind,
                "slug": s.slug,
                "title": s.title,
                "concerns": list(s.concerns),
                "reasons": list(s.reasons),
                "review": s.review or None,
            }
            for s in chosen.sections
        ],
    }
