"""Read an HTML article into numbered Markdown-like lines, so that one parser serves Markdown and HTML.

Contract: `html_lines(text)` returns `(title, [(line, text)])`: `<h1>`..`<h6>` become `#`..`######` headings,
every other block (paragraph, list item, quote, cell, a div's own text) one paragraph, each numbered with the
source line where it starts, with an empty entry between blocks. A list item starts with `- `; a bold or
linked lead-in at the start of a block keeps its Markdown markers (`**Title**`, `[Title](#)`), and a
definition list becomes Markdown's (`Term`, then `: definition`), so the layouts of `content.layouts` read the
same in HTML as in Markdown. Other inline markup keeps only its text; character references are decoded.

What is not the article is dropped with everything inside it: scripts, styles, navigation, headers, footers,
asides, forms and other page furniture, and any element whose class or id says it is a cookie banner, an
offer, a price list, opening hours, testimonials, a newsletter or booking box. When the page has a `<main>`
or an `<article>`, only what is inside them is read. `title` is the document's `<title>` (empty when it has
none). Python's own HTML parser reads the markup: it accepts broken HTML as browsers do and never raises on it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Everything inside these is page furniture or code, never article text.
SKIPPED = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "nav",
        "header",
        "footer",
        "aside",
        "form",
        "button",
        "select",
        "textarea",
        "svg",
        "iframe",
        "object",
        "canvas",
        "head",
    }
)
# Elements that cannot hold content: they never open a skipped region that needs closing.
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})
BLOCKS = frozenset(
    {
        "p",
        "div",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "blockquote",
        "section",
        "article",
        "main",
        "table",
        "tr",
        "td",
        "th",
        "pre",
        "figure",
        "figcaption",
        "body",
        "html",
    }
)
HEADINGS = {f"h{n}": n for n in range(1, 7)}
# Page furniture named by its class or id (a cookie banner is a div like any other).
_FURNITURE = re.compile(
    r"(?i)(cookie|consent|gdpr|banner|promo|offer|pricing|price|opening|hours|testimonial|review|newsletter|"
    r"subscribe|booking|book-?now|cta|call-to-action|modal|popup|social|share|breadcrumb|sidebar|menu)"
)
_CONTENT_ROOTS = frozenset({"main", "article"})
_MAIN = re.compile(r"<(main|article)[\s>]", re.IGNORECASE)


class _Reader(HTMLParser):
    def __init__(self, only_main: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[int, str]] = []
        self.title = ""
        self._skip: list[str] = []  # open skipped elements, innermost last
        self._in_title = False
        self._heading = 0
        self._words: list[str] = []
        self._start = 0
        self._prefix = ""  # "- " for a list item, ": " for a definition
        self._lead = ""  # the marker of a bold or linked lead-in being read ("**" or "[")
        self._roots = 0 if only_main else 1  # how many <main>/<article> we are inside (1: read everything)

    def _flush(self) -> None:
        text = " ".join("".join(self._words).split())
        if text:
            prefix = "#" * self._heading + " " if self._heading else self._prefix
            self.lines.append((self._start, prefix + text))
            self.lines.append((self._start, ""))
        self._words = []
        self._lead = ""

    def _furniture(self, attrs: list[tuple[str, str | None]]) -> bool:
        return any(name in ("class", "id") and value and _FURNITURE.search(value) for name, value in attrs)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip:
            if tag not in VOID:
                self._skip.append(tag)
            return
        if tag == "title":
            self._in_title = True
        elif tag in _CONTENT_ROOTS:
            self._flush()
            self._roots += 1
        elif tag in SKIPPED or (tag not in VOID and tag != "body" and self._furniture(attrs)):
            self._flush()
            self._skip.append(tag)
        elif tag in HEADINGS:
            self._flush()
            self._heading = HEADINGS[tag]
        elif tag in BLOCKS or (tag == "br" and self._heading == 0):
            self._flush()
            self._prefix = {"li": "- ", "dd": ": "}.get(tag, "")
        elif tag in ("strong", "b", "a") and not self._heading and not "".join(self._words).strip():
            self._lead = "**" if tag != "a" else "["
            self._words.append(self._lead)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag in self._skip:  # a stray end tag closes nothing (browsers ignore it too)
                while self._skip.pop() != tag:
                    pass
            return
        if tag == "title":
            self._in_title = False
        elif tag in _CONTENT_ROOTS:
            self._flush()
            self._roots = max(self._roots - 1, 0)
        elif tag in HEADINGS and self._heading:
            self._flush()
            self._heading = 0
        elif tag in BLOCKS:
            self._flush()
            self._prefix = ""
        elif tag in ("strong", "b", "a") and self._lead:
            if "".join(self._words).strip() in ("**", "["):  # an empty lead-in: no marker
                self._words = []
            else:
                self._words.append("**" if self._lead == "**" else "](#)")
            self._lead = ""

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = " ".join((self.title + " " + data).split())
            return
        if self._skip or not self._roots:
            return
        if not data.strip():
            if data and self._words:
                self._words.append(" ")
            return
        if not "".join(self._words).strip(" *["):
            leading = data[: len(data) - len(data.lstrip())]
            self._start = self.getpos()[0] + leading.count("\n")
        self._words.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def html_lines(text: str) -> tuple[str, list[tuple[int, str]]]:
    """The document's title and its text as numbered Markdown-like lines (see the module contract)."""
    reader = _Reader(only_main=bool(_MAIN.search(text)))
    reader.feed(text)
    reader.close()
    return reader.title, reader.lines
