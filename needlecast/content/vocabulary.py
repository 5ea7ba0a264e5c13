"""The concern vocabulary: canonical concerns, their synonyms and their topic keywords.

Contract:
- `Vocabulary.normalise(value)` maps a free-text concern ("Anti-Aging", "dark spots") to its canonical name,
  or returns None for a value it does not know: unknown values are reported by callers, never guessed.
- `Vocabulary.tag(title, body)` returns the concerns of a section: a concern whose synonym or keyword appears
  in the title, or whose synonyms appear in the body as two different terms. A single passing mention in
  the body is not enough (the "Safe for All Skin Types" section mentions hyperpigmentation as a risk, not as
  its subject). Matching is case-insensitive on whole words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from needlecast.content.model import GENERAL
from needlecast.errors import ConfigurationError, NotFound
from needlecast.yamlfile import read_yaml


@dataclass(frozen=True)
class Concern:
    name: str
    label: str
    synonyms: tuple[str, ...]
    keywords: tuple[str, ...]


def _term_pattern(term: str) -> re.Pattern[str]:
    # Whole words, and a hyphen or space between parts may be either ("anti-aging", "anti aging").
    parts = [re.escape(p) for p in re.split(r"[\s-]+", term.strip()) if p]
    return re.compile(r"(?<![\w-])" + r"[\s-]?".join(parts) + r"(?![\w-])", re.IGNORECASE)


def _fold(value: str) -> str:
    return re.sub(r"[\s_-]+", " ", value.strip().lower())


@dataclass(frozen=True)
class Vocabulary:
    concerns: tuple[Concern, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.concerns)

    def concern(self, name: str) -> Concern:
        for candidate in self.concerns:
            if candidate.name == name:
                return candidate
        raise NotFound(f"no concern '{name}' in the vocabulary; known: {', '.join(self.names)}")

    def label(self, name: str) -> str:
        return "General" if name == GENERAL else self.concern(name).label

    @cached_property
    def _lookup(self) -> dict[str, str]:
        """Folded name or synonym -> canonical concern (the first concern wins a shared synonym)."""
        lookup: dict[str, str] = {}
        for concern in self.concerns:
            for term in (concern.name, *concern.synonyms):
                lookup.setdefault(_fold(term), concern.name)
        return lookup

    def normalise(self, value: str) -> str | None:
        """The canonical concern for `value`, or None when the value matches no concern."""
        return self._lookup.get(_fold(value))

    def tag(self, title: str, body: str) -> tuple[str, ...]:
        """Concerns of a section (see the module contract); `("general",)` when none match."""
        from_title: list[str] = []
        from_body: list[str] = []
        for concern in self.concerns:
            title_terms = (concern.name, *concern.synonyms, *concern.keywords)
            body_hits = {t.lower() for t in (concern.name, *concern.synonyms) if _term_pattern(t).search(body)}
            if any(_term_pattern(t).search(title) for t in title_terms):
                from_title.append(concern.name)
            elif len(body_hits) >= 2:
                from_body.append(concern.name)
        # Title matches first: the first tag is the section's primary concern (see Article.lead_for).
        return tuple(from_title + from_body) or (GENERAL,)


def load_vocabulary(path: Path) -> Vocabulary:
    """Read a vocabulary YAML file (see content/vocabulary.yaml for the shape)."""
    raw = read_yaml(path, "the concern vocabulary; set [content] vocabulary in needlecast.toml")
    entries = (raw or {}).get("concerns") if isinstance(raw, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise ConfigurationError(f"{path}: expected a 'concerns:' mapping of concern name -> synonyms/keywords")
    concerns = []
    for name, spec in entries.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ConfigurationError(f"{path}: concern '{name}' must be a mapping with synonyms and keywords")
        if str(name) == GENERAL:
            raise ConfigurationError(f"{path}: '{GENERAL}' is reserved for untagged content")
        concerns.append(
            Concern(
                name=str(name),
                label=str(spec.get("label") or str(name).title()),
                synonyms=tuple(str(s) for s in spec.get("synonyms") or ()),
                keywords=tuple(str(k) for k in spec.get("keywords") or ()),
            )
        )
    return Vocabulary(tuple(concerns))
