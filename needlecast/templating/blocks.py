"""Emails built from blocks: a small document (subject, preheader, a list of blocks) and the two template files
generated from it together, so the HTML and the text part can never drift.

A block is one of `KINDS`: a heading, a text, an article section (a *role*, such as the variant's own
section, resolved at render time through the template context: never pasted text), an image (a file of the
workspace's `images/` folder, served from the tracking host, with alt text), a button (its words and link),
a divider, and the footer (an optional note above the clinic's own footer, which the layout always adds
with the clinic's name, postal address and the preferences and unsubscribe links).

Contract:
- `parse_document(data)` reads a document from its stored mapping (the `.blocks.yaml` sidecar) or a form's
  fields gathered into one; `problems(document)` says what is wrong with it, per field (`subject`,
  `blocks-2-alt`), in words; an empty mapping means it can be saved.
- `generate(document, images_url)` returns the HTML and text sources (Jinja, extending the workspace's
  layouts) for a document without problems; `images_url` is where the tracking host serves `images/`.
  Everything a person typed is literal text in both: HTML-escaped in the HTML, and never Jinja source (a
  `{` becomes an expression that prints it), except the placeholders of `PLACEHOLDERS` ("[first name]"),
  which become the same variables and recipient tokens the other templates use.
- `dump_document` / `document_mapping` give the sidecar's YAML; `sidecar_path(templates_dir, name)` is
  where it lives (`emails/NAME.blocks.yaml`, beside the two files).
Pure functions: nothing here reads or writes a file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from markupsafe import escape

from needlecast.errors import InvalidRequest

KINDS = {
    "heading": "Heading",
    "text": "Text",
    "section": "Article section",
    "image": "Image",
    "button": "Button",
    "divider": "Divider",
    "footer": "Footer",
}
# What an article-section block can show: the template context's own sections for the variant (context.py).
SECTION_ROLES = {
    "lead": "The section for the reader's concern",
    "more": "The concern's other sections",
    "intro": "The article's introduction",
    "closing": "The article's closing",
}
# What a person may type in square brackets, and the template variable it stands for.
PLACEHOLDERS = {
    "first name": "first_name",
    "clinic name": "clinic.name",
    "treatment": "article.treatment",
    "concern": "concern_label | midsentence if concern != 'general' else 'your skin'",
}
# Where a button or an image may link besides a web address.
LINK_PLACEHOLDERS = {"booking page": "clinic.booking_url", "website": "clinic.website"}
MAX_BLOCKS = 40
MAX_TEXT = 4000
MAX_LINE = 300
IMAGE_FILE = re.compile(r"[a-z0-9][a-z0-9-]{0,80}\.(png|jpg|gif|webp)")
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,59}")
_PLACEHOLDER = re.compile(r"\[([a-zA-Z ]+)\]")
_URL = re.compile(r"(https?://|mailto:)[^\s\"'<>\\]+")
CONTENT_WIDTH = 536  # the layout's 600 px less its padding


class BlocksRejected(InvalidRequest):
    """A block document that cannot be saved: `problems` maps each form field to what is wrong, in words."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in self.problems.items()))


@dataclass(frozen=True)
class Block:
    """One block. `text`: a heading's or text's words, a button's label, the footer's note; `link`: a
    button's or image's link; `section`: a section block's role; `image`/`alt`: an image's file and words;
    `show_title`: whether a section block shows the section's heading."""

    kind: str
    text: str = ""
    link: str = ""
    section: str = ""
    image: str = ""
    alt: str = ""
    show_title: bool = True


@dataclass(frozen=True)
class BlockDocument:
    subject: str
    preheader: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)


def starter_document() -> BlockDocument:
    """What a new email starts as: a greeting, the reader's section, a button and the footer."""
    return BlockDocument(
        subject="[first name], what [treatment] can do for you",
        preheader="A few minutes on [treatment], from [clinic name].",
        blocks=(
            Block("heading", text="Hi [first name]"),
            Block("text", text="Here is what [treatment] can do for [concern]."),
            Block("section", section="lead"),
            Block("button", text="Book a consultation", link="[booking page]"),
            Block("footer"),
        ),
    )


def new_block(kind: str) -> Block:
    """A block of `kind` as it is added, with sensible first values."""
    if kind not in KINDS:
        raise InvalidRequest(f"'{kind}' is not a kind of block; use one of: {', '.join(KINDS)}")
    return {
        "section": Block("section", section="lead"),
        "button": Block("button", text="Book a consultation", link="[booking page]"),
    }.get(kind, Block(kind))


def parse_document(data: Mapping[str, Any]) -> BlockDocument:
    """A document from its stored mapping: `subject`, `preheader` and `blocks` (a list of mappings with
    `kind` and the fields it uses). Unknown keys are ignored; a block of an unknown kind is kept as typed
    (`problems` names it). A footer is always the last block, exactly once."""
    blocks = []
    for raw in data.get("blocks") or []:
        if not isinstance(raw, Mapping):
            continue
        blocks.append(
            Block(
                kind=str(raw.get("kind") or ""),
                text=str(raw.get("text") or ""),
                link=str(raw.get("link") or "").strip(),
                section=str(raw.get("section") or ""),
                image=str(raw.get("image") or "").strip(),
                alt=str(raw.get("alt") or "").strip(),
                show_title=bool(raw.get("show_title", True)),
            )
        )
    return BlockDocument(str(data.get("subject") or ""), str(data.get("preheader") or ""), with_footer(blocks))


def with_footer(blocks: list[Block] | tuple[Block, ...]) -> tuple[Block, ...]:
    """`blocks` with its footer last (the first footer's note kept; one added when there is none)."""
    footers = [b for b in blocks if b.kind == "footer"]
    return (*(b for b in blocks if b.kind != "footer"), footers[0] if footers else Block("footer"))


def document_mapping(document: BlockDocument) -> dict[str, Any]:
    """The document as stored: only the fields each kind uses."""
    used = {
        "heading": ("text",),
        "text": ("text",),
        "section": ("section", "show_title"),
        "image": ("image", "alt", "link"),
        "button": ("text", "link"),
        "divider": (),
        "footer": ("text",),
    }
    blocks = []
    for block in document.blocks:
        entry: dict[str, Any] = {"kind": block.kind}
        for name in used.get(block.kind, ()):
            value = getattr(block, name)
            if value != "" and not (name == "show_title" and value is True):
                entry[name] = value
        blocks.append(entry)
    return {"subject": document.subject, "preheader": document.preheader, "blocks": blocks}


def dump_document(document: BlockDocument, generated: Mapping[str, str]) -> str:
    """The sidecar's text: a comment saying what it is, the document, and the digests of the two files it
    generated (`generated`: "html" and "text" digests), so a later hand edit of them can be told."""
    body = {**document_mapping(document), "generated": dict(generated)}
    return (
        "# This email is built from blocks in the console's email builder, which writes the .html and .txt\n"
        "# files beside this one. Edit it there; a hand edit of those files opens in the template editor.\n"
        + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    )


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def sidecar_path(templates_dir: Path, name: str) -> Path:
    """Where the block document of email `name` ("emails/offer") lives."""
    return templates_dir / f"{name}.blocks.yaml"


def problems(document: BlockDocument) -> dict[str, str]:
    """What keeps `document` from being saved, per field, in words (empty: nothing)."""
    found: dict[str, str] = {}
    _check_line(found, "subject", document.subject, "the subject", required=True)
    _check_line(found, "preheader", document.preheader, "the preview line")
    if len(document.blocks) > MAX_BLOCKS:
        found["blocks"] = f"an email holds at most {MAX_BLOCKS} blocks; remove some"
    if not any(b.kind in ("heading", "text", "section") for b in document.blocks):
        found["blocks"] = "add a heading, a text or an article section: an email needs words"
    for index, block in enumerate(document.blocks):
        found.update(_block_problems(f"blocks-{index}", block))
    return found


def _check_line(found: dict[str, str], key: str, value: str, what: str, *, required: bool = False) -> None:
    if required and not value.strip():
        found[key] = f"write {what}"
    elif len(value) > MAX_LINE:
        found[key] = f"shorten {what} to {MAX_LINE} characters or fewer"
    elif "\n" in value.strip():
        found[key] = f"write {what} on one line"


def _block_problems(key: str, block: Block) -> dict[str, str]:
    found: dict[str, str] = {}
    if block.kind not in KINDS:
        return {f"{key}-kind": f"'{block.kind}' is not a kind of block"}
    if block.kind in ("heading", "text", "button") and not block.text.strip():
        found[f"{key}-text"] = {"heading": "write the heading", "text": "write the text"}.get(
            block.kind, "write the button's words"
        )
    if len(block.text) > MAX_TEXT:
        found[f"{key}-text"] = f"shorten this to {MAX_TEXT:,} characters or fewer"
    if block.kind in ("heading", "button"):
        _check_line(found, f"{key}-text", block.text, "this")
    if block.kind == "section" and block.section not in SECTION_ROLES:
        found[f"{key}-section"] = "choose which section of the article to show"
    if block.kind == "image":
        if not IMAGE_FILE.fullmatch(block.image):
            found[f"{key}-image"] = "upload the image (PNG, JPEG, GIF or WebP)"
        if not block.alt:
            found[f"{key}-alt"] = "describe the image in a few words (its alt text), for readers who cannot see it"
        elif len(block.alt) > MAX_LINE:
            found[f"{key}-alt"] = f"shorten the description to {MAX_LINE} characters or fewer"
    if block.kind == "button" and not block.link:
        found[f"{key}-link"] = "give the button a link: a web address, or [booking page]"
    if block.kind in ("button", "image") and block.link and _link_expression(block.link) is None:
        found[f"{key}-link"] = "use a web address starting with https://, or [booking page] or [website]"
    return found


def _link_expression(link: str) -> str | None:
    """The Jinja source of a link (HTML attribute-safe), or None when it is not a link."""
    placeholder = _PLACEHOLDER.fullmatch(link)
    if placeholder and placeholder.group(1).lower() in LINK_PLACEHOLDERS:
        return "{{ " + LINK_PLACEHOLDERS[placeholder.group(1).lower()] + " }}"
    if _URL.fullmatch(link):
        return _literal(link, html=True)
    return None


def _literal(text: str, *, html: bool) -> str:
    """`text` as template source that prints it as typed (escaped for HTML), with its placeholders as
    variables. A `{` is printed by an expression, so typed text is never Jinja source."""
    parts = []
    last = 0
    for found in _PLACEHOLDER.finditer(text):
        variable = PLACEHOLDERS.get(found.group(1).lower())
        if variable is None:
            continue
        parts.append(_plain(text[last : found.start()], html))
        parts.append("{{ " + variable + " }}")
        last = found.end()
    parts.append(_plain(text[last:], html))
    return "".join(parts)


def _plain(text: str, html: bool) -> str:
    shown = str(escape(text)) if html else text
    return shown.replace("{", "{{ '{' }}")


def _paragraphs(text: str) -> list[str]:
    return [" ".join(line.strip() for line in p.splitlines()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


HTML_HEADER = """{#- Built from blocks in the console's email builder (emails/%(stem)s.blocks.yaml), together with
    %(stem)s.txt. Edit it there; a hand edit here opens in the template editor from then on. -#}
{%% extends "layouts/base.html" %%}
{%% block content %%}
"""
TEXT_HEADER = """{#- Built from blocks in the console's email builder, together with %(stem)s.html. -#}
{%% extends "layouts/base.txt" %%}
{%% block subject %%}%(subject)s{%% endblock %%}
{%% block preheader %%}%(preheader)s{%% endblock %%}
{%% block content %%}
"""
_H1 = "margin: 0 0 16px 0; font-family: Georgia, serif; font-size: 24px; line-height: 1.3; color: #2f4858;"
_H2 = "margin: 24px 0 8px 0; font-family: Georgia, serif; font-size: 19px; line-height: 1.3; color: #2f4858;"
_P = "margin: 0 0 16px 0;"
_NOTE = "margin: 16px 0 0 0; font-size: 13px; color: #6b6b6b;"
_HR = "border: 0; border-top: 1px solid #e2dcd6; margin: 24px 0;"
_BUTTON = (
    "display: inline-block; padding: 12px 24px; background-color: #9a4e35; color: #ffffff; "
    "text-decoration: none; border-radius: 4px; font-weight: bold;"
)
_IMAGE = f"display: block; width: 100%; max-width: {CONTENT_WIDTH}px; height: auto; border: 0;"


def generate(document: BlockDocument, images_url: str, stem: str) -> tuple[str, str]:
    """The HTML and text template sources of `document` (see the module contract); `stem` names the email
    ("offer" for emails/offer) in their header comments."""
    found = problems(document)
    if found:
        raise BlocksRejected(found)
    html = [HTML_HEADER % {"stem": stem}]
    text = [
        TEXT_HEADER
        % {
            "stem": stem,
            "subject": _literal(document.subject.strip(), html=False),
            "preheader": _literal(document.preheader.strip(), html=False),
        }
    ]
    first_heading = True
    for block in document.blocks:
        html_part, text_part = _block_sources(block, images_url, first_heading)
        first_heading = first_heading and block.kind != "heading"
        html.append(html_part)
        text.append(text_part)
    html.append("{% endblock %}\n")
    text.append("{% endblock %}\n")
    return "".join(html), "".join(text)


def _block_sources(block: Block, images_url: str, first_heading: bool) -> tuple[str, str]:
    """One block's HTML and text source (each ending in a newline)."""
    if block.kind == "heading":
        tag, style = ("h1", _H1) if first_heading else ("h2", _H2)
        line = " ".join(block.text.split())
        return f'<{tag} style="{style}">{_literal(line, html=True)}</{tag}>\n', f"{_literal(line, html=False)}\n\n"
    if block.kind in ("text", "footer"):
        paragraphs = _paragraphs(block.text)
        style = _P if block.kind == "text" else _NOTE
        html = "".join(f'<p style="{style}">{_literal(p, html=True)}</p>\n' for p in paragraphs)
        return html, "".join(f"{_literal(p, html=False)}\n\n" for p in paragraphs)
    if block.kind == "section":
        return _section_sources(block)
    if block.kind == "image":
        return _image_sources(block, images_url)
    if block.kind == "button":
        link = _link_expression(block.link) or ""
        label = " ".join(block.text.split())
        html = (
            '<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin: 8px 0 24px 0;">'
            f'<tr><td><a class="button" href="{link}" style="{_BUTTON}">{_literal(label, html=True)}</a>'
            "</td></tr></table>\n"
        )
        return html, f"{_literal(label, html=False)}: {link}\n\n"
    if block.kind == "divider":
        return f'<hr style="{_HR}">\n', "* * *\n\n"
    raise InvalidRequest(f"'{block.kind}' is not a kind of block")


def _section_sources(block: Block) -> tuple[str, str]:
    role = block.section
    title_html = f'<h2 style="{_H2}">{{{{ s.title }}}}</h2>\n' if block.show_title else ""
    title_text = "{{ s.title | upper }}\n\n" if block.show_title else ""
    if role == "more":
        opening = "{% for s in more %}\n"
        closing = "{% endfor %}\n"
    else:
        opening = f"{{% if {role} %}}\n{{% set s = {role} %}}\n"
        closing = "{% endif %}\n"
    html = f"{opening}{title_html}{{{{ s.body | paragraphs }}}}\n{closing}"
    text = f"{opening}{title_text}{{{{ s.body }}}}\n\n{closing}"
    return html, text


def _image_sources(block: Block, images_url: str) -> tuple[str, str]:
    source = _literal(f"{images_url.rstrip('/')}/{block.image}", html=True)
    image = f'<img src="{source}" alt="{_literal(block.alt, html=True)}" width="{CONTENT_WIDTH}" style="{_IMAGE}">'
    link = _link_expression(block.link) if block.link else None
    if link:
        image = f'<a href="{link}">{image}</a>'
        return f'<p style="{_P}">{image}</p>\n', f"{_literal(block.alt, html=False)}: {link}\n\n"
    return f'<p style="{_P}">{image}</p>\n', ""


def moved(document: BlockDocument, index: int, step: int) -> BlockDocument:
    """`document` with block `index` moved by `step` (-1 up, 1 down); the footer stays last."""
    blocks = list(document.blocks)
    target = index + step
    if not (0 <= index < len(blocks) and 0 <= target < len(blocks)) or "footer" in (
        blocks[index].kind,
        blocks[target].kind,
    ):
        return document
    blocks[index], blocks[target] = blocks[target], blocks[index]
    return replace(document, blocks=tuple(blocks))


def removed(document: BlockDocument, index: int) -> BlockDocument:
    """`document` without block `index` (the footer cannot be removed: the law asks for it)."""
    if not 0 <= index < len(document.blocks) or document.blocks[index].kind == "footer":
        return document
    return replace(document, blocks=document.blocks[:index] + document.blocks[index + 1 :])


def added(document: BlockDocument, kind: str) -> BlockDocument:
    """`document` with a new block of `kind` just before the footer."""
    return replace(document, blocks=with_footer([*document.blocks, new_block(kind)]))


def previewable(document: BlockDocument) -> tuple[BlockDocument, list[int]]:
    """`document` as far as it can be shown while being built: the blocks with problems left out (their
    indexes returned), a missing subject shown as such, and at least an empty text when nothing is left."""
    kept: list[int] = []
    left_out: list[int] = []
    for index, block in enumerate(document.blocks):
        (left_out if _block_problems(f"blocks-{index}", block) else kept).append(index)
    blocks = [document.blocks[i] for i in kept]
    if not any(b.kind in ("heading", "text", "section") for b in blocks):
        blocks.insert(0, Block("text", text="(Nothing written yet.)"))
    subject = document.subject if "subject" not in problems(document) else "(no subject yet)"
    preheader = document.preheader if "preheader" not in problems(document) else ""
    return BlockDocument(subject, preheader, tuple(blocks[:MAX_BLOCKS])), left_out
