"""The template context for one variant: the clinic, the concern and the article sections it gets.

Contract: `email_context(article, vocabulary, clinic, concern)` returns only data that is the same for every
recipient of the variant (no personal values: those are tokens). For `general`, the lead is the first
general benefit and the deep dive the other general benefits.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from needlecast.config import ClinicSettings
from needlecast.content.model import GENERAL, Article
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import InvalidRequest


def variant_concerns(vocabulary: Vocabulary) -> tuple[str, ...]:
    """Every content variant a concern-segmented step has: each concern, then `general`."""
    return (*vocabulary.names, GENERAL)


def email_context(article: Article, vocabulary: Vocabulary, clinic: ClinicSettings, concern: str) -> dict[str, Any]:
    if concern != GENERAL and concern not in vocabulary.names:
        raise InvalidRequest(
            f"'{concern}' is not a content variant; use one of: {', '.join(variant_concerns(vocabulary))}"
        )
    return {
        "clinic": asdict(clinic),
        "lang": clinic.language,
        "concern": concern,
        "concern_label": vocabulary.label(concern),
        "article": {"title": article.title},
        "intro": article.intro,
        "lead": article.lead_for(concern),
        "more": list(article.more_for(concern)),
        "closing": article.closing,
    }
