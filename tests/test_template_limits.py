"""The sandbox's resource limits: sizes refused before they are made, a deadline, the output's size; each
error names the template and the line. The deadline runs on a fake clock: no test waits on wall time."""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import jinja2
import pytest
from jinja2.sandbox import SandboxedEnvironment

from needlecast.config import Workspace
from needlecast.content.loader import load_article, load_vocabulary_for
from needlecast.errors import TemplateLimitExceeded
from needlecast.templating import build_environment, render_email
from needlecast.templating.context import email_context, variant_concerns
from needlecast.templating.environment import _autoescape, _paragraphs_html, email_templates, midsentence
from needlecast.templating.limits import RenderLimits

TXT = '{% extends "layouts/base.txt" %}{% block subject %}s{% endblock %}{% block preheader %}p{% endblock %}\n'


def _context(workspace: Workspace, concern: str = "acne") -> dict[str, object]:
    vocabulary = load_vocabulary_for(workspace)
    return email_context(load_article(workspace, vocabulary), vocabulary, workspace.settings.clinic, concern)


def _render_html(workspace: Workspace, body: str, limits: RenderLimits | None = None, **kw: str) -> None:
    """Render an email whose HTML is `body` (line 1 is a comment, so the body's lines start at 2)."""
    (workspace.templates_dir / "emails" / "probe.txt").write_text(TXT)
    (workspace.templates_dir / "emails" / "probe.html").write_text("{# probe #}\n" + body)
    render_email(build_environment(workspace.templates_dir, limits=limits), "emails/probe", _context(workspace), **kw)


def _refused(workspace: Workspace, body: str, limits: RenderLimits | None = None) -> TemplateLimitExceeded:
    """The limit error rendering `body` raises, after checking it allocated nothing near the limits' scale."""
    tracemalloc.start()
    try:
        with pytest.raises(TemplateLimitExceeded) as caught:
            _render_html(workspace, body, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30_000_000, f"{peak:,} bytes allocated before the limit stopped the rendering"
    return caught.value


# Each of these would allocate 100 MB or more (or run for hours) in Jinja's plain sandbox; each is on line 3.
HOSTILE = {
    "string repetition": "{{ ('a' * 100000000) | length }}",
    "repetition by a number first": "{{ (100000000 * 'a') | length }}",
    "list repetition": "{{ ([1, 2] * 50000000) | length }}",
    "a list of a long text repeated": "{% set t = 'x' * 900000 %}{{ ([t] * 100000) | length }}",
    "range": "{% for i in range(100000000) %}{% endfor %}",
    "concatenation doubling": "{% set s = namespace(t='x' * 1000) %}"
    "{% for i in range(40) %}{% set s.t = s.t + s.t %}{% endfor %}",
    "tilde doubling": "{% set s = namespace(t='x' * 1000) %}"
    "{% for i in range(40) %}{% set s.t = s.t ~ s.t %}{% endfor %}",
    "join separator": "{{ range(100000) | join('x' * 100000) | length }}",
    "str.join": "{{ ('x' * 100000).join(range(100000)) | length }}",
    "center filter": "{{ 'a' | center(100000000) | length }}",
    "ljust method": "{{ 'a'.ljust(100000000) | length }}",
    "indent": "{{ ('\\n' * 100000) | indent(100000) | length }}",
    "wordwrap": "{{ ('a ' * 100000) | wordwrap(1, wrapstring='x' * 10000) | length }}",
    "replace": "{{ ('a' * 100000) | replace('a', 'b' * 100000) | length }}",
    "printf width": "{{ ('%100000000d' % 1) | length }}",
    "format filter width": "{{ '%*d' | format(100000000, 1) | length }}",
    "str.format width": "{{ '{:100000000}'.format(1) | length }}",
    "batch fill": "{{ [1] | batch(100000000, 0) | list | length }}",
    "big power": "{{ (2 ** 100000000) | string | length }}",
    "squaring": "{% set n = namespace(v=2 ** 4000) %}{% for i in range(30) %}{% set n.v = n.v * n.v %}{% endfor %}",
    "a huge list printed": "{% set t = 'x' * 900000 %}{{ [t, t, t] }}",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_template_that_builds_too_much_is_refused_before_it_is_made_naming_template_and_line(
    workspace: Workspace, body: str
) -> None:
    err = _refused(workspace, "<p>ok</p>\n" + body + "\n<p>after</p>")
    assert err.template is not None and err.template.endswith("emails/probe.html")
    assert err.line == 3, err
    assert "limit" in err.problem and "Error" not in err.problem  # the clinic's words, no Python type


def test_a_preview_of_a_100_million_character_string_says_what_and_where(workspace: Workspace) -> None:
    err = _refused(workspace, "{{ ('a' * 100000000) | length }}")
    assert str(err) == (f"{err.template}:2: this builds a text of 100,000,000 characters; the limit is 1,000,000")


def _ticking_clock() -> Callable[[], float]:
    """A clock that moves one second each time it is read: the deadline passes after a known number of checks,
    however fast or slow the machine is."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


def test_a_long_loop_stops_at_the_deadline_with_its_line(workspace: Workspace) -> None:
    limits = RenderLimits(seconds=50, clock=_ticking_clock())
    # 10 million iterations: hours of the test's time if the deadline were not checked inside the loop
    body = "<p>ok</p>\n{% for i in range(100000) %}{% for j in range(100) %}{% endfor %}{% endfor %}\n"
    err = _refused(workspace, body, limits)
    assert err.line == 3 and "longer than 50 seconds" in err.problem


def test_a_macro_that_recurses_without_a_loop_stops_at_the_deadline(workspace: Workspace) -> None:
    limits = RenderLimits(seconds=50, clock=_ticking_clock())
    body = "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}\n<p>{{ m(60) }}</p>\n"
    err = _refused(workspace, body, limits)
    assert err.template is not None and err.template.endswith("probe.html") and err.line == 2  # the macro's line
    assert "longer than 50 seconds" in err.problem


def test_a_short_loop_renders_within_the_same_deadline(workspace: Workspace) -> None:
    _render_html(
        workspace,
        "{% for i in range(10) %}<p>{{ i }}</p>{% endfor %}",
        RenderLimits(seconds=50, clock=_ticking_clock()),
    )


def test_output_past_the_limit_stops_at_the_line_being_output(workspace: Workspace) -> None:
    limits = RenderLimits(output_chars=10_000)
    err = _refused(workspace, "<p>ok</p>\n{% for i in range(100000) %}\n{{ 'x' * 1000 }}\n{% endfor %}\n", limits)
    assert err.line == 4 and "rendered text passes the limit of 10,000 characters" in err.problem


def test_text_captured_by_a_set_block_counts_towards_the_produced_limit(workspace: Workspace) -> None:
    limits = RenderLimits(produced_chars=100_000)
    body = "{% set big %}\n{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}\n{% endset %}{{ big | length }}"
    err = _refused(workspace, body, limits)
    assert err.line == 3 and "100,000 characters of text in all" in err.problem
    # literal text repeated by a loop counts too
    err = _refused(workspace, "{% set big %}{% for i in range(100000) %}\nxxxxxxxxxx{% endfor %}{% endset %}", limits)
    assert err.line == 2


def test_a_subject_line_that_builds_too_much_names_the_subject_and_its_line(workspace: Workspace) -> None:
    with pytest.raises(TemplateLimitExceeded) as caught:
        _render_html(workspace, "<p>ok</p>", subject="Hi {{ first_name }}\n{{ 'a' * 100000000 }}")
    assert caught.value.template == "emails/probe: subject" and caught.value.line == 2


def _plain_environment(templates_dir: Path) -> SandboxedEnvironment:
    """The environment as it was before the limits: Jinja's sandbox with needlecast's settings and filters."""
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


def test_every_sample_email_renders_exactly_as_in_the_unbounded_sandbox(workspace: Workspace) -> None:
    bounded, plain = build_environment(workspace.templates_dir), _plain_environment(workspace.templates_dir)
    names = email_templates(workspace.templates_dir)
    assert len(names) >= 6
    for name in names:
        for concern in variant_concerns(load_vocabulary_for(workspace)):
            context = _context(workspace, concern)
            assert render_email(bounded, name, context) == render_email(plain, name, context), (name, concern)


# The template features an email may use, each rendered by the bounded and the plain sandbox alike.
FEATURES = [
    "{% for s in more %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% else %}none{% endfor %}",
    "{% for s in more if s.title %}{{ s.title | upper }}{% endfor %}{% for x in [] %}x{% else %}empty{% endfor %}",
    "{% for n in [{'v': 1, 'c': [{'v': 2, 'c': []}]}] recursive %}{{ n.v }}({{ loop(n.c) }}){% endfor %}",
    "{% macro card(t) %}<b>{{ t }}</b>{% endmacro %}{% for i in range(3) %}{{ card(i * 2) }}{% endfor %}",
    "{% set ns = namespace(total=0) %}{% for i in range(5) %}{% set ns.total = ns.total + i %}{% endfor %}"
    "{{ ns.total }}",
    "{% set block %}{{ clinic.name ~ '!' }}{% endset %}{{ block * 2 }} {{ '%s and %d' % ('a', 3) }} {{ 2 ** 10 }}",
    "{{ more | map(attribute='title') | join(', ') }} {{ 'x' | center(9) }} {{ 'a\nb' | indent(2, true) }}",
    "{{ '{} {}'.format(concern, 1) }} {{ concern.replace('a', 'A') }} {{ [1, 2] + [3] }}"
    "{{ lipsum(1, false, 5, 6) | length > 0 }}",
    "{{ article.title | wordwrap(20) }} {{ '%-8s|' | format('ab') }} {{ [1, 2, 3] | batch(2) | list }}"
    "{{ [1, {'a': 'b'}] | tojson }} {{ [1, 2] | pprint }} {{ more | length }}",
]


@pytest.mark.parametrize("body", FEATURES)
def test_template_features_render_as_in_the_unbounded_sandbox(workspace: Workspace, body: str) -> None:
    (workspace.templates_dir / "emails" / "probe.txt").write_text(TXT)
    (workspace.templates_dir / "emails" / "probe.html").write_text(body)
    bounded, plain = build_environment(workspace.templates_dir), _plain_environment(workspace.templates_dir)
    context = _context(workspace)
    assert render_email(bounded, "emails/probe", context) == render_email(plain, "emails/probe", context)
