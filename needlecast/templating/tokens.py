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

from markupsafe import Markup, escape

_DELIMITER = "%%"


@dataclass(frozen=True)
class Token:
    """A placeholder object put into template contexts in place of a person's value."""

    name: str

    @property
    def text(self) -> str:
        return f"{_DELIMITER}{self.name}{_DELIMITER}"

    @property
    def html(self) -> str:
        return f"{_DELIMITER}{self.name}.html{_DELIMITER}"

    def __str__(self) -> str:  # text templates and subjects
        return self.text

    def __html__(self) -> str:  # autoescaped HTML templates (markupsafe protocol)
        return self.html


# The per-recipient values every email can use. first_name falls back to a configured word ("there").
TOKENS: dict[str, Token] = {
    name: Token(name) for name in ("first_name", "unsubscribe_url", "preferences_url")
}

_TOKEN_RE = re.compile(r"%%([a-z_]+)(\.html)?%%")


def _clean(value: object) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())  # one line: a name with a newline must not break a subject
    return text.replace(_DELIMITER, "%")


def substitutions_for(values: Mapping[str, object]) -> dict[str, str]:
    """Both spellings of every token in `values`, ready for SendGrid `substitutions` (all strings)."""
    subs: dict[str, str] = {}
    for name, value in values.items():
        token = TOKENS.get(name) or Token(name)
        clean = _clean(value)
        subs[token.text] = clean
        subs[token.html] = str(escape(clean))
    return subs


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
