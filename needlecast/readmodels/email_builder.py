"""The email builder's reads: an email's block document, the subjects it can be previewed with, and its
preview for one variant and arm, as the blocks stand (saved or not).

Contract:
- `builder_state(workspace, stem)` is what the builder opens for `emails/<stem>`: its document (the sidecar's;
  a starter for a new email), whether the email exists, and `hand_edited` (its files no longer are what the
  blocks generated: the template editor is where it is edited then). `NotFound` for a bad name; an email
  written by hand (no sidecar) is `by_hand`.
- `preview_subjects(workspace, name)`: the subjects an email can be previewed with: its own (key ""), and each
  A/B arm of each campaign step that sends it (key "campaign/step/arm").
- `block_preview(workspace, secret, stem, document, variant, subject_key)` renders the generated pair for
  `variant` with a sample recipient's values (`email_previews.Filled`); the email's images are shown from the
  workspace's files (data: addresses, which the console's preview frame may show) rather than the tracking
  host. `BlocksRejected` (per field) when the document has problems, `TemplateProblem` when it does not render.
- `render_blocks(workspace, stem, document, variants)` renders the pair for each variant (what the save checks).
- `built_from_blocks(workspace, name)`: whether an email has a block document.
The faces take the block document's model (`blocks`) and `in_words` (a template problem said for a page)
from here. Reads only; nothing is written.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import jinja2

from needlecast.campaign.context import CampaignContext
from needlecast.config import Workspace
from needlecast.content.loader import load_article, load_vocabulary_for
from needlecast.errors import NotFound
from needlecast.readmodels.email_previews import Filled, _sample_values
from needlecast.templating import blocks
from needlecast.templating.context import email_context, variant_concerns
from needlecast.templating.environment import build_environment
from needlecast.templating.problems import in_words
from needlecast.templating.render import RenderedEmail, render_email
from needlecast.templating.tokens import apply_substitutions
from needlecast.wording import placeholders_in_words

__all__ = ["blocks", "in_words"]  # with the functions below: what the faces use

IMAGES_DIR = "images"  # the workspace's images, served on the tracking host at /images/<name>
IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}


@dataclass(frozen=True)
class BuilderState:
    stem: str
    document: blocks.BlockDocument
    exists: bool  # the email's files are there
    by_hand: bool  # they are, and no block document made them
    hand_edited: bool  # a block document made them, and they were edited by hand since


@dataclass(frozen=True)
class SubjectChoice:
    key: str  # "" (the email's own) or "campaign/step/arm"
    label: str  # in words, for the page
    subject: str | None  # the subject's source (None: the email's own)
    preheader: str | None


def images_url(workspace: Workspace) -> str:
    """Where the tracking host serves the workspace's images."""
    return f"{workspace.settings.tracking.public_base_url.rstrip('/')}/{IMAGES_DIR}"


def check_stem(stem: str) -> str:
    """`stem` when it can name an email ("new" cannot: it is the builder's page for a new one)."""
    if not blocks.NAME.fullmatch(stem) or stem == "new":
        raise NotFound(f"no email '{stem}'", what="email", name=stem)
    return stem


def builder_state(workspace: Workspace, stem: str) -> BuilderState:
    """What the builder opens for `emails/<stem>` (see the module contract)."""
    check_stem(stem)
    name = f"emails/{stem}"
    html_path = workspace.templates_dir / f"{name}.html"
    text_path = workspace.templates_dir / f"{name}.txt"
    exists = html_path.is_file() and text_path.is_file()
    sidecar = blocks.sidecar_path(workspace.templates_dir, name)
    if not sidecar.is_file():
        return BuilderState(stem, blocks.starter_document(), exists, exists, False)
    from needlecast.yamlfile import parse_yaml

    data = parse_yaml(sidecar.read_text(encoding="utf-8")) or {}
    document = blocks.parse_document(data if isinstance(data, dict) else {})
    generated = data.get("generated") or {} if isinstance(data, dict) else {}
    edited = exists and (
        blocks.digest(html_path.read_text(encoding="utf-8")) != generated.get("html")
        or blocks.digest(text_path.read_text(encoding="utf-8")) != generated.get("text")
    )
    return BuilderState(stem, document, exists, False, bool(edited))


def preview_subjects(workspace: Workspace, name: str) -> list[SubjectChoice]:
    """The subjects `name` can be previewed with (see the module contract)."""
    choices = [SubjectChoice("", "The email's own subject", None, None)]
    ctx = CampaignContext.load(workspace)
    for campaign in ctx.campaigns.values():
        for step in campaign.steps:
            if step.template != name:
                continue
            for arm in step.arm_names:
                subject = step.subject_for(arm)
                if subject is None and not arm:
                    continue
                said = placeholders_in_words(subject) if subject else "the email's own subject"
                label = f"{campaign.name or campaign.id}, {f'arm {arm}' if arm else step.id}: {said}"
                choices.append(SubjectChoice(f"{campaign.id}/{step.id}/{arm}", label, subject, step.preheader))
    return choices


def render_blocks(
    workspace: Workspace,
    stem: str,
    document: blocks.BlockDocument,
    variants: tuple[str, ...] | None = None,
    choice: SubjectChoice | None = None,
) -> dict[str, RenderedEmail]:
    """The generated pair rendered for `variants` (default every one), with the workspace's layouts."""
    name = f"emails/{check_stem(stem)}"
    html, text = blocks.generate(document, images_url(workspace), stem)
    env = build_environment(workspace.templates_dir)
    env.loader = jinja2.ChoiceLoader(
        [jinja2.DictLoader({f"{name}.html": html, f"{name}.txt": text}), env.loader or jinja2.DictLoader({})]
    )
    vocabulary = load_vocabulary_for(workspace)
    article = load_article(workspace, vocabulary)
    subject = choice.subject if choice else None
    preheader = choice.preheader if choice else None
    rendered = {}
    for concern in variants or variant_concerns(vocabulary):
        context = email_context(article, vocabulary, workspace.settings.clinic, concern)
        rendered[concern] = render_email(env, name, context, subject=subject, preheader=preheader)
    return rendered


def block_preview(
    workspace: Workspace,
    secret: bytes,
    stem: str,
    document: blocks.BlockDocument,
    variant: str,
    subject_key: str = "",
) -> Filled:
    """One variant of the blocks as they stand, for the sample recipient (see the module contract)."""
    name = f"emails/{check_stem(stem)}"
    choice = next((c for c in preview_subjects(workspace, name) if c.key == subject_key), None)
    vocabulary = load_vocabulary_for(workspace)
    if variant not in variant_concerns(vocabulary):
        variant = variant_concerns(vocabulary)[-1]
    rendered = render_blocks(workspace, stem, document, (variant,), choice)[variant]
    subs = _sample_values(workspace, secret, "preview")
    filled = Filled(*(apply_substitutions(getattr(rendered, part), subs) for part in Filled.__dataclass_fields__))
    html = filled.html
    for block in document.blocks:
        if block.kind == "image":
            html = html.replace(f"{images_url(workspace)}/{block.image}", _data_address(workspace, block.image))
    return Filled(filled.subject, filled.preheader, html, filled.text)


def _data_address(workspace: Workspace, file: str) -> str:
    path = workspace.root / IMAGES_DIR / file
    kind = IMAGE_TYPES.get(Path(file).suffix.lstrip("."))
    if kind is None or not blocks.IMAGE_FILE.fullmatch(file) or not path.is_file():
        return ""
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def image_exists(workspace: Workspace, file: str) -> bool:
    """Whether `file` is an image of the workspace's `images/` folder."""
    return bool(blocks.IMAGE_FILE.fullmatch(file)) and (workspace.root / IMAGES_DIR / file).is_file()


def built_from_blocks(workspace: Workspace, name: str) -> bool:
    """Whether email `name` ("emails/offer") has a block document beside it."""
    return blocks.sidecar_path(workspace.templates_dir, name).is_file()


def variant_labels(workspace: Workspace) -> dict[str, str]:
    """Each content variant and the words for it ("acne": "Acne and scarring"), general last."""
    vocabulary = load_vocabulary_for(workspace)
    return {concern: vocabulary.label(concern) for concern in variant_concerns(vocabulary)}
