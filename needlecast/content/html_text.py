"""Read an HTML article into numbered Markdown-like lines, so that one parser serves Markdown and HTML.

Contract: `html_lines(text)` returns `(title, [(line, text)])`: `<h1>`..`<h6>` become `#`..`######` headings,
every other block (paragraph, list item, quote, cell, a div's own text) one paragraph, each numbered with the
source line where it starts, with an empty entry between blocks. Inline markup keeps only its text; character
references are decoded. Scripts, styles, navigation, headers, footers, asides, forms and other page furniture
are dropped with everything inside them. `title` is the document's `<title>` (empty when it has none).
Python's own HTML parser reads the markup: it accepts broken HTML as browsers do and never raises on it.
"""

from __future__ import annotations

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


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[int, str]] = []
        self.title = ""
        self._skip: list[str] = []  # open skipped elements, innermost last
        self._in_title = False
        self._heading = 0
        self._words: list[str] = []
        self._start = 0

    def _flush(self) -> None:
        text = " ".join("".join(self._words).split())
        if text:
            prefix = "#" * self._heading + " " if self._heading else ""
            self.lines.append((self._start, prefix + text))
            self.lines.append((self._start, ""))
        self._words = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip:
            if tag in SKIPPED and tag not in VOID:
                self._skip.append(tag)
            return
        if tag == "title":
            self._in_title = True
        elif tag in SKIPPED:
            self._flush()
            self._skip.append(tag)
        elif tag in HEADINGS:
            self._flush()
            self._heading = HEADINGS[tag]
        elif tag in BLOCKS or (tag == "br" and self._heading == 0):
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag == "title":
            self._in_title = False
        elif tag in HEADINGS and self._heading:
            self._flush()
            self._heading = 0
        elif tag in BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = " ".join((self.title + " " + data).split())
            return
        if self._skip or not data.strip():
            if data and self._words and not self._skip:
                self._words.append(" ")
            return
        if not self._words:
            leading = data[: len(data) - len(data.lstrip())]
            self._start = self.getpos()[0] + leading.count("\n")
        self._words.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def html_lines(text: str) -> tuple[str, list[tuple[int, str]]]:
    """The document's title and its text as numbered Markdown-like lines (see the module contract)."""
    reader = _Reader()
    reader.feed(text)
    reader.close()
    return reader.title, reader.lines
