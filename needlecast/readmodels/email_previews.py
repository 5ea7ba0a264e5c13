"""Email previews as the console shows them: a campaign step's email for one variant and arm, and an email
template being edited, with a sample recipient's values filled in (first name "Ana", links signed for
nobody: contact id `SAMPLE_CONTACT_ID`).

Contract:
- `campaign_preview(workspace, secret, campaign_id, step, variant, arm)` picks the step (default the first),
  the variant (default and fallback `general`, the last) and the arm (default the first) the campaign has, and
  renders it; a template that does not render gives `error` (its words) instead of the email. `NotFound` for
  an unknown campaign or step.
- `template_names(workspace)` are the email templates; `template_source(workspace, name)` a template's two
  parts as written (`NotFound` for another name); `template_preview(workspace, secret, name, html, text,
  variant)` an edit rendered as it stands (saved or not), or `TemplateProblem` naming the part and line;
  `render_edited_template` renders an edit for every variant (what `actions.templates` checks before saving).
- `sample_subject` / `sample_subjects` / `sample_arm_subjects`: a campaign's subjects as the sample recipient
  reads them, for the pages that list subjects (the campaign page, the reports' A/B tables);
  `kept_sample_subjects` is `sample_subjects` kept (`readmodels.kept`) until a workspace file changes (the
  campaign page's every view rendered them again: the articles parsed, the templates compiled).
Reads only; nothing is sent or written.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import Campaign, Step
from needlecast.campaign.send.rendering import render_variant
from needlecast.campaign.send.rendering import step_variants as _step_variants
from needlecast.config import Workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import CampaignFileError, NotFound, TemplateProblem
from needlecast.readmodels.kept import KEPT
from needlecast.templating.context import variant_concerns
from needlecast.templating.environment import build_environment, email_templates
from needlecast.templating.preview import SAMPLE_CONTACT_ID
from needlecast.templating.recipient import recipient_values
from needlecast.templating.render import RenderedEmail
from needlecast.templating.tokens import apply_substitutions, substitutions_for

SAMPLE = "Ana, a sample recipient (first name filled in, links signed for nobody)"


def _sample_values(workspace: Workspace, secret: bytes, campaign_id: str) -> dict[str, str]:
    values = recipient_values(workspace.settings, secret, SAMPLE_CONTACT_ID, campaign_id, "Ana")
    return substitutions_for(values)


@dataclass(frozen=True)
class Filled:
    """A rendered email with the sample recipient's values filled in."""

    subject: str
    preheader: str
    html: str
    text: str


@dataclass(frozen=True)
class CampaignPreview:
    campaign: Campaign
    step: Step
    variant: str
    arm: str
    variants: tuple[str, ...]  # every variant the step has
    arms: list[str] = field(default_factory=list)  # every named arm of the step (empty: no A/B test)
    email: Filled | None = None  # None when it does not render: `error` says why
    error: str = ""


def campaign_preview(
    workspace: Workspace, secret: bytes, campaign_id: str, step_id: str | None, variant: str, arm: str
) -> CampaignPreview:
    """One step's email as a sample recipient gets it (see the module contract)."""
    ctx = CampaignContext.load(workspace)
    campaign = ctx.campaign(campaign_id)
    step = campaign.step(step_id) if step_id else campaign.steps[0]
    variants = tuple(_step_variants(ctx, step))
    variant = variant if variant in variants else variants[-1]
    arms = [a for a in step.arm_names if a]
    if arm not in (arms or [""]):
        arm = arms[0] if arms else ""
    try:
        rendered = render_variant(ctx, campaign, step, variant, arm)
    except CampaignFileError as err:
        return CampaignPreview(campaign, step, variant, arm, variants, arms, None, str(err))
    subs = _sample_values(workspace, secret, campaign.id)
    email = Filled(*(apply_substitutions(getattr(rendered, part), subs) for part in Filled.__dataclass_fields__))
    return CampaignPreview(campaign, step, variant, arm, variants, arms, email)


def render_edited_template(
    workspace: Workspace, name: str, html: str, text: str, variants: tuple[str, ...] | None = None
) -> dict[str, RenderedEmail]:
    """An edited template (not yet written) rendered for `variants` (default every one), with its layouts;
    `TemplateProblem` naming the part and line at the first error."""
    import shutil
    import tempfile

    from needlecast.content.loader import load_article
    from needlecast.templating.context import email_context
    from needlecast.templating.render import render_email

    vocabulary = load_vocabulary_for(workspace)
    article = load_article(workspace, vocabulary)
    rendered: dict[str, RenderedEmail] = {}
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "templates"
        shutil.copytree(workspace.templates_dir, copy)
        (copy / f"{name}.html").write_text(html, encoding="utf-8")
        (copy / f"{name}.txt").write_text(text, encoding="utf-8")
        env = build_environment(copy)
        for concern in variants or variant_concerns(vocabulary):
            try:
                context = email_context(article, vocabulary, workspace.settings.clinic, concern)
                rendered[concern] = render_email(env, name, context)
            except TemplateProblem as err:
                # Name the file as the workspace has it (emails/welcome.html, layouts/base.html), not the copy.
                where = Path(err.template or f"{name}.html")
                shown = where.relative_to(copy) if where.is_relative_to(copy) else Path(Path(name).parent, where.name)
                raise TemplateProblem(str(err).split(": ", 1)[-1], template=str(shown), line=err.line) from err
    return rendered


def template_names(workspace: Workspace) -> list[str]:
    """The workspace's email templates, by name."""
    return email_templates(workspace.templates_dir)


def template_variants(workspace: Workspace) -> tuple[str, ...]:
    """The content variants a template is rendered for: each concern, then `general`."""
    return variant_concerns(load_vocabulary_for(workspace))


def template_source(workspace: Workspace, name: str) -> tuple[str, str]:
    """The template's HTML and text parts as written; `NotFound` naming `name` for another name."""
    if name not in template_names(workspace):
        raise NotFound(f"no email template '{name}'", what="email template", name=name)
    html = (workspace.templates_dir / f"{name}.html").read_text(encoding="utf-8")
    text = (workspace.templates_dir / f"{name}.txt").read_text(encoding="utf-8")
    return html, text


def template_preview(workspace: Workspace, secret: bytes, name: str, html: str, text: str, variant: str) -> Filled:
    """An edited template rendered for `variant` as it stands (see the module contract)."""
    rendered = render_edited_template(workspace, name, html, text, (variant,))[variant]
    subs = _sample_values(workspace, secret, "preview")
    return Filled(*(apply_substitutions(getattr(rendered, part), subs) for part in Filled.__dataclass_fields__))


def sample_subject(ctx: CampaignContext, campaign: Campaign, step: Step, arm: str, secret: bytes = b"") -> str:
    """The subject of `step`'s `arm` as the sample recipient reads it (the general variant, the sample's first
    name filled in): what the console's campaign page and reports show instead of the subject's source. A
    subject that does not render is said as its source in words ("[first name], ...")."""
    from needlecast.wording import placeholders_in_words

    try:
        rendered = render_variant(ctx, campaign, step, _step_variants(ctx, step)[-1], arm)
    except CampaignFileError:
        source = step.subject_for(arm)
        return placeholders_in_words(source) if source else ""
    return apply_substitutions(rendered.subject, _sample_values(ctx.workspace, secret, campaign.id))


def sample_subjects(workspace: Workspace, secret: bytes, campaign_id: str) -> dict[str, str]:
    """Each step's and arm's subject for the sample recipient (`sample_subject`), by "step/arm" ("guide/A";
    "guide/" for a step without an A/B test). `NotFound` for an unknown campaign."""
    ctx = CampaignContext.load(workspace)
    campaign = ctx.campaign(campaign_id)
    return {
        f"{step.id}/{arm}": sample_subject(ctx, campaign, step, arm, secret)
        for step in campaign.steps
        for arm in step.arm_names
    }


def kept_sample_subjects(workspace: Workspace, secret: bytes, campaign_id: str) -> dict[str, str]:
    """`sample_subjects`, kept until the campaign, content, template or settings files change (they are
    rendered from nothing else: the sample recipient's values are fixed). Shared: read-only."""
    from needlecast.readmodels.plans import workspace_marks

    name = ("subjects", str(workspace.root), campaign_id, hashlib.sha256(secret).hexdigest())
    return KEPT.get(name, workspace_marks(workspace), lambda: sample_subjects(workspace, secret, campaign_id))[0]


def sample_arm_subjects(ctx: CampaignContext, secret: bytes = b"") -> dict[tuple[str, str, str], str]:
    """(campaign, step, arm) -> the arm's subject for the sample recipient, for every A/B arm (the reports'
    A/B tables show these, not the subject's source)."""
    return {
        (campaign.id, step.id, arm.name): sample_subject(ctx, campaign, step, arm.name, secret)
        for campaign in ctx.campaigns.values()
        for step in campaign.steps
        for arm in step.arms
    }
