"""The content model: an article is an ordered list of sections, each tagged with concerns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from needlecast.errors import NotFound

GENERAL = "general"

KIND_INTRO = "intro"
KIND_BENEFIT = "benefit"
KIND_CLOSING = "closing"
KIND_SECTION = "section"


@dataclass(frozen=True)
class Section:
    """One block of an article.

    `line` is the 1-based line of the section's heading (or first line) in the source file, so that lint
    findings and errors can point at it. `concerns` is never empty: untagged sections are `("general",)`.
    """

    title: str
    slug: str
    body: str
    kind: str
    line: int
    concerns: tuple[str, ...] = (GENERAL,)

    def is_for(self, concern: str) -> bool:
        return concern in self.concerns


@dataclass(frozen=True)
class Article:
    path: Path
    title: str
    sections: tuple[Section, ...] = field(default_factory=tuple)

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
        """The section that opens a concern's emails: the first whose primary (first) tag is `concern`,
        else the first tagged with it at all."""
        tagged = self.for_concern(concern)
        return next((s for s in tagged if s.concerns[0] == concern), tagged[0] if tagged else None)

    def more_for(self, concern: str) -> tuple[Section, ...]:
        """The concern's sections after its lead, then the general benefits (for a deep-dive email)."""
        lead = self.lead_for(concern)
        tagged = [s for s in self.for_concern(concern) if s != lead]
        general = [s for s in self.for_concern(GENERAL) if s != lead and s not in tagged]
        return tuple(tagged + general)
