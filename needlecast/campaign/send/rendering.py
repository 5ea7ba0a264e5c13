"""A campaign's emails rendered once per (step, variant, arm): what plan, preview and send all use.

Contract: `render_campaign(ctx, campaign)` renders every step for every variant it can send and every A/B
arm, and returns the renderings by (step id, variant, arm). A step that does not render raises
`CampaignFileError` naming the campaign file, the step's field (`steps[0].template`, `steps[0].subject`,
`steps[0].ab.subjects[1]`, `steps[0].preheader`), and the template problem with its file and line, so a
send fails before it enqueues anything. Renderings hold recipient tokens, never a person's values.
`Sending` is a campaign as the dispatcher needs it (ids, addresses, renderings, recipients' values): the
dispatcher reads campaigns through it alone.
"""

from __future__ import annotations

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import Campaign, Step
from needlecast.errors import CampaignFileError, ContentError, TemplateProblem
from needlecast.templating.context import email_context, variant_concerns
from needlecast.templating.recipient import RecipientValues
from needlecast.templating.render import RenderedEmail, render_email

RenderKey = tuple[str, str, str]  # (step id, variant, arm)


def step_variants(ctx: CampaignContext, step: Step) -> tuple[str, ...]:
    """The content variants a step can send: its own list, or every concern and general."""
    return step.variants or variant_concerns(ctx.vocabulary)


def render_variant(ctx: CampaignContext, campaign: Campaign, step: Step, variant: str, arm: str) -> RenderedEmail:
    """One step in one variant and arm; `CampaignFileError` naming the field when it does not render."""
    try:
        article = ctx.article_for(step)
    except ContentError as err:
        raise CampaignFileError(
            str(campaign.path),
            f"{step.field}.article",
            f"uses an article that cannot be read: {err}",
            "fix the article (`needlecast content list` shows what is expected) or name another",
            campaign_id=campaign.id,
        ) from err
    context = email_context(article, ctx.vocabulary, ctx.workspace.settings.clinic, variant, ctx.sections_for(step))
    try:
        return render_email(
            ctx.templates, step.template, context, subject=step.subject_for(arm), preheader=step.preheader
        )
    except TemplateProblem as err:
        raise CampaignFileError(
            str(campaign.path),
            _field_of(step, arm, err),
            f"does not render for the {variant} variant{f' (arm {arm})' if arm else ''}: {err}",
            "fix the template or the text at that line (`needlecast lint` lists every problem)",
            campaign_id=campaign.id,
        ) from err


def _field_of(step: Step, arm: str, err: TemplateProblem) -> str:
    where = err.template or ""
    if where.endswith(": subject"):
        if arm and step.arms:
            return f"{step.field}.ab.subjects[{[a.name for a in step.arms].index(arm)}]"
        return f"{step.field}.subject"
    if where.endswith(": preheader"):
        return f"{step.field}.preheader"
    return f"{step.field}.template"


def render_campaign(
    ctx: CampaignContext, campaign: Campaign, steps: tuple[Step, ...] | None = None
) -> dict[RenderKey, RenderedEmail]:
    """Every (step, variant, arm) of `steps` (default: all of the campaign's), rendered."""
    renders: dict[RenderKey, RenderedEmail] = {}
    for step in steps if steps is not None else campaign.steps:
        for variant in step_variants(ctx, step):
            for arm in step.arm_names:
                renders[(step.id, variant, arm)] = render_variant(ctx, campaign, step, variant, arm)
    return renders


class Sending:
    """One campaign as the dispatcher sends it: its id and segment, the sender's addresses, its recipients'
    values, and its renderings by (step, variant, arm), made once each (taken from `prerendered`, renderings
    made before enqueueing, or rendered when first asked) with their links spelled out up to the person's
    token (`RecipientValues.with_links`: each recipient's values then carry the token alone)."""

    def __init__(
        self,
        ctx: CampaignContext,
        campaign: Campaign,
        secret: bytes,
        prerendered: dict[RenderKey, RenderedEmail] | None = None,
    ) -> None:
        clinic = ctx.workspace.settings.clinic
        self.campaign_id = campaign.id
        self.segment = campaign.segment
        self.sender_email = campaign.sender_email or clinic.sender_email
        self.sender_name = campaign.sender_name or clinic.sender_name
        self.reply_to = campaign.reply_to or clinic.reply_to
        self.time_zone = campaign.time_zone  # the zone of recipients without one of their own
        self.values = RecipientValues(ctx.workspace.settings, secret, campaign.id)
        self._ctx = ctx
        self._campaign = campaign
        self._prerendered = prerendered or {}
        self._renders: dict[RenderKey, RenderedEmail] = {}

    def rendering(self, step_id: str, variant: str, arm: str) -> RenderedEmail:
        """The step's rendering for this variant and arm, links spelled out (`CampaignFileError` when it
        does not render)."""
        key = (step_id, variant, arm)
        rendered = self._renders.get(key)
        if rendered is None:
            made = self._prerendered.get(key)
            if made is None:
                made = render_variant(self._ctx, self._campaign, self._campaign.step(step_id), variant, arm)
            rendered = self._renders[key] = self.values.with_links(made)
        return rendered
