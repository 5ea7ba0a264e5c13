"""The claims gate: a campaign whose emails have error findings sends only with a recorded sign-off."""

from __future__ import annotations

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.checks import campaign_findings
from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.definition.signoff import stale_files
from needlecast.errors import CampaignBlocked
from needlecast.lint import Finding, lint_workspace


def blocking_findings(ctx: CampaignContext, campaign: Campaign) -> list[Finding]:
    """Error findings in the config, the campaign's own articles and templates, and its own file."""
    templates = sorted({step.template for step in campaign.steps})
    articles = ctx.article_ids_of(campaign)
    found = [
        *lint_workspace(ctx.workspace, templates=templates, articles=articles),
        *campaign_findings(ctx, campaign),
    ]
    return [f for f in found if f.severity == "error"]


def ensure_sendable(ctx: CampaignContext, campaign: Campaign, *, doing: str = "sent") -> None:
    """Raise `CampaignBlocked` when lint finds errors and the campaign file records no sign-off that still
    covers what it reviewed (a file changed since is named); `doing` says what is refused ("sent",
    "scheduled")."""
    stale = stale_files(ctx, campaign)
    if campaign.signoff is not None and not stale:
        return
    findings = blocking_findings(ctx, campaign)
    if findings:
        first = findings[0]
        why = (
            f"the sign-off of {campaign.signoff.date} predates a change to {', '.join(stale)}; review it again"
            if campaign.signoff is not None
            else f"record a review in {campaign.path.name}: signoff: {{reviewer: NAME, date: YYYY-MM-DD, note: "
            "WHAT WAS ACCEPTED}"
        )
        raise CampaignBlocked(
            f"campaign '{campaign.id}' is not {doing}: `needlecast lint` reports {len(findings)} error(s), e.g. "
            f"{first.file}:{first.line} {first.rule}. Fix them, or {why}"
        )
