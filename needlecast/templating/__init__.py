"""Jinja2 rendering of emails: sandboxed, autoescaped HTML, strict undefined, recipient tokens, CSS inlining."""

from needlecast.templating.environment import build_environment
from needlecast.templating.render import RenderedEmail, render_email
from needlecast.templating.tokens import TOKENS, apply_substitutions, substitutions_for

__all__ = [
    "TOKENS",
    "RenderedEmail",
    "apply_substitutions",
    "build_environment",
    "render_email",
    "substitutions_for",
]
