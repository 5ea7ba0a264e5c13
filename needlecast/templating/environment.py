"""The Jinja2 environment for email templates.

Contract: templates run in a `SandboxedEnvironment` (template authors cannot reach Python internals) bounded
in memory and time (`sandbox.BoundedEnvironment`, the limits in `limits`), `.html` templates autoescape, every
undefined name is an error (`StrictUndefined`), and compile or render errors surface as `TemplateProblem`
with the template file and line (`TemplateLimitExceeded` when a limit stopped the rendering).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import jinja2
from jinja2.bccache import Bucket
from markupsafe import Markup, escape

from needlecast.errors import TemplateLimitExceeded, TemplateProblem
from needlecast.templating.limits import RenderLimits
from needlecast.templating.sandbox import BoundedEnvironment


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


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates shared by every environment of this process, kept in memory.

    Each page and plan builds its own environment (`build_environment`), so without this each compiled the
    same files again (a quarter of the "Send now" confirmation's time during a send). Jinja keys an entry by
    the template's name and file and checks the source's checksum before using it, so an edited file is
    compiled afresh. Every environment `build_environment` makes has the same compile-time options, which is
    what makes sharing their compiled code sound. At most MAX_ENTRIES are kept, the least recently used
    dropped first."""

    MAX_ENTRIES = 512

    def __init__(self) -> None:
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def load_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            data = self._entries.get(bucket.key)
            if data is not None:
                self._entries.move_to_end(bucket.key)
        if data is not None:
            bucket.bytecode_from_string(data)  # a checksum that differs leaves the bucket empty: compiled again

    def dump_bytecode(self, bucket: Bucket) -> None:
        data = bucket.bytecode_to_string()
        with self._lock:
            self._entries[bucket.key] = data
            self._entries.move_to_end(bucket.key)
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)


_COMPILED = _CompiledTemplates()


def build_environment(templates_dir: Path, *, limits: RenderLimits | None = None) -> BoundedEnvironment:
    """A sandboxed environment loading from `templates_dir`, enforcing `limits` (default: the documented
    constants of `needlecast.templating.limits`)."""
    env = BoundedEnvironment(
        limits=limits,
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=_COMPILED,
    )
    env.add_filter("paragraphs", _paragraphs_html)
    env.add_filter("midsentence", midsentence, grows=False)
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
    """A `TemplateProblem` for an error raised while rendering `name`, with the line when Jinja knows it (a
    template made from a string, such as a campaign's subject line, keeps `name` and gets its line)."""
    line = None
    template = name
    tb = err.__traceback__
    while tb is not None:  # Jinja maps template frames back to template lines in the traceback
        frame_file = tb.tb_frame.f_code.co_filename
        if frame_file.endswith((".html", ".txt", ".htm")):
            template, line = frame_file, tb.tb_lineno
        elif frame_file == "<template>":
            template, line = name, tb.tb_lineno
        tb = tb.tb_next
    if isinstance(err, TemplateLimitExceeded):
        return TemplateLimitExceeded(err.problem, template=template, line=line)
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
