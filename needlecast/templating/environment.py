"""The Jinja2 environment for email templates.

Contract: templates run in a `SandboxedEnvironment` (template authors cannot reach Python internals),
`.html` templates autoescape, every undefined name is an error (`StrictUndefined`), and compile or render
errors surface as `TemplateProblem` with the template file and line.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from needlecast.errors import TemplateProblem


def _paragraphs_html(text: object) -> Markup:
    """Blank-line separated text as escaped `<p>` elements."""
    parts = [p.strip() for p in str(text).split("\n\n") if p.strip()]
    return Markup("\n").join(Markup("<p>{}</p>").format(escape(p)) for p in parts)


def midsentence(name: object) -> str:
    """A name as it reads inside a sentence: capitalised words lower-cased ("Chemical Peels" -> "chemical
    peels"), acronyms and brand spellings kept ("IPL", "HydraFacial")."""
    return " ".join(w.lower() if w[:1].isupper() and w[1:].islower() else w for w in str(name).split(" "))


def _autoescape(name: str | None) -> bool:
    return bool(name) and str(name).endswith((".html", ".htm"))


def build_environment(templates_dir: Path) -> SandboxedEnvironment:
    """A sandboxed environment loading from `templates_dir`."""
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["paragraphs"] = _paragraphs_html
    env.filters["midsentence"] = midsentence
    return env


def get_template(env: jinja2.Environment, name: str) -> jinja2.Template:
    """Load a template, translating Jinja's errors into `TemplateProblem`."""
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateProblem(err.message or "syntax error", template=err.filename or name, line=err.lineno) from err
    except jinja2.TemplateNotFound as err:
        raise TemplateProblem(f"template not found: {err.name}", template=name) from err


def describe_render_error(err: Exception, name: str) -> TemplateProblem:
    """A `TemplateProblem` for an error raised while rendering `name`, with the line when Jinja knows it."""
    line = None
    template = name
    tb = err.__traceback__
    while tb is not None:  # Jinja maps template frames back to template lines in the traceback
        frame_file = tb.tb_frame.f_code.co_filename
        if frame_file.endswith((".html", ".txt", ".htm")):
            template, line = frame_file, tb.tb_lineno
        tb = tb.tb_next
    if isinstance(err, jinja2.UndefinedError):
        message = f"undefined variable: {err.message}"
    elif isinstance(err, jinja2.TemplateSyntaxError):
        return TemplateProblem(err.message or "syntax error", template=err.filename or name, line=err.lineno)
    else:
        message = f"{type(err).__name__}: {err}"
    return TemplateProblem(message, template=template, line=line)


# Emails sent by needlecast itself, not by a campaign (they need values a campaign does not give).
TRANSACTIONAL = ("emails/confirm",)


def campaign_templates(templates_dir: Path) -> list[str]:
    """The emails a campaign step may use: every email but the transactional ones (`TRANSACTIONAL`)."""
    return [name for name in email_templates(templates_dir) if name not in TRANSACTIONAL]


def email_templates(templates_dir: Path) -> list[str]:
    """Names of the emails in a templates folder: every `emails/X.html` with its `emails/X.txt`."""
    names = []
    for html in sorted((templates_dir / "emails").glob("*.html")):
        if html.with_suffix(".txt").is_file():
            names.append(f"emails/{html.stem}")
    return names
