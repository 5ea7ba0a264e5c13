"""The content model: an article is an ordered list of sections, each tagged with concerns; a library is every
article of a workspace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from needlecast.errors import NotFound

GENERAL = "general"

KIND_INTRO = "intro"
KIND_BENEFIT = "benefit"
KIND_CLOSING = "closing"
KIND_SECTION = "section"
# A section about the treatment rather than a benefit: who it suits, downtime, aftercare, prices, sessions,
# booking. General by its place, and never a concern's content.
KIND_DETAIL = "detail"
# The reason a section gives when its tags were set by hand (the Content page or content/tags.yaml).
SET_BY_HAND = "set by hand"


@dataclass(frozen=True)
class Section:
    """One block of an article.

    `line` is the 1-based line of the section's heading (or first line) in the source file, so that lint
    findings and errors can point at it. `concerns` is never empty: untagged sections are `("general",)`.
    `reasons` say why it has its tags (the words and weights, or the override that set them); `review` is
    non-empty when the evidence was weak or split and a person should check the tags. `article` and
    `treatment` name the article the section comes from (a library-wide email mixes articles).
    """

    title: str
    slug: str
    body: str
    kind: str
    line: int
    concerns: tuple[str, ...] = (GENERAL,)
    reasons: tuple[str, ...] = ()
    review: str = ""
    article: str = ""
    treatment: str = ""

    def is_for(self, concern: str) -> bool:
        return concern in self.concerns


def lead_of(sections: Sequence[Section], concern: str) -> Section | None:
    """The section that opens a concern's emails: the first whose primary (first) tag is `concern`, else the
    first tagged with it at all."""
    tagged = [s for s in sections if s.is_for(concern)]
    return next((s for s in tagged if s.concerns[0] == concern), tagged[0] if tagged else None)


def more_of(sections: Sequence[Section], concern: str) -> tuple[Section, ...]:
    """The concern's sections after its lead, then the general ones (for a deep-dive email)."""
    lead = lead_of(sections, concern)
    tagged = [s for s in sections if s.is_for(concern) and s != lead]
    general = [s for s in sections if s.is_for(GENERAL) and s != lead and s not in tagged]
    return tuple(tagged + general)


@dataclass(frozen=True)
class Article:
    """One file of `content/`: `id` is its file name without the suffix; `treatment` is what its emails call
    the treatment ("Microneedling"), from its front matter, `content/articles.yaml`, or its title."""

    path: Path
    title: str
    sections: tuple[Section, ...] = field(default_factory=tuple)
    id: str = ""
    treatment: str = ""

    @property
    def intro(self) -> Section | None:
        return next((s for s in self.sections if s.kind == KIND_INTRO), None)

    @property
    def closing(self) -> Section | None:
        return next((s for s in self.sections if s.kind == KIND_CLOSING), None)

    @property
    def benefits(self) -> tuple[Section, ...]:
        return tuple(s for s in self.sections if s.kind in (KIND_BENEFIT, KIND_SECTION))

    def section(self, slug: str) -> Section:
        for candidate in self.sections:
            if candidate.slug == slug:
                return candidate
        known = ", ".join(s.slug for s in self.sections)
        raise NotFound(f"{self.path.name} has no section '{slug}'; its sections: {known}")

    def for_concern(self, concern: str) -> tuple[Section, ...]:
        """Benefit sections tagged with `concern`, in article order."""
        return tuple(s for s in self.benefits if s.is_for(concern))

    def lead_for(self, concern: str) -> Section | None:
        """The benefit that opens a concern's emails (see `lead_of`)."""
        return lead_of(self.benefits, concern)

    def more_for(self, concern: str) -> tuple[Section, ...]:
        """The concern's benefits after its lead, then the general benefits (see `more_of`)."""
        return more_of(self.benefits, concern)

    def covers(self, concern: str) -> bool:
        """Whether any benefit of the article is tagged with `concern` (else that variant gets general)."""
        return bool(self.for_concern(concern))
