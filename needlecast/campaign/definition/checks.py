"""Lint for campaign files: their own subject lines and preheaders, their steps' renderings, broken files.

Contract: `campaign_findings(ctx, campaign)` checks what a campaign file adds to its templates: every step
`subject`, A/B `subjects` entry and `preheader` for risky claims (at the file's line), and, rendered for
every variant and arm, for an empty subject or one mostly in capitals, a health concern named in it, a subject
over 70 characters or with a trigger phrase (`needlecast.deliverability`), and SpamAssassin's score of each
rendering the file's own subject or preheader changes (at the step's line); a step that does
not render is a `campaign-render` error. `workspace_findings(workspace)` is everything `needlecast lint`
reports: the content, templates and config (`needlecast.lint`), every campaign's findings, and each campaign
file that does not load (`campaign-file`).
"""

from __future__ import annotations

import re
from pathlib import Path

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.send.rendering import render_variant, step_variants
from needlecast.config import Workspace
from needlecast.content.claims import ERROR
from needlecast.deliverability import subject_line_findings
from needlecast.errors import CampaignFileError, ContentError
from needlecast.lint import Finding, claim_findings, lint_workspace, relative, scored_findings, subject_findings
from needlecast.templating.preview import sample_eml


def _line_of(path: Path, text: str, after: int = 0) -> int:
    """The 1-based line of the first occurrence of `text` in `path` at or after line `after` (else 1)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 1
    for number, line in enumerate(lines, start=1):
        if number >= after and text in line:
            return number
    return 1


def _step_line(path: Path, step_id: str) -> int:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 1
    pattern = re.compile(rf"^\s*-?\s*\{{?\s*id:\s*['\"]?{re.escape(step_id)}['\"]?\b")
    return next((n for n, line in enumerate(lines, start=1) if pattern.search(line)), 1)


def campaign_findings(ctx: CampaignContext, campaign: Campaign) -> list[Finding]:
    """The campaign file's own findings (see the module contract)."""
    workspace = ctx.workspace
    rel = relative(workspace, campaign.path)
    found: list[Finding] = []
    messages: dict[tuple[str, str], bytes] = {}
    lines: dict[tuple[str, str], int] = {}
    for step in campaign.steps:
        start = _step_line(campaign.path, step.id)
        texts = [step.subject, step.preheader, *(arm.subject for arm in step.arms)]
        for text in texts:
            if text and text.strip():
                found += claim_findings(rel, text, _line_of(campaign.path, text.strip().splitlines()[0], start))
        for variant in step_variants(ctx, step):
            for arm in step.arm_names:
                try:
                    rendered = render_variant(ctx, campaign, step, variant, arm)
                except CampaignFileError as err:
                    found.append(
                        Finding(rel, start, "campaign-render", ERROR, str(err), "fix the template or the step's text")
                    )
                    continue
                # Only what the file sets: the template's own blocks are `needlecast.lint`'s to check.
                subject_source = step.subject_for(arm)
                found += subject_findings(
                    rendered.subject if subject_source is not None else None,
                    rendered.preheader if step.preheader is not None else None,
                    file=rel,
                    subject_line=_line_of(campaign.path, (subject_source or "\n").splitlines()[0], start),
                    preheader_line=_line_of(campaign.path, (step.preheader or "\n").splitlines()[0], start),
                    vocabulary=ctx.vocabulary,
                )
                if subject_source is None and step.preheader is None:
                    continue  # the template's own rendering, which `needlecast.lint` checks and scores
                subject_line = _line_of(campaign.path, (subject_source or "\n").splitlines()[0], start)
                if subject_source is not None:
                    found += subject_line_findings(rendered.subject, rel, subject_line)
                key = (rel, f"{step.template} in step {step.id}, {variant}, arm {arm}")
                messages[key], lines[key] = sample_eml(workspace, rendered), start
    return sorted(set(found + scored_findings(workspace, messages, lines)))


def workspace_findings(workspace: Workspace) -> list[Finding]:
    """Every finding `needlecast lint` reports (see the module contract)."""
    found = lint_workspace(workspace)
    try:
        ctx = CampaignContext.load(workspace)
    except ContentError:
        return found  # the article's problem is a finding already; campaigns render from it
    for problem in ctx.problems:
        found.append(
            Finding(relative(workspace, Path(problem.path)), 1, "campaign-file", ERROR, str(problem), problem.fix)
        )
    for campaign in ctx.campaigns.values():
        found += campaign_findings(ctx, campaign)
    return sorted(set(found))
