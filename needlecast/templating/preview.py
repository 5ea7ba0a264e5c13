"""`needlecast preview`: one email rendered for a sample recipient, written as .html, .txt and .eml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from needlecast.config import Workspace, signing_secret
from needlecast.content.loader import load_library_for, load_vocabulary_for
from needlecast.templating.context import email_context
from needlecast.templating.eml import build_eml
from needlecast.templating.environment import build_environment
from needlecast.templating.recipient import list_unsubscribe_headers, recipient_values
from needlecast.templating.render import RenderedEmail, render_email
from needlecast.templating.tokens import apply_substitutions, substitutions_for

SAMPLE_ADDRESS = "sample.recipient@example.com"
SAMPLE_CONTACT_ID = 0


@dataclass(frozen=True)
class PreviewFiles:
    html: Path
    text: Path
    eml: Path
    subject: str


def write_preview(
    workspace: Workspace,
    template: str,
    concern: str,
    first_name: str | None,
    out_dir: Path,
    *,
    rendered: RenderedEmail | None = None,
    name: str = "",
    article: str = "",
) -> PreviewFiles:
    """Render `template` for `concern` with a sample recipient's values filled in; return the paths.

    `rendered`: a rendering made already (a campaign step's, with its own subject); `name`: the file stem
    (default: the template, the article when one is named, and the concern); `article`: the article's id
    (default: `[content] article`)."""
    settings = workspace.settings
    if rendered is None:
        vocabulary = load_vocabulary_for(workspace)
        library = load_library_for(workspace, vocabulary)
        source = library.article(article) if article else library.default
        env = build_environment(workspace.templates_dir)
        rendered = render_email(env, template, email_context(source, vocabulary, settings.clinic, concern))
    values = recipient_values(settings, signing_secret(required=False), SAMPLE_CONTACT_ID, "preview", first_name)
    subs = substitutions_for(values)

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or ".".join(p for p in (template.replace("/", "_"), article, concern) if p)
    html_path, text_path, eml_path = (out_dir / f"{stem}{ext}" for ext in (".html", ".txt", ".eml"))
    html_path.write_text(apply_substitutions(rendered.html, subs), encoding="utf-8")
    text_path.write_text(apply_substitutions(rendered.text, subs), encoding="utf-8")
    eml_path.write_bytes(sample_eml(workspace, rendered, first_name))
    return PreviewFiles(html_path, text_path, eml_path, apply_substitutions(rendered.subject, subs))


def sample_eml(workspace: Workspace, rendered: RenderedEmail, first_name: str | None = None) -> bytes:
    """`rendered` as the sample recipient's .eml (their signed links and List-Unsubscribe headers filled in):
    what `needlecast preview` writes and what the pre-send spam check scores."""
    settings = workspace.settings
    values = recipient_values(settings, signing_secret(required=False), SAMPLE_CONTACT_ID, "preview", first_name)
    return build_eml(
        rendered,
        substitutions_for(values),
        sender=(settings.clinic.sender_name, settings.clinic.sender_email),
        recipient=SAMPLE_ADDRESS,
        reply_to=settings.clinic.reply_to,
        headers=list_unsubscribe_headers(settings, values["unsubscribe_url"]),
    )
