"""The layouts clinics write benefits in, brought to one shape before an article is split into sections.

Clinic pages list benefits in many ways. Before parsing, `normalise(lines)` rewrites each inline layout as a
`Title: body` paragraph of its own, so that the parser has one rule for all of them:
- bulleted or numbered list items that open with a bold or linked lead-in (`- **Title** — body`,
  `1. **Title.** body`, `* [Title](/page): body`), and plain items of the form `- Title: body` / `- Title — body`;
- paragraphs that open with a bold lead-in (`**Title** — body`, `**Title:** body`);
- definition lists (a term on its own line, then lines starting with `: `).
Line numbers stay those of the source: a rewritten item keeps its first line's number.

`benefit_paragraph(text)` reads a `Title: body` or `Title — body` paragraph. `is_detail(title)` tells a section
about the treatment (who it suits, downtime, aftercare, prices, sessions, booking, opening hours, offers,
testimonials) from a benefit; `is_benefit_group(title)` tells a heading that gathers benefits ("Benefits",
"Why choose microneedling?", "What can it treat?", "Results").

Contract: `normalise` never drops a non-blank line's text (a lead-in's markers and a bullet are the only
characters removed) and never raises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Numbered = list[tuple[int, str]]

LAYOUTS_TRIED = (
    "headings with text under them",
    "bulleted or numbered lists whose items open with a bold or linked lead-in",
    "'Title: body' and 'Title — body' paragraphs",
    "definition lists",
    "HTML cards (a heading and paragraphs in a div or list item)",
    "FAQ-style question headings",
)

_BULLET = r"(?:[-*+•▪●]|\d{1,2}[.)])"
_LEAD = r"(?:\*\*(?P<bold>[^*\n]{2,90}?)\*\*|__(?P<under>[^_\n]{2,90}?)__|\[(?P<link>[^\]\n]{2,90})\]\([^)\n]*\))"
_SEPARATOR = r"\s*(?:[:.—–]|-(?=\s))?\s*"
_LEAD_ITEM = re.compile(rf"^\s*{_BULLET}\s+{_LEAD}{_SEPARATOR}(?P<body>.*)$")
_LEAD_PARAGRAPH = re.compile(rf"^\s*{_LEAD}{_SEPARATOR}(?P<body>\S.*)$")
_PLAIN_ITEM = re.compile(rf"^\s*{_BULLET}\s+(?P<rest>[A-Z0-9].*)$")
_DEFINITION = re.compile(r"^\s*:\s+(?P<body>\S.*)$")
_CONTINUATION = re.compile(r"^\s{2,}\S")

_BENEFIT_COLON = re.compile(r"^(?P<title>[A-Z0-9][^:\n]{1,80}):\s+(?P<body>\S.*)$", re.DOTALL)
_BENEFIT_DASH = re.compile(r"^(?P<title>[A-Z0-9][^\n—–]{1,80}?)\s+(?:[—–]|-{1,2})\s+(?P<body>\S.*)$", re.DOTALL)

_DETAIL = re.compile(
    r"(?i)\b(who (?:is it|it(?:'s| is)|can|should)|suit(?:s|able|ability)? for|is it (?:right|suitable|safe) for|"
    r"candidates?|downtime|recovery|aftercare|after ?care|preparing for|prepare for|what to expect|"
    r"side effects?|risks?|contraindications?|does it hurt|is it painful|pain|price|pricing|prices|cost|how much|"
    r"fees?|how long|how many|sessions? (?:do|will)|appointment|book(?:ing)?|consultation|opening hours|"
    r"contact us|find us|our team|testimonials?|reviews?|what our (?:clients|patients) say|special offers?|"
    r"current offers?|^offers?$|discount|gift vouchers?|finance|faqs?|frequently asked)\b"
)
_FAQ = re.compile(r"(?i)\b(faqs?|frequently asked|questions)\b")
_BENEFIT_GROUP = re.compile(
    r"(?i)\b(benefits?|advantages|why (?:choose|try|consider|have)|what (?:can|does|will) .{0,40}?"
    r"(?:do|treat|help|improve|target)|how .{0,40}? helps?|what (?:it|they) (?:treats?|helps?)|"
    r"results you can expect|what .{0,40}? can help with|treats|concerns (?:it|we) treat)\b"
)


def is_detail(title: str) -> bool:
    """Whether a section with this title is about the treatment rather than a benefit ("Who is it for?",
    "Downtime", "Prices", "How long does it last?", "Does it hurt?")."""
    return bool(_DETAIL.search(title))


def is_faq(title: str) -> bool:
    """Whether a heading gathers questions and answers (each then judged by its own question)."""
    return bool(_FAQ.search(title))


def is_benefit_group(title: str) -> bool:
    return bool(_BENEFIT_GROUP.search(title)) and not _DETAIL.search(title)


def benefit_paragraph(text: str) -> tuple[str, str] | None:
    """(title, body) of a `Title: body` or `Title — body` paragraph; None for any other paragraph."""
    for pattern, max_words in ((_BENEFIT_COLON, 14), (_BENEFIT_DASH, 10)):
        match = pattern.match(text)
        if not match:
            continue
        title = match.group("title").strip()
        if title.endswith((".", "?", "!", ",")) or len(title.split()) > max_words or "\n" in title:
            continue
        return title, " ".join(match.group("body").split())
    return None


def _lead(match: re.Match[str]) -> str:
    return " ".join((match.group("bold") or match.group("under") or match.group("link") or "").split()).rstrip(":.—–")


def _next_text(lines: Sequence[tuple[int, str]], index: int) -> str:
    """The next non-blank line after `index`, looking past at most one blank line ("" at the end)."""
    for _, line in lines[index + 1 : index + 3]:
        if line.strip():
            return line
    return ""


def normalise(lines: Sequence[tuple[int, str]]) -> Numbered:
    """The lines with every inline layout rewritten as a `Title: body` paragraph (see the module contract)."""
    out: Numbered = []
    item: list[tuple[int, str, list[str]]] = []  # the item being read: (line, title, body parts)

    def close_item() -> None:
        if item:
            number, title, parts = item.pop()
            body = " ".join(" ".join(parts).split())
            out.extend([(number, ""), (number, f"{title}: {body}" if body else title), (number, "")])

    for index, (number, line) in enumerate(lines):
        stripped = line.strip()
        lead = _LEAD_ITEM.match(line) or _LEAD_PARAGRAPH.match(line)
        if lead:
            close_item()
            item.append((number, _lead(lead), [lead.group("body")]))
            continue
        following = _next_text(lines, index)
        if item:
            definition = _DEFINITION.match(line)
            if definition:
                item[-1][2].append(definition.group("body"))
                continue
            if not stripped and _DEFINITION.match(following):
                continue  # one blank line may stand between a term and its definition
            if stripped and not _PLAIN_ITEM.match(line) and not stripped.startswith("#"):
                item[-1][2].append(stripped)  # the item's text goes on over the next line
                continue
            close_item()
        if stripped and not stripped.startswith("#") and len(stripped) <= 90 and _DEFINITION.match(following):
            item.append((number, stripped.rstrip(":"), []))  # a definition list's term
            continue
        plain = _PLAIN_ITEM.match(line)
        if plain and benefit_paragraph(plain.group("rest")):
            out.extend([(number, ""), (number, plain.group("rest")), (number, "")])
        else:
            out.append((number, line))
    close_item()
    return out
