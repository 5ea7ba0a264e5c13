"""Parse a source article into sections.

Three formats, chosen by suffix and content:
- Plain text (the clinic's article): a line of its own ending in "?" or ":" is a heading; a paragraph of
  the form "Title: body" is a benefit; the first headed section is the introduction; paragraphs after the
  last benefit that sit under no heading form the closing. Text before the first heading is the summary.
- Markdown: `#` is the article title; `##`/`###` headings start sections. A heading with no text of its own
  followed by deeper headings groups them (children of a group named "Benefits..." are benefits); a last
  heading named like "Conclusion"/"Summary"/"In short" is the closing. Paragraphs of the form "Title: body"
  under a benefits heading (or two or more of them under any heading) are benefits of their own.
- HTML (`.html`, `.htm`): read with Python's HTML parser into the Markdown shape (`content.html_text`):
  headings and paragraphs, with scripts, styles and navigation dropped.
A `.txt` or `.md` file may open with YAML front matter between `---` lines (`title`, `treatment`).

Contract: `parse_article(path, vocabulary, overrides, meta)` returns an `Article` with at least one section,
each with a unique slug, its 1-based source line, its concern tags with their reasons (the vocabulary's
explained guess, replaced by the per-slug override when one is given) and its article's id and treatment.
`meta` (from `content/articles.yaml`) gives the title and treatment, then the front matter, then the text.
An article with no recognisable section, or an override naming a section it does not have, raises
`ContentError` naming the file and what was expected.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from needlecast.content.classifier import shipped_model
from needlecast.content.html_text import html_lines
from needlecast.content.layouts import (
    LAYOUTS_TRIED,
    benefit_paragraph,
    is_benefit_group,
    is_detail,
    is_faq,
    normalise,
)
from needlecast.content.model import (
    GENERAL,
    KIND_BENEFIT,
    KIND_CLOSING,
    KIND_DETAIL,
    KIND_INTRO,
    KIND_SECTION,
    SET_BY_HAND,
    Article,
    Section,
)
from needlecast.content.tagger import Tagger
from needlecast.content.vocabulary import Tagging, Vocabulary
from needlecast.errors import ContentError
from needlecast.yamlfile import parse_yaml

_MD_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
_FRONT_MATTER_KEYS = ("title", "treatment")
HTML_SUFFIXES = (".html", ".htm")
MARKDOWN_SUFFIXES = (".md", ".markdown")
ARTICLE_SUFFIXES = (".txt", *MARKDOWN_SUFFIXES, *HTML_SUFFIXES)
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
    return _numbered_paragraphs(normalise(list(enumerate(text.splitlines(), start=1))))


def _is_plain_heading(paragraph: _Paragraph) -> bool:
    text = paragraph.text
    return "\n" not in text and len(text) <= 100 and text.endswith(("?", ":")) and benefit_paragraph(text) is None


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
        benefit = benefit_paragraph(paragraph.text)
        if _is_plain_heading(paragraph):
            flush_heading()
            heading = paragraph
        elif benefit:
            flush_heading()
            seen_benefit = True
            closing = []
            sections.append((*benefit, KIND_BENEFIT, paragraph.line))
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


def _benefit_paragraphs(body: str) -> list[tuple[str, str]]:
    """The "Title: body" (or "Title — body") paragraphs of a block's text, as (title, body)."""
    return [found for paragraph in body.split("\n\n") if (found := benefit_paragraph(paragraph))]


def _parse_markdown(numbered: Sequence[tuple[int, str]]) -> tuple[str, str, list[tuple[str, str, str, int]]]:
    """(title, summary, [(title, body, kind, line)]) for Markdown lines numbered by their source line."""
    title = ""
    blocks: list[tuple[int, str, int, list[tuple[int, str]]]] = []  # (level, title, line, body lines)
    summary: list[str] = []
    for number, line in numbered:
        heading = _MD_HEADING.match(line)
        if heading and len(heading.group("hashes")) == 1 and not title:
            title = heading.group("title").strip()
        elif heading:
            blocks.append((len(heading.group("hashes")), heading.group("title").strip(), number, []))
        elif blocks:
            blocks[-1][3].append((number, line))
        else:
            summary.append(line)

    sections: list[tuple[str, str, str, int]] = []
    group_title = ""
    group_level = 0
    for index, (level, heading_title, line_number, body_lines) in enumerate(blocks):
        paragraphs = _numbered_paragraphs(body_lines)
        body = "\n\n".join(" ".join(p.text.split()) for p in paragraphs)
        next_deeper = index + 1 < len(blocks) and blocks[index + 1][0] > level
        if not body and next_deeper:
            group_title, group_level = heading_title, level
            continue
        if level <= group_level:
            group_title, group_level = "", 0
        if not body:
            continue
        in_benefits = is_benefit_group(group_title or heading_title)
        benefits = [(p, _benefit_paragraphs(p.text)) for p in paragraphs]
        if sum(1 for _, found in benefits if found) >= (1 if in_benefits else 2):
            own = [" ".join(p.text.split()) for p, found in benefits if not found]
            if own and not group_title:
                sections.append(
                    (heading_title, "\n\n".join(own), KIND_INTRO if not sections else KIND_SECTION, line_number)
                )
            for paragraph, found in benefits:
                for benefit_title, benefit_body in found:
                    sections.append((benefit_title, benefit_body, KIND_BENEFIT, paragraph.line))
            continue
        if group_title and is_benefit_group(group_title):
            kind = KIND_BENEFIT
        elif group_title and is_detail(group_title) and not is_faq(group_title):
            kind = KIND_DETAIL
        elif not sections:
            kind = KIND_INTRO
        elif index == len(blocks) - 1 and _CLOSING_TITLE.search(heading_title):
            kind = KIND_CLOSING
        else:
            kind = KIND_SECTION
        sections.append((heading_title, body, kind, line_number))
    summary_text = "\n\n".join(" ".join(p.text.split()) for p in _paragraphs("\n".join(summary)))
    return title, summary_text, sections


def _numbered_paragraphs(lines: Sequence[tuple[int, str]]) -> list[_Paragraph]:
    """Paragraphs (runs of non-blank lines) with the source line each starts on."""
    paragraphs: list[_Paragraph] = []
    current: list[str] = []
    start = 0
    for number, line in [*lines, (0, "")]:
        if line.strip():
            if not current:
                start = number
            current.append(line.rstrip())
        elif current:
            paragraphs.append(_Paragraph("\n".join(current).strip(), start))
            current = []
    return paragraphs


def _front_matter(lines: list[str], path: Path) -> dict[str, str]:
    """The YAML front matter of `lines` (blanked in place, so line numbers stay those of the file)."""
    if not lines or lines[0].strip() != "---":
        return {}
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise ContentError(f"{path}: the front matter opened on line 1 is never closed; end it with a '---' line")
    try:
        raw = parse_yaml("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as err:
        raise ContentError(f"{path}: the front matter is not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ContentError(f"{path}: the front matter must be a mapping such as 'treatment: Chemical peels'")
    unknown = sorted(str(k) for k in raw if k not in _FRONT_MATTER_KEYS)
    if unknown:
        raise ContentError(
            f"{path}: front matter field(s) {', '.join(unknown)} unknown; use: {', '.join(_FRONT_MATTER_KEYS)}"
        )
    for index in range(end + 1):
        lines[index] = ""
    return {str(k): str(v).strip() for k, v in raw.items() if v is not None}


def _is_markdown(path: Path, lines: Sequence[str]) -> bool:
    return path.suffix.lower() in {".md", ".markdown"} or any(_MD_HEADING.match(line) for line in lines)


def parse_article(
    path: Path,
    vocabulary: Vocabulary,
    overrides: Mapping[str, Sequence[str]] | None = None,
    meta: Mapping[str, str] | None = None,
) -> Article:
    """Parse `path` into an `Article` (see the module contract).

    The file is read on every call; what it parses into is kept (`_parsed`) for the same path, text,
    vocabulary, overrides and meta, because tagging is most of the cost of loading a workspace's campaigns
    (every console page and API request loads them). An `Article` is frozen, so sharing one is safe."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise ContentError(f"{path}: article not found") from err
    except IsADirectoryError as err:
        raise ContentError(f"{path}: is a folder, not an article") from err
    except UnicodeDecodeError as err:
        raise ContentError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    override_key = tuple(sorted((str(slug), tuple(values)) for slug, values in (overrides or {}).items()))
    meta_key = tuple(sorted((meta or {}).items()))
    return _parsed(path, text, vocabulary, override_key, meta_key)


@functools.lru_cache(maxsize=256)
def _parsed(
    path: Path,
    text: str,
    vocabulary: Vocabulary,
    override_key: tuple[tuple[str, tuple[str, ...]], ...],
    meta_key: tuple[tuple[str, str], ...],
) -> Article:
    """The article `text` (read from `path`) parses into; kept by every argument (a `ContentError` is not)."""
    overrides = {slug: values for slug, values in override_key}
    meta = dict(meta_key)
    lines = text.splitlines()
    front: dict[str, str] = {}
    if path.suffix.lower() in HTML_SUFFIXES:
        page_title, numbered = html_lines(text)
        title, _summary, raw_sections = _parse_markdown(normalise(numbered))
        title = title or page_title
        expected = "<h2> headings with <p> text under them, or 'Title: body' paragraphs under a Benefits heading"
    elif _is_markdown(path, lines):
        front = _front_matter(lines, path)
        title, _summary, raw_sections = _parse_markdown(normalise(list(enumerate(lines, start=1))))
        expected = "'## Heading' sections with text under them"
    else:
        front = _front_matter(lines, path)
        _summary, raw_sections = _parse_plain(_paragraphs("\n".join(lines)))
        title = ""
        expected = (
            "a heading line ending in '?' or ':' followed by text, or benefit paragraphs of the form 'Title: body'"
        )
    raw_sections = [
        # A heading about the treatment is a detail; what the clinic listed as a benefit stays one.
        (t, b, KIND_DETAIL if kind == KIND_SECTION and is_detail(t) else kind, n)
        for t, b, kind, n in raw_sections
    ]
    if not any(kind in (KIND_BENEFIT, KIND_SECTION) for _, _, kind, _ in raw_sections):
        found = "no sections" if not raw_sections else "no benefit sections (only an introduction, closing or details)"
        raise ContentError(f"{path}: {found} found. Expected {expected}. Layouts tried: {'; '.join(LAYOUTS_TRIED)}.")
    meta = {**front, **{k: v for k, v in meta.items() if v}}
    article_id = path.stem

    sections = _tagged_sections(raw_sections, vocabulary, overrides, article_id)
    _check_overrides(path, overrides, {*vocabulary.names, GENERAL}, {s.slug for s in sections})
    title = meta.get("title") or title or _title_from(path, sections)
    treatment = meta.get("treatment") or _treatment_from(sections, title, path)
    sections = [replace(s, treatment=treatment) for s in sections]
    return Article(path=path, title=title, sections=tuple(sections), id=article_id, treatment=treatment)


def _tagged_sections(
    raw_sections: Sequence[tuple[str, str, str, int]],
    vocabulary: Vocabulary,
    overrides: Mapping[str, Sequence[str]],
    article_id: str,
) -> list[Section]:
    """The sections with unique slugs (a repeated title gets `-2`, `-3`...) and their concern tags: the
    override for the slug when there is one, the tagger's explained guess for a benefit or section, general
    for an introduction, closing or detail (by its place in the article)."""
    sections: list[Section] = []
    slugs: set[str] = set()
    for section_title, body, kind, line in raw_sections:
        slug = slugify(section_title)
        base, suffix = slug, 2
        while slug in slugs:
            slug, suffix = f"{base}-{suffix}", suffix + 1
        slugs.add(slug)
        tags: tuple[str, ...]
        reasons: tuple[str, ...]
        if slug in overrides:
            tags, reasons, review = tuple(overrides[slug]), (SET_BY_HAND,), ""
        elif kind in (KIND_BENEFIT, KIND_SECTION):
            explained = _explained(vocabulary, section_title, body)
            tags, reasons, review = explained.tags, explained.reasons, explained.review
        else:
            tags, reasons, review = (GENERAL,), (f"{kind}: general by its place in the article",), ""
        sections.append(Section(section_title, slug, body, kind, line, tags, reasons, review, article_id))
    return sections


@functools.lru_cache(maxsize=4096)
def _explained(vocabulary: Vocabulary, title: str, body: str) -> Tagging:
    """The shipped tagger's reading of one section, kept by section: an edited article is tagged again only
    where its sections changed, and the same sections in another workspace (a copy of the clinic's content)
    are not tagged twice. `Tagging` is frozen, so sharing one is safe."""
    return Tagger(vocabulary, shipped_model()).explain(title, body)


def _check_overrides(path: Path, overrides: Mapping[str, Sequence[str]], known: set[str], slugs: set[str]) -> None:
    """Every override (content/tags.yaml) names known concerns and a section the article has."""
    for slug, override in overrides.items():
        unknown = [t for t in override if t not in known]
        if unknown:
            raise ContentError(
                f"{path}: the tag override for '{slug}' (content/tags.yaml) names unknown concern(s) "
                f"{', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if slug not in slugs:
            raise ContentError(
                f"{path}: the tag override for section '{slug}' (content/tags.yaml) names a section the article "
                f"does not have; its sections are: {', '.join(sorted(slugs))}"
            )


def _title_from(path: Path, sections: Sequence[Section]) -> str:
    named = _named_in_what_is(sections)
    return named or path.stem.replace("-", " ").replace("_", " ").title()


def _named_in_what_is(sections: Sequence[Section]) -> str:
    """The treatment a "What is X?" / "What are X?" heading names ("" when none does), capitalised."""
    for section in sections:
        match = re.match(r"(?i)^what (?:is|are) (?:an? |the )?(.{2,40}?)\??$", section.title.strip())
        if match:
            name = match.group(1).strip()
            return name[:1].upper() + name[1:]
    return ""


def _treatment_from(sections: Sequence[Section], title: str, path: Path) -> str:
    """The treatment's name: "What is X?" names it; else a short title; else the file name."""
    named = _named_in_what_is(sections)
    if named:
        return named
    if title and len(title) <= 40:
        return title
    return path.stem.replace("-", " ").replace("_", " ").capitalize()
