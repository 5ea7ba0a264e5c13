from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

from needlecast.config import Workspace
from needlecast.content.loader import load_article, load_vocabulary_for
from needlecast.errors import TemplateProblem
from needlecast.templating import apply_substitutions, build_environment, render_email, substitutions_for
from needlecast.templating.context import email_context
from needlecast.templating.preview import write_preview
from needlecast.templating.recipient import recipient_values

HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    'O\'Brien "Bob"',
    "Ana\nBcc: x@evil.test",
    "%%unsubscribe_url%%",
]


def _render(workspace: Workspace, name: str = "emails/welcome", concern: str = "acne", **kw: str):
    vocabulary = load_vocabulary_for(workspace)
    context = email_context(load_article(workspace, vocabulary), vocabulary, workspace.settings.clinic, concern)
    return render_email(build_environment(workspace.templates_dir), name, context, **kw)


def _filled(workspace: Workspace, rendered, first_name: str):
    values = recipient_values(workspace.settings, b"k" * 32, 7, "camp", first_name)
    subs = substitutions_for(values)
    return (
        apply_substitutions(rendered.subject, subs),
        apply_substitutions(rendered.html, subs),
        apply_substitutions(rendered.text, subs),
    )


def test_one_rendering_serves_every_recipient_through_tokens(workspace: Workspace) -> None:
    rendered = _render(workspace, subject="Hi {{ first_name }}")
    assert rendered.subject == "Hi %%first_name%%"
    assert "%%first_name.html%%" in rendered.html and 'href="%%unsubscribe_url%%"' in rendered.html
    assert "%%first_name%%" in rendered.text and "%%unsubscribe_url%%" in rendered.text
    for name in ("Ana", "Bea"):
        subject, html, text = _filled(workspace, rendered, name)
        assert subject == f"Hi {name}" and f"Hi {name}, welcome" in html and f"Hi {name}, welcome" in text


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_contact_values_stay_inert_in_subject_html_and_text(workspace: Workspace, name: str) -> None:
    rendered = _render(workspace, subject="For {{ first_name }}")
    subject, html, text = _filled(workspace, rendered, name)
    folded = " ".join(name.split()).replace("%%", "%")
    assert "\n" not in subject and subject == f"For {folded}"
    assert "<script>" not in html and "49" not in html.split("<body", 1)[1][:200]
    assert f"Hi {folded}, welcome" in text  # raw in text
    if "<" in name or '"' in name:
        assert "&lt;script&gt;" in html or "&#34;Bob&#34;" in html
    assert "%%unsubscribe_url%%" not in text.split("Unsubscribe:")[0]  # no token smuggled through a value


def test_html_escapes_and_text_keeps_raw_values(workspace: Workspace) -> None:
    subs = substitutions_for({"first_name": "A&B <x>"})
    assert subs["%%first_name%%"] == "A&B <x>"
    assert subs["%%first_name.html%%"] == "A&amp;B &lt;x&gt;"


def test_first_name_falls_back_when_missing(workspace: Workspace) -> None:
    subject, _, _ = _filled(workspace, _render(workspace, subject="Hi {{ first_name }}"), "  ")
    assert subject == "Hi there"


def test_layout_is_600px_with_lang_alt_footer_and_inlined_css(workspace: Workspace) -> None:
    html = _render(workspace).html
    assert '<html lang="en"' in html
    assert 'width="600"' in html
    assert "@media only screen and (max-width: 620px)" in html  # kept for clients that support it
    assert 'style="' in html and ".button {" not in html  # inlined, the rule itself removed
    assert 'alt="Lumen Skin Clinic logo"' in html
    assert "14 Harbour Walk, Bristol" in html and "unsubscribe" in html


def test_undefined_variable_is_an_error_naming_it(workspace: Workspace) -> None:
    (workspace.templates_dir / "emails" / "broken.txt").write_text(
        '{% extends "layouts/base.txt" %}{% block subject %}x{% endblock %}{% block preheader %}y{% endblock %}'
    )
    (workspace.templates_dir / "emails" / "broken.html").write_text("<p>{{ clinic.name }}</p>\n<p>{{ offer_code }}</p>")
    with pytest.raises(TemplateProblem, match=r"broken\.html:2: undefined variable: 'offer_code' is undefined"):
        _render(workspace, "emails/broken")


def test_template_syntax_error_names_file_and_line(workspace: Workspace) -> None:
    (workspace.templates_dir / "emails" / "bad.txt").write_text("ok\n{% if %}\n")
    (workspace.templates_dir / "emails" / "bad.html").write_text("<p>ok</p>")
    with pytest.raises(TemplateProblem) as caught:
        _render(workspace, "emails/bad")
    assert caught.value.line == 2 and caught.value.template.endswith("bad.txt")


def test_templates_are_sandboxed(workspace: Workspace) -> None:
    (workspace.templates_dir / "emails" / "evil.txt").write_text(
        "{% block subject %}s{% endblock %}{% block preheader %}p{% endblock %}"
        "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    )
    (workspace.templates_dir / "emails" / "evil.html").write_text("<p>x</p>")
    with pytest.raises(TemplateProblem, match=r"SecurityError|unsafe"):
        _render(workspace, "emails/evil")


def test_preview_eml_parses_back_into_text_then_html(workspace: Workspace, tmp_path: Path) -> None:
    files = write_preview(workspace, "emails/welcome", "pigmentation", "Ana", tmp_path / "out")
    message = email.message_from_bytes(files.eml.read_bytes(), policy=policy.default)
    assert message.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert "Reduces Hyperpigmentation" in message.get_body(("html",)).get_content()
    assert "Hi Ana, welcome" in message.get_body(("plain",)).get_content()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "sample.recipient@example.com" not in message["List-Unsubscribe"]
    # RFC 2369: the URLs stand in angle brackets as they are; an encoded-word there is no URL to a client
    raw = files.eml.read_bytes().decode("ascii")
    header = next(line for line in raw.splitlines() if line.startswith("List-Unsubscribe:"))
    assert header.startswith("List-Unsubscribe: <https://") and "=?" not in header
    assert files.html.read_text().count("%%") == 0


def test_environments_share_compiled_templates_and_an_edited_file_is_compiled_again(tmp_path: Path) -> None:
    """Every environment of the process takes a template's compiled code from one shared cache (the pages build
    one each), and a file edited between two environments renders its new text, of the same length too."""
    (tmp_path / "note.txt").write_text("Hello {{ name }}, version one.\n")
    compiled: list[str] = []
    first = build_environment(tmp_path)
    original = first.compile

    def counting(*args: object, **kwargs: object) -> object:
        compiled.append("compiled")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    assert first.get_template("note.txt").render(name="Ana") == "Hello Ana, version one.\n"
    second = build_environment(tmp_path)
    second.compile = counting  # type: ignore[method-assign]
    assert second.get_template("note.txt").render(name="Bo") == "Hello Bo, version one.\n"
    assert compiled == []  # taken from the shared cache, not compiled again

    (tmp_path / "note.txt").write_text("Hello {{ name }}, version two.\n")
    third = build_environment(tmp_path)
    assert third.get_template("note.txt").render(name="Cy") == "Hello Cy, version two.\n"
