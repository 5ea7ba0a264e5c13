"""The concern vocabulary: canonical concerns, their synonyms and their topic keywords.

Contract:
- `Vocabulary.normalise(value)` maps a free-text concern ("Anti-Aging", "dark spots") to its canonical name,
  or returns None for a value it does not know: unknown values are reported by callers, never guessed.
- `Vocabulary.explain(title, body)` tags a section and says why. Evidence, per concern: a synonym or keyword
  in the **title** weighs 3; each different synonym in the **body** weighs 1 (keywords are topic words, such
  as "collagen", and count only in a title: a body mentions mechanisms in passing). A concern with a weight
  of at least 2 is a tag; tags are ordered by weight (ties: a concern named in the title first, then the
  vocabulary's order), the first being the
  section's primary concern. A section with no tag is `general`. Matching is case-insensitive on whole words,
  and a word matches its inflections ("tighten" matches tightens, tightened, tightening; "scar" scarring).
  The result carries the reasons (which words decided it, with their weights) and a review note when the
  evidence is weak (a single mention in the body: left `general`, but flagged) or split (two or more
  concerns named in the title with the same weight: the first is taken, and flagged).
- `Vocabulary.tag(title, body)` is `explain(...).tags`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from needlecast.content.model import GENERAL
from needlecast.errors import ConfigurationError, NotFound
from needlecast.yamlfile import parse_yaml_of, read_text


@dataclass(frozen=True)
class Concern:
    name: str
    label: str
    synonyms: tuple[str, ...]
    keywords: tuple[str, ...]
    # Example sentences of the clinic's own, for a concern the wording model was not trained on: their words
    # are evidence for it (see `content.tagger`).
    examples: tuple[str, ...] = ()


TITLE_WEIGHT = 3.0
BODY_WEIGHT = 1.0
TAG_AT = 2.0
_VOWELS = "aeiou"


def _inflected(word: str) -> str:
    """A pattern for `word` and its common English inflections (plural, -ed, -ing, -er; a final e dropped,
    a final y to ies, a final consonant doubled: scar -> scarring)."""
    if not word.isalpha() or len(word) <= 3:
        return re.escape(word) + "(?:s|es)?" if word.isalpha() else re.escape(word)
    if word.endswith("e"):
        return re.escape(word[:-1]) + "(?:e|es|ed|er|ers|ing)"
    if word.endswith("y") and word[-2] not in _VOWELS:
        return re.escape(word[:-1]) + "(?:y|ies|ied|ier)"
    endings = ["s", "es", "ed", "er", "ers", "ing"]
    if word[-1] not in _VOWELS + "wxy" and word[-2] in _VOWELS and word[-3] not in _VOWELS:
        endings += [word[-1] + "ed", word[-1] + "ing", word[-1] + "er"]
    return re.escape(word) + "(?:" + "|".join(endings) + ")?"


def _words(term: str) -> list[str]:
    """A term's words, lower-cased: a hyphen or space between them may be either in the text."""
    return [p for p in re.split(r"[\s-]+", term.strip().lower()) if p]


@functools.lru_cache(maxsize=4096)
def _term_pattern(term: str) -> re.Pattern[str]:
    # Whole words; a hyphen or space between parts may be either ("anti-aging", "anti aging"); each word may
    # be inflected; an apostrophe may be straight or curly ("crow's feet").
    parts = [_inflected(p).replace("'", "['’]") for p in _words(term)]
    return re.compile(r"(?<![\w-])" + r"[\s-]?".join(parts) + r"(?![\w-])", re.IGNORECASE)


def _fold(value: str) -> str:
    return re.sub(r"[\s_-]+", " ", value.strip().lower())


Span = tuple[int, int]


@functools.lru_cache(maxsize=4096)
def _anchor(term: str) -> str | None:
    """Letters that every match of `term`'s pattern contains, case-folded: its first word up to an apostrophe,
    less a last letter that an inflection may change ("acne" -> "acn", "oily" -> "oil"); None when that is not
    plain ASCII (the pattern's case-insensitive matching of other letters is not one `casefold`)."""
    first = next(iter(_words(term)), "").split("'")[0]
    if len(first) > 3 and first.isalpha():
        first = first[:-1]
    return first if first and first.isascii() and first.isalnum() else None


def _folded(text: str) -> str:
    # A dotless i matches "i" case-insensitively, but folds to itself.
    return text.casefold().replace("\u0131", "i")


def _matches(terms: tuple[str, ...], text: str) -> dict[str, set[Span]]:
    """Where each term (lower-cased) matches in `text`. A term whose anchor the text lacks cannot match, and its
    pattern is not run: most terms of a vocabulary are absent from any one section."""
    folded = _folded(text)
    found: dict[str, set[Span]] = {}
    for term in dict.fromkeys(t.lower() for t in terms):
        anchor = _anchor(term)
        present = anchor is None or anchor in folded
        found[term] = {m.span() for m in _term_pattern(term).finditer(text)} if present else set()
    return found


def _distinct_terms(matches: dict[str, set[Span]], foreign: set[Span]) -> tuple[str, ...]:
    """The terms that mention something of their own: longer terms first; a term that matches only words a
    longer term of the same concern matched exactly ("scar" and "scars" both match "scars"), or words inside
    another concern's longer term ("spots" in "dark spots"), is not counted. A term inside a longer one of
    its own concern counts ("acne" in "acne scars" names the concern as well as its scarring)."""
    taken: set[Span] = set()
    found: list[str] = []
    for term in sorted(matches, key=lambda t: (-len(t), t)):
        own = {
            (start, end)
            for start, end in matches[term] - taken
            if not any(a <= start and end <= b and b - a > end - start for a, b in foreign)
        }
        if own:
            found.append(term)
        taken |= matches[term]
    return tuple(found)


@dataclass(frozen=True)
class Evidence:
    """What points a section at one concern: the terms found in its title and body, and their weight."""

    concern: str
    weight: float
    in_title: tuple[str, ...]
    in_body: tuple[str, ...]

    def describe(self) -> str:
        parts = []
        if self.in_title:
            parts.append(f"title: {', '.join(repr(t) for t in self.in_title)} (+{TITLE_WEIGHT:g})")
        if self.in_body:
            parts.append(f"body: {', '.join(repr(t) for t in self.in_body)} (+{BODY_WEIGHT * len(self.in_body):g})")
        return f"{self.concern} {self.weight:g} ({'; '.join(parts)})"


@dataclass(frozen=True)
class Tagging:
    tags: tuple[str, ...]
    reasons: tuple[str, ...] = ()
    review: str = ""


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
        return self.explain(title, body).tags

    def evidence(self, title: str, body: str) -> list[Evidence]:
        """What points the section at each concern that has any evidence (see the module contract)."""
        title_matches = {c.name: _matches((c.name, *c.synonyms, *c.keywords), title) for c in self.concerns}
        body_matches = {c.name: _matches((c.name, *c.synonyms), body) for c in self.concerns}

        def foreign(matches: dict[str, dict[str, set[Span]]], name: str) -> set[Span]:
            return {
                span for other, found in matches.items() if other != name for spans in found.values() for span in spans
            }

        evidence: list[Evidence] = []
        for concern in self.concerns:
            in_title = _distinct_terms(title_matches[concern.name], foreign(title_matches, concern.name))
            in_body = _distinct_terms(body_matches[concern.name], foreign(body_matches, concern.name))
            weight = (TITLE_WEIGHT if in_title else 0.0) + BODY_WEIGHT * len(in_body)
            if weight:
                evidence.append(Evidence(concern.name, weight, in_title, in_body))
        return evidence

    def explain(self, title: str, body: str) -> Tagging:
        """The tags of a section with their reasons and any review note, by the vocabulary alone (see the
        module contract; `content.tagger` combines this evidence with the model's reading)."""
        evidence = self.evidence(title, body)
        order = {c.name: i for i, c in enumerate(self.concerns)}
        ranked = sorted(evidence, key=lambda e: (-e.weight, not e.in_title, order[e.concern]))
        tagged = [e for e in ranked if e.weight >= TAG_AT]
        reasons = tuple(e.describe() for e in ranked)
        review = ""
        if not tagged and ranked:
            best = ranked[0]
            review = (
                f"weak evidence: only {best.describe()}; left general (tag it by hand if it is about {best.concern})"
            )
        titled = [e for e in tagged if e.in_title]
        if len(titled) > 1 and titled[0].weight == titled[1].weight:
            review = (
                f"split: the title names {' and '.join(e.concern for e in titled)} equally; {titled[0].concern} "
                "was taken as the primary concern (set the order in content/tags.yaml)"
            )
        return Tagging(tuple(e.concern for e in tagged) or (GENERAL,), reasons, review)


def load_vocabulary(path: Path) -> Vocabulary:
    """Read a vocabulary YAML file (see content/vocabulary.yaml for the shape). Read on every call, and parsed
    once per text (`_vocabulary_of`): every page and request loads it, and a `Vocabulary` is frozen."""
    return _vocabulary_of(path, read_text(path, "the concern vocabulary; set [content] vocabulary in needlecast.toml"))


@functools.lru_cache(maxsize=64)
def _vocabulary_of(path: Path, text: str) -> Vocabulary:
    """The vocabulary `text` (read from `path`) defines; a `ConfigurationError` is not kept."""
    raw = parse_yaml_of(path, text)
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
                examples=tuple(str(e) for e in spec.get("examples") or ()),
            )
        )
    return Vocabulary(tuple(concerns))
