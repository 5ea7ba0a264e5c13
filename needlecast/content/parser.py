"""Parse a source article into sections.

Two formats, chosen by content:
- Plain text (the clinic's article): a line of its own ending in "?" or ":" is a heading; a paragraph of
  the form "Title: body" is a benefit; the first headed section is the introduction; paragraphs after the
  last benefit that sit under no heading form the closing. Text before the first heading is the summary.
- Markdown: `#` is the article title; `##`/`###` headings start sections. A heading with no text of its own
  followed by deeper headings groups them (children of a group named "Benefits..." are benefits); a last
  heading named like "Conclusion"/"Summary"/"In short" is the closing.

Contract: `parse_article(path, vocabulary, overrides)` returns an `Article` with at least one section, each
with a unique slug, its 1-based source line and its concern tags (the vocabulary's guess, replaced by the
per-slug override when one is given). An article with no recognisable section raises `ContentError` naming
the file and what was expected.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from needlecast.content.model import (
    GENERAL,
    KIND_BENEFIT,
    KIND_CLOSING,
    KIND_INTRO,
    KIND_SECTION,
    Article,
    Section,
)
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import ConfigurationError, ContentError
from needlecast.yamlfile import read_yaml

_BENEFIT = re.compile(r"^(?P<title>[A-Z][^:\n]{2,80}):\s+(?P<body>\S.*)$", re.DOTALL)
_MD_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
_CLOSING_TITLE = re.compile(r"\b(conclusion|summary|in short|closing|final thoughts|the bottom line)\b", re.I)


@dataclass(frozen=True)
class _Paragraph:
    text: str
    line: int


def slugify(title: str) -> str:
    """ASCII, lowercase, hyphen-separated: 'Reduces Hyperpigmentation' -> 'reduces-hyperpigmentation'."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-") or "section"


def _paragraphs(text: str) -> list[_Paragraph]:
    paragraphs: list[_Paragraph] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line.rstrip())
        elif current:
            paragraphs.append(_Paragraph("\n".join(current).strip(), start))
            current = []
    if current:
        paragraphs.append(_Paragraph("\n".join(current).strip(), start))
    return paragraphs


def _is_plain_heading(paragraph: _Paragraph) -> bool:
    text = paragraph.text
    return "\n" not in text and len(text) <= 100 and text.endswith(("?", ":")) and not _BENEFIT.match(text)


def _split_leading_headings(paragraphs: Sequence[_Paragraph]) -> list[_Paragraph]:
    """A heading line directly followed by its text (no blank line) becomes a heading and a paragraph."""
    split: list[_Paragraph] = []
    for paragraph in paragraphs:
        first, _, rest = paragraph.text.partition("\n")
        if rest and _is_plain_heading(_Paragraph(first, paragraph.line)):
            split.append(_Paragraph(first, paragraph.line))
            split.append(_Paragraph(rest.strip(), paragraph.line + 1))
        else:
            split.append(paragraph)
    return split


def _parse_plain(paragraphs: Sequence[_Paragraph]) -> tuple[str, list[tuple[str, str, str, int]]]:
    """(summary, [(title, body, kind, line)]) for a plain-text article."""
    summary: list[str] = []
    sections: list[tuple[str, str, str, int]] = []
    heading: _Paragraph | None = None
    heading_body: list[str] = []
    closing: list[_Paragraph] = []
    seen_benefit = False

    def flush_heading() -> None:
        nonlocal heading, heading_body
        if heading is not None and heading_body:
            kind = KIND_INTRO if not any(s[2] == KIND_INTRO for s in sections) else KIND_SECTION
            sections.append(
                (
                    heading.text.rstrip(":?").strip() + ("?" if heading.text.endswith("?") else ""),
                    "\n\n".join(heading_body),
                    kind,
                    heading.line,
                )
            )
        heading, heading_body = None, []

    for paragraph in _split_leading_headings(paragraphs):
        benefit = _BENEFIT.match(paragraph.text)
        if _is_plain_heading(paragraph):
            flush_heading()
            heading = paragraph
        elif benefit:
            flush_heading()
            seen_benefit = True
            closing = []
            body = " ".join(benefit.group("body").split())
            sections.append((benefit.group("title").strip(), body, KIND_BENEFIT, paragraph.line))
        elif heading is not None:
            heading_body.append(" ".join(paragraph.text.split()))
        elif seen_benefit:
            closing.append(paragraph)
        elif not sections:
            summary.append(" ".join(paragraph.text.split()))
    flush_heading()
    if closing:
        body = "\n\n".join(" ".join(p.text.split()) for p in closing)
        sections.append(("In short", body, KIND_CLOSING, closing[0].line))
    return "\n\n".join(summary), sections


def _parse_markdown(lines: Sequence[str]) -> tuple[str, str, list[tuple[str, str, str, int]]]:
    """(title, summary, [(title, body, kind, line)]) for a Markdown article."""
    title = ""
    blocks: list[tuple[int, str, int, list[str]]] = []  # (level, title, line, body lines)
    summary: list[str] = []
    for number, line in enumerate(lines, start=1):
        heading = _MD_HEADING.match(line)
        if heading and len(heading.group("hashes")) == 1 and not title:
            title = heading.group("title").strip()
        elif heading:
            blocks.append((len(heading.group("hashes")), heading.group("title").strip(), number, []))
        elif blocks:
            blocks[-1][3].append(line)
        else:
            summary.append(line)

    sections: list[tuple[str, str, str, int]] = []
    group_title = ""
    group_level = 0
    for index, (level, heading_title, line_number, body_lines) in enumerate(blocks):
        body = "\n\n".join(" ".join(p.text.split()) for p in _paragraphs("\n".join(body_lines)))
        next_deeper = index + 1 < len(blocks) and blocks[index + 1][0] > level
        if not body and next_deeper:
            group_title, group_level = heading_title, level
            continue
        if level <= group_level:
            group_title, group_level = "", 0
        if not body:
            continue
        if group_title and re.search(r"\bbenefits?\b", group_title, re.I):
            kind = KIND_BENEFIT
        elif not sections:
            kind = KIND_INTRO
        elif index == len(blocks) - 1 and _CLOSING_TITLE.search(heading_title):
            kind = KIND_CLOSING
        else:
            kind = KIND_SECTION
        sections.append((heading_title, body, kind, line_number))
    summary_text = "\n\n".join(" ".join(p.text.split()) for p in _paragraphs("\n".join(summary)))
    return title, summary_text, sections


def _is_markdown(path: Path, lines: Sequence[str]) -> bool:
    return path.suffix.lower() in {".md", ".markdown"} or any(_MD_HEADING.match(line) for line in lines)


def load_overrides(path: Path | None) -> dict[str, tuple[str, ...]]:
    """Per-slug tag overrides from a YAML mapping of slug -> list of concerns (a missing file: none)."""
    if path is None or not path.is_file():
        return {}
    raw = read_yaml(path, "tag overrides") or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: expected a mapping of section slug -> list of concerns")
    overrides: dict[str, tuple[str, ...]] = {}
    for slug, tags in raw.items():
        values = [tags] if isinstance(tags, str) else tags
        if not isinstance(values, list) or not values:
            raise ConfigurationError(f"{path}: '{slug}' must list one or more concerns (or 'general')")
        overrides[str(slug)] = tuple(str(v) for v in values)
    return overrides


def parse_article(
    path: Path,
    vocabulary: Vocabulary,
    overrides: Mapping[str, Sequence[str]] | None = None,
) -> Article:
    """Parse `path` into an `Article` (see the module contract)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise ContentError(f"{path}: article not found") from err
    except UnicodeDecodeError as err:
        raise ContentError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    lines = text.splitlines()
    if _is_markdown(path, lines):
        title, _summary, raw_sections = _parse_markdown(lines)
        expected = "'## Heading' sections with text under them"
    else:
        _summary, raw_sections = _parse_plain(_paragraphs(text))
        title = ""
        expected = (
            "a heading line ending in '?' or ':' followed by text, or benefit paragraphs of the form 'Title: body'"
        )
    if not raw_sections:
        raise ContentError(f"{path}: no sections found. Expected {expected}.")

    known = {*vocabulary.names, GENERAL}
    overrides = dict(overrides or {})
    sections: list[Section] = []
    slugs: set[str] = set()
    for section_title, body, kind, line in raw_sections:
        slug = slugify(section_title)
        base, suffix = slug, 2
        while slug in slugs:
            slug, suffix = f"{base}-{suffix}", suffix + 1
        slugs.add(slug)
        tags = vocabulary.tag(section_title, body) if kind in (KIND_BENEFIT, KIND_SECTION) else (GENERAL,)
        sections.append(Section(section_title, slug, body, kind, line, tags))

    for slug, override in overrides.items():
        unknown = [t for t in override if t not in known]
        if unknown:
            raise ConfigurationError(
                f"tag override for '{slug}' names unknown concern(s) {unknown}; known: {sorted(known)}"
            )
        if slug not in slugs:
            raise ConfigurationError(
                f"tag override names section '{slug}', which {path} does not have; "
                f"its sections are: {', '.join(sorted(slugs))}"
            )
    sections = [replace(s, concerns=tuple(overrides[s.slug])) if s.slug in overrides else s for s in sections]
    return Article(path=path, title=title or _title_from(path, sections), sections=tuple(sections))


def _title_from(path: Path, sections: Sequence[Section]) -> str:
    intro = next((s for s in sections if s.kind == KIND_INTRO), None)
    if intro and intro.title.lower().startswith("what is "):
        return intro.title[len("what is ") :].rstrip("?").strip()
    return path.stem.replace("-", " ").replace("_", " ").title()
