"""The template context for one variant: the clinic, the concern, the article and the sections it gets.

Contract: `email_context(article, vocabulary, clinic, concern, sections)` returns only data that is the same for
every recipient of the variant (no personal values: those are tokens). `article` is the step's article
(`article.treatment` names its treatment; `intro` and `closing` are its own); `lead` and `more` are chosen
from `sections` (default: the article's benefits; a library-wide step passes every article's), each section
naming its own `treatment`. For `general`, the lead is the first general benefit and the deep dive the
other general benefits. A concern the sections say nothing about gets the general lead and deep dive, and
`covered` is false (a template may say so).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from needlecast.config import ClinicSettings
from needlecast.content.model import GENERAL, Article, Section, lead_of, more_of
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import InvalidRequest


def variant_concerns(vocabulary: Vocabulary) -> tuple[str, ...]:
    """Every content variant a concern-segmented step has: each concern, then `general`."""
    return (*vocabulary.names, GENERAL)


def email_context(
    article: Article,
    vocabulary: Vocabulary,
    clinic: ClinicSettings,
    concern: str,
    sections: Sequence[Section] | None = None,
) -> dict[str, Any]:
    if concern != GENERAL and concern not in vocabulary.names:
        raise InvalidRequest(
            f"'{concern}' is not a content variant; use one of: {', '.join(variant_concerns(vocabulary))}"
        )
    pool = article.benefits if sections is None else tuple(sections)
    covered = concern == GENERAL or any(s.is_for(concern) for s in pool)
    chosen = concern if covered else GENERAL  # nothing on the concern: the general sections, not an empty email
    lead = lead_of(pool, chosen)
    more = list(more_of(pool, chosen))
    return {
        "clinic": asdict(clinic),
        "lang": clinic.language,
        "concern": concern,
        "concern_label": vocabulary.label(concern),
        "article": {"id": article.id, "title": article.title, "treatment": article.treatment},
        "treatments": list(dict.fromkeys(s.treatment for s in [*([lead] if lead else []), *more] if s.treatment)),
        "covered": covered,
        "intro": article.intro,
        "lead": lead,
        "more": more,
        "closing": article.closing,
    }
