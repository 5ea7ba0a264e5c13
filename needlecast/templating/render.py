"""Render one email (subject, preheader, HTML, text) for one variant, with recipient tokens in place.

An email template is a pair `NAME.html` and `NAME.txt` under the workspace's templates/ folder. The `.txt`
file also holds the `subject` and `preheader` blocks, because those are plain text (no HTML escaping);
the preheader reaches the HTML layout escaped, with its tokens switched to their HTML spelling.

Contract: `render_email` returns token-bearing renderings that serve every recipient of the variant. The HTML
has its CSS inlined (css-inline, `@media` rules kept in a `<style>` block). Any template problem raises
`TemplateProblem` naming the file, the line and the undefined name when there is one. The four parts render
under one budget (`limits.render_budget`): one deadline and one count of produced text per email.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import css_inline
import jinja2

from needlecast.errors import TemplateProblem
from needlecast.templating.environment import describe_render_error, get_template
from needlecast.templating.limits import RenderLimits, render_budget
from needlecast.templating.tokens import TOKENS, text_to_html

_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


@dataclass(frozen=True)
class RenderedEmail:
    """One variant of one email, with `%%token%%` placeholders where per-recipient values go."""

    template: str
    subject: str
    preheader: str
    html: str
    text: str


def _render_block(template: jinja2.Template, block: str, context: Mapping[str, Any], name: str) -> str:
    if block not in template.blocks:
        raise TemplateProblem(f"missing {{% block {block} %}} (it sets the email's {block})", template=name)
    try:
        # The environment's `concat` (not "".join) so that a bounded environment checks the output's size.
        return template.environment.concat(template.blocks[block](template.new_context(dict(context)))).strip()
    except Exception:
        # A block called directly bypasses Jinja's own error handling, so its traceback points into the
        # compiled Python code; `handle_exception` maps it back to the template's lines.
        try:
            template.environment.handle_exception()
        except Exception as rewritten:
            raise describe_render_error(rewritten, name) from rewritten
        raise  # pragma: no cover - handle_exception always raises


def _render_string(env: jinja2.Environment, source: str, context: Mapping[str, Any], what: str) -> str:
    try:
        return env.from_string(source).render(context).strip()
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(err.message or "syntax error", template=what, line=err.lineno) from err
    except Exception as err:
        raise describe_render_error(err, what) from err


def render_email(
    env: jinja2.Environment,
    name: str,
    context: Mapping[str, Any],
    *,
    subject: str | None = None,
    preheader: str | None = None,
) -> RenderedEmail:
    """Render `name` (e.g. "emails/welcome") for one variant.

    `subject` / `preheader`, when given (a campaign step's own), are Jinja strings rendered in text mode and
    replace the template's blocks. The context gets the recipient tokens added; callers supply the rest.
    """
    with render_budget(getattr(env, "limits", None) or RenderLimits()):
        return _render_parts(env, name, context, subject, preheader)


def _render_parts(
    env: jinja2.Environment, name: str, context: Mapping[str, Any], subject: str | None, preheader: str | None
) -> RenderedEmail:
    full_context = {**context, **TOKENS}
    html_name, text_name = f"{name}.html", f"{name}.txt"
    text_template = get_template(env, text_name)
    html_template = get_template(env, html_name)

    subject_text = (
        _render_string(env, subject, full_context, f"{name}: subject")
        if subject is not None
        else _render_block(text_template, "subject", full_context, text_name)
    )
    subject_text = " ".join(subject_text.split())
    preheader_text = (
        _render_string(env, preheader, full_context, f"{name}: preheader")
        if preheader is not None
        else _render_block(text_template, "preheader", full_context, text_name)
    )
    preheader_text = " ".join(preheader_text.split())

    try:
        text = text_template.render({**full_context, "subject": subject_text, "preheader": preheader_text})
    except Exception as err:
        raise describe_render_error(err, text_name) from err
    try:
        html = html_template.render(
            {**full_context, "subject": text_to_html(subject_text), "preheader": text_to_html(preheader_text)}
        )
    except Exception as err:
        raise describe_render_error(err, html_name) from err

    return RenderedEmail(
        template=name,
        subject=subject_text,
        preheader=preheader_text,
        html=_INLINER.inline(html),
        text=text.strip() + "\n",
    )
