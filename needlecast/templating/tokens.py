"""Recipient tokens: the per-person values of an email, filled in after rendering.

A step renders once per variant; where a person's value goes, the template holds a token. Every token has
two spellings: `%%name%%` for plain text and subject lines (the value goes in raw) and `%%name.html%%` for
HTML (the value goes in HTML-escaped). `substitutions_for` builds both for one recipient, in the shape of
SendGrid's `personalizations[].substitutions`; `apply_substitutions` does the same replacement locally
(outbox previews, `.eml` files), in a single pass, so a value is never scanned for tokens again.

Contract: a recipient value is always data. It is never template source, newlines are folded in one-line
values, and the token delimiter `%%` cannot survive inside a value, so no value can smuggle in another token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote  # C, one JSON string

from markupsafe import Markup, escape

_DELIMITER = "%%"


@dataclass(frozen=True)
class Token:
    """A placeholder object put into template contexts in place of a person's value.

    `html_safe` tokens (the signed links, whose values never hold `& < > " '`: the base URL is checked when
    links are made) have one spelling for every part, which keeps each recipient's substitutions small.
    """

    name: str
    html_safe: bool = False

    @property
    def text(self) -> str:
        return f"{_DELIMITER}{self.name}{_DELIMITER}"

    @property
    def html(self) -> str:
        return self.text if self.html_safe else f"{_DELIMITER}{self.name}.html{_DELIMITER}"

    def __str__(self) -> str:  # text templates and subjects
        return self.text

    def __html__(self) -> str:  # autoescaped HTML templates (markupsafe protocol)
        return self.html


# The per-recipient values every email can use. first_name falls back to a configured word ("there").
TOKENS: dict[str, Token] = {
    "first_name": Token("first_name"),
    "unsubscribe_url": Token("unsubscribe_url", html_safe=True),
    "preferences_url": Token("preferences_url", html_safe=True),
    # The signed token alone, which both links end in. A provider request carries it instead of the two
    # links (`templating.recipient.RecipientValues.with_links`): a third of each personalization's size.
    "manage": Token("manage", html_safe=True),
    # A signup's confirmation link (the confirmation email only; empty elsewhere).
    "confirm_url": Token("confirm_url", html_safe=True),
}

_TOKEN_RE = re.compile(r"%%([a-z_]+)(\.html)?%%")


def _clean(value: object) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # one line: a name with a newline must not break a subject
    return text.replace(_DELIMITER, "%")


_HTML_SPECIAL = frozenset("&<>\"'")
_SPELLINGS: dict[str, tuple[str, str | None]] = {}
_JSON_KEYS: dict[str, tuple[str, str | None]] = {}


def _spellings(name: str) -> tuple[str, str | None]:
    """The token's text spelling, and its HTML spelling when it has a second one (None: one for all)."""
    spellings = _SPELLINGS.get(name)
    if spellings is None:
        token = TOKENS.get(name) or Token(name)
        spellings = _SPELLINGS[name] = (token.text, None if token.html == token.text else token.html)
    return spellings


def _clean_value(value: object) -> str:
    if (
        type(value) is str
        and value.isprintable()
        and "%%" not in value
        and "  " not in value
        and value == value.strip()
    ):
        return value  # the common case, checked without building a new string
    return _clean(value)


def _html_value(clean: str) -> str:
    # Most values have nothing to escape: skip markupsafe for them.
    return str(escape(clean)) if _HTML_SPECIAL.intersection(clean) else clean


def substitutions_for(values: Mapping[str, object]) -> dict[str, str]:
    """Both spellings of every token in `values`, ready for SendGrid `substitutions` (all strings)."""
    subs: dict[str, str] = {}
    for name, value in values.items():
        text, html = _spellings(name)
        clean = _clean_value(value)
        subs[text] = clean
        if html is not None:
            subs[html] = _html_value(clean)
    return subs


def substitutions_json(values: Mapping[str, object]) -> str:
    """`substitutions_for(values)` as JSON text: the members of the object, without its braces (what
    `json.dumps` with compact separators writes between them). For the request bodies of a large send,
    where building the dict first cost as much again."""
    parts = []
    for name, value in values.items():
        keys = _JSON_KEYS.get(name)
        if keys is None:
            text, html = _spellings(name)
            keys = _JSON_KEYS[name] = (_quote(text) + ":", None if html is None else _quote(html) + ":")
        clean = _clean_value(value)
        quoted = _quote(clean)
        if keys[1] is None:
            parts.append(keys[0] + quoted)
        else:
            html_value = _html_value(clean)
            parts.append(f"{keys[0]}{quoted},{keys[1]}{quoted if html_value is clean else _quote(html_value)}")
    return ",".join(parts)


def apply_substitutions(rendered: str, substitutions: Mapping[str, str]) -> str:
    """Replace every token in `rendered` by its value, in one pass; unknown tokens are left as they are."""
    return _TOKEN_RE.sub(lambda m: substitutions.get(m.group(0), m.group(0)), rendered)


def text_to_html(rendered_text: str) -> Markup:
    """A text-mode rendering (e.g. the preheader) made safe for HTML: escaped, tokens switched to HTML."""
    escaped = str(escape(rendered_text))
    return Markup(_TOKEN_RE.sub(lambda m: f"%%{m.group(1)}.html%%", escaped))


def tokens_in(rendered: str) -> set[str]:
    """Names of the tokens used in a rendering (to check a template uses the unsubscribe link)."""
    return {m.group(1) for m in _TOKEN_RE.finditer(rendered)}
