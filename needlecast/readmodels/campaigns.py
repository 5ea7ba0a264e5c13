"""Campaign read models: the overview (state, counts, next send, A/B tests), the outcome in words, a campaign's
page and a send's reach, as the console, the API and the command line show them (the plan preview is
`readmodels.plans`).

Contract:
- `campaign_list(engine, workspace, now)` is one `Overview` per campaign (by id; a file that does not load is
  listed with its problem); `campaign_detail(engine, workspace, id, now)` is one campaign's `CampaignDetail`
  (its overview, what happened to its emails in words), or `NotFound` naming the campaigns there are.
- `campaign_page(engine, workspace, id, days)` is everything one campaign's console page shows (definition,
  detail, plan (`readmodels.plans`, its days on the clinic's clock), lint findings, stale sign-off files,
  test addresses); `campaign_form(workspace, id)` the campaign form's choices and the file's document.
- `reach(engine, workspace, id, action, ...)` says in words what a confirmed action does, counted after every
  rule (consent, suppression, quiet hours, the cap), before it is done.
Every function only reads; ids, counts and times only (no personal data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from needlecast.audience.frame_cache import FrameCache
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.checks import campaign_findings
from needlecast.campaign.definition.editor import document_of
from needlecast.campaign.definition.loader import ID_PATTERN as ID_PATTERN  # what a campaign id looks like
from needlecast.campaign.definition.model import BROADCAST, Campaign
from needlecast.campaign.definition.signoff import stale_files
from needlecast.campaign.outcome import Outcome, in_words, outcome_of, reach_of
from needlecast.campaign.overview import DRAFT as DRAFT  # the state of a campaign that is still a draft
from needlecast.campaign.overview import LedgerCounts, Overview, campaign_overview, campaign_overviews, ledger_counts
from needlecast.campaign.plan.preview import build_plans
from needlecast.campaign.send import guardrails
from needlecast.campaign.send.state import find_state
from needlecast.config import Workspace, test_recipients
from needlecast.findings import Finding
from needlecast.lint import lint_workspace
from needlecast.readmodels.kept import KEPT, Shown
from needlecast.readmodels.plans import (
    CampaignPlan,
    PlanPreview,
    kept_context,
    plan_preview,
    plan_shown,
    workspace_marks,
)
from needlecast.store.delivery import delivery_store
from needlecast.store.reach import queued_not_mailable
from needlecast.store.schema import deliveries
from needlecast.templating.context import variant_concerns
from needlecast.templating.environment import campaign_templates


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def campaign_list(engine: Engine, workspace: Workspace, now: datetime | None = None) -> list[Overview]:
    """Every campaign's overview, by id (see the module contract)."""
    ctx = CampaignContext.load(workspace)
    with engine.connect() as conn:
        return campaign_overviews(ctx, conn, _now(now))


def kept_campaign_list(engine: Engine, workspace: Workspace) -> Shown[list[Overview]]:
    """`campaign_list` as the web app keeps it (`home.campaigns_ready`): waited for only the first time, then
    shown at once (its counts as of `computed_at`) and read again off the request after a change."""
    from needlecast.readmodels.home import campaigns_ready

    shown = campaigns_ready(engine, workspace, _now(None))
    overviews = shown.figure.overviews if shown.figure is not None else []
    return Shown(overviews, shown.computed_at, shown.updating)


@dataclass(frozen=True)
class CampaignDetail:
    """One campaign as its page shows it: the overview, and what happened to its emails in words."""

    overview: Overview
    outcome: Outcome
    said: str  # the outcome as one paragraph, times on the campaign's clock
    skipped: list[tuple[int, str]]  # (count, reason in words), most first as the ledger gives them
    counted_at: datetime | None = None  # when its counts were counted (UTC): the web app keeps them a few seconds
    counts_updating: bool = False  # counts older than the ledger shown while they are counted again


COUNTS_MAX_AGE = 3.0  # seconds a campaign's kept counts are shown before they are counted again (a send moves)


def campaign_detail(
    engine: Engine,
    workspace: Workspace,
    campaign_id: str,
    now: datetime | None = None,
    *,
    context: CampaignContext | None = None,
    kept: bool = False,
) -> CampaignDetail:
    """One campaign (see the module contract); `NotFound` for an unknown id. `context`: the workspace's files
    already loaded (default: loaded now). `kept` (the web app's pages): its ledger counts are kept
    (`readmodels.kept`, at most `COUNTS_MAX_AGE` seconds, or until the ledger gains rows or its state changes,
    then counted again off the request while the kept ones are shown, with `counted_at`); its state, queue and
    next send are read now. Never `kept` for what a confirmation counts."""
    ctx = context or (kept_context(workspace) if kept else CampaignContext.load(workspace))
    counted, counted_at, updating = None, None, False
    if kept and campaign_id in ctx.campaigns:
        shown = _kept_counts(engine, campaign_id)
        counted, counted_at, updating = shown.figure, shown.computed_at, shown.updating
    with engine.connect() as conn:
        overview = campaign_overview(ctx, conn, campaign_id, _now(now), counted)
    outcome = outcome_of(overview.counts, overview.skipped, overview.queued_by_due)
    campaign = ctx.campaigns.get(campaign_id)
    zone = campaign.time_zone if campaign else workspace.settings.clinic.time_zone
    skipped = [(count, in_words(reason)) for reason, count in overview.skipped.items()]
    return CampaignDetail(overview, outcome, outcome.sentence(zone), skipped, counted_at, updating)


def _kept_counts(engine: Engine, campaign_id: str) -> Shown[LedgerCounts]:
    """A campaign's ledger counts, kept: waited for only the first time (one GROUP BY), then shown at once."""
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(deliveries.c.id))).scalar()
        state = find_state(conn, campaign_id) or {}
    inputs = (newest, tuple(sorted((key, str(value)) for key, value in state.items())))

    def count_now() -> LedgerCounts:
        with engine.connect() as conn:
            return ledger_counts(conn, campaign_id)

    name = ("ledger counts", str(engine.url), campaign_id)
    return KEPT.ready(name, inputs, count_now, max_age=COUNTS_MAX_AGE)


def campaign_overview_of(engine: Engine, workspace: Workspace, campaign_id: str) -> Overview:
    """One campaign's overview now; `NotFound` for an unknown id."""
    ctx = CampaignContext.load(workspace)
    with engine.connect() as conn:
        return campaign_overview(ctx, conn, campaign_id, datetime.now(UTC))


def reach(
    engine: Engine, workspace: Workspace, campaign_id: str, action: str, *, frames: FrameCache | None = None
) -> str:
    """What `action` (schedule, send-now, pause, resume, cancel) would do to `campaign_id` now, in words,
    counted after every rule; `NotFound` for an unknown campaign."""
    campaign = CampaignContext.load(workspace).campaign(campaign_id)
    with engine.connect() as conn:
        queued = delivery_store(conn).queued_count(conn, campaign.id)
    if action in ("schedule", "send-now"):
        send_now = action == "send-now"
        days = 0 if send_now and campaign.kind != BROADCAST else 3650
        now = datetime.now(UTC)
        plan = build_plans(workspace, engine, campaign.id, days, now, audience=frames, send_now=send_now).plans[0]
        said = reach_of(plan, now, send_now=send_now).sentence(campaign.time_zone, send_now=send_now)
        if plan.new_enrolments:
            said += f" It enrols {len(plan.new_enrolments)} new contact(s)."
        if campaign.draft:
            said = "This is a draft: it becomes live now. " + said
        return said + (f" {queued} email(s) already waiting go too." if queued else "")
    if action == "pause":
        return f"Pausing holds {queued} queued email(s) until the campaign is resumed."
    if action == "resume":
        with engine.connect() as conn:
            figures = guardrails.paused_figures(conn, campaign.id)  # why the guard paused it, shown first
            refused = queued_not_mailable(conn, campaign.id)
        said = f"Resuming sends the {queued - sum(refused.values())} queued email(s) as they fall due."
        if refused:
            said += f" Not sent: {'; '.join(f'{n} {in_words(why)}' for why, n in sorted(refused.items()))}."
        return f"This campaign {figures} {said}" if figures else said
    return f"Cancelling marks {queued} queued email(s) as cancelled: they are never sent. This cannot be undone."


def reason_in_words(reason: str) -> str:
    """A skip, exclusion or deferral reason (`no_consent`, `quiet_hours`...) as the pages say it."""
    return in_words(reason)


def campaign_report(engine: Engine, workspace: Workspace, campaign_id: str) -> dict[str, list[dict[str, Any]]]:
    """A campaign's report tables as records (`funnel`, `ab_test`, `health`, `conversions`; a journey's and a
    sequence's also `journey_funnel` and `journey_paths`), times on the clinic's clock; `NotFound` for an
    unknown campaign."""
    from needlecast.reports import load_report
    from needlecast.reports.export import records

    ctx = CampaignContext.load(workspace)
    ctx.campaign(campaign_id)
    data = load_report(
        engine,
        campaign_id,
        subjects=ctx.arm_subjects(),
        attribution=workspace.settings.attribution,
        time_zone=workspace.settings.clinic.time_zone,
    )
    return {
        "funnel": records(data.funnel),
        "ab_test": records(data.ab),
        "health": records(data.health),
        "conversions": records(data.conversions),
        **_journey_records(engine, ctx.campaign(campaign_id), data.funnel),
    }


def _journey_records(engine: Engine, campaign: Campaign, funnel: Any) -> dict[str, list[dict[str, Any]]]:
    """A journey's or a sequence's funnel per node and paths as records (none for a broadcast)."""
    from needlecast.readmodels.journey_figures import journey_tables
    from needlecast.reports.export import records

    if campaign.journey is None:
        return {}
    per_node, paths = journey_tables(engine, campaign, funnel)
    return {"journey_funnel": records(per_node), "journey_paths": records(paths)}


@dataclass(frozen=True)
class CampaignPage:
    """One campaign's page: its definition, where it stands, its plan and what the checks found."""

    campaign: Campaign
    detail: CampaignDetail
    plan: CampaignPlan | None  # None while its first plan is worked out (the web app: `plans.plan_shown`)
    findings: list[Finding] | None  # lint of its templates and articles (config warnings left out) and of its
    # file; None while the web app works the checks out the first time (`readmodels.kept`)
    errors: int  # findings that block it
    stale: list[str]  # files changed since the claims sign-off
    seeds: tuple[str, ...]  # where a test send goes (`[console] test_recipients`)
    planned_at: datetime | None = None  # when the plan was planned (UTC; the web app keeps it, see `plans`)
    plan_updating: bool = False  # the plan shown predates a change or is a minute old: planned again meanwhile


def campaign_page(
    engine: Engine, workspace: Workspace, campaign_id: str, days: int, *, frames: FrameCache | None = None
) -> CampaignPage:
    """Everything one campaign's page shows; `NotFound` for an unknown id. With the web app's `frames`, the
    workspace's files (parsing every article takes a while) and the content checks are kept until a file
    changes (never waited for: `findings` None while they are worked out), the ledger counts a few seconds
    (`campaign_detail`), and the plan as `plans.plan_shown` keeps it: never waited for (None while its first
    plan is worked out; an older one, `plan_updating`, while it is planned again)."""
    ctx = CampaignContext.load(workspace) if frames is None else kept_context(workspace)
    campaign = ctx.campaign(campaign_id)
    detail = campaign_detail(engine, workspace, campaign.id, context=ctx, kept=frames is not None)
    zone = workspace.settings.clinic.time_zone
    if frames is None:
        preview: PlanPreview | None = plan_preview(engine, workspace, campaign.id, days, time_zone=zone)
        updating = False
    else:
        shown = plan_shown(engine, workspace, campaign.id, days, frames, zone)
        preview, updating = shown.figure, shown.updating
    templates = sorted({s.template for s in campaign.steps})
    articles = ctx.article_ids_of(campaign)

    def lint_now() -> list[Finding]:
        return lint_workspace(workspace, templates=templates, articles=articles)

    if frames is None:
        linted: list[Finding] | None = lint_now()
    else:  # the web app: the checks read only files, so they are kept until a file changes, never waited for
        name = ("lint", str(workspace.root), tuple(templates), tuple(articles))
        linted = KEPT.look(name, workspace_marks(workspace), lint_now).figure
    findings, errors = None, 0
    if linted is not None:
        kept = [f for f in linted if not f.rule.startswith("config-") or f.severity == "error"]
        findings = sorted(set(kept + campaign_findings(ctx, campaign)))
        errors = sum(f.severity == "error" for f in findings)
    return CampaignPage(
        campaign,
        detail,
        preview.campaigns[0] if preview is not None else None,
        findings,
        errors,
        stale_files(ctx, campaign),
        tuple(test_recipients(workspace)),
        preview.planned_at if preview is not None else None,
        updating,
    )


# Fixes whose command-line form names a command, said as the console's pages say them (by rule).
_FIX_IN_WORDS = {
    "content-tag-review": "read the section on the Content page and confirm or correct the concerns it is about",
    "content-unparsable": "give the article headings and 'Title: body' benefit paragraphs",
    "config-placeholder": "an administrator sets it in the workspace settings",
}
_COMMAND = re.compile(r"\s*\(?`needlecast [^`]*`\)?")


def file_in_words(file: str) -> str:
    """A finding's file as the console names it: a campaign, the content tags or the workspace settings by
    what they are, a template or an article by its path in the workspace (never a path of the server)."""
    name = file.rsplit("/", 1)[-1]
    if file.startswith("campaigns/") and name.endswith((".yaml", ".yml")):
        return "campaign " + name.rsplit(".", 1)[0]
    if name in ("tags.yaml", "tags.yml"):
        return "the content tags"
    if name.endswith(".toml"):
        return "the workspace settings"
    if name.endswith((".yaml", ".yml")):
        return name.rsplit(".", 1)[0].replace("_", " ")
    return file


def finding_in_words(finding: Finding) -> Finding:
    """`finding` as the console shows it: its file named in words (`file_in_words`), its message without the
    file a campaign-file error starts with, and its fix without a command (in words for the rules whose fix
    is one); the command line prints the finding as it is."""
    message = finding.message
    if finding.rule == "campaign-file" and ": field '" in message:
        message = "field '" + message.split(": field '", 1)[1].split(". Fix: ", 1)[0]
    fix = _FIX_IN_WORDS.get(finding.rule) or _COMMAND.sub("", finding.fix).strip()
    return replace(finding, file=file_in_words(finding.file), message=message, fix=fix)


def campaign_name(workspace: Workspace, campaign_id: str) -> str:
    """The campaign's name; `NotFound` (naming the campaigns there are) for an unknown id."""
    return CampaignContext.load(workspace).campaign(campaign_id).name


@dataclass(frozen=True)
class CampaignForm:
    """What the campaign form offers, and the file's document when it edits one."""

    document: dict[str, Any]  # the campaign file as written (empty for a new campaign)
    segments: list[str]
    templates: list[str]  # the emails a step may use (transactional ones left out)
    variants: tuple[str, ...]  # each concern, then general
    articles: list[str]
    default_article: str


def campaign_form(workspace: Workspace, campaign_id: str | None = None) -> CampaignForm:
    """The form's choices, with `campaign_id`'s document (`NotFound` for an unknown id)."""
    ctx = CampaignContext.load(workspace)
    document = document_of(ctx.campaign(campaign_id)) if campaign_id else {}
    return CampaignForm(
        document,
        sorted(ctx.segments),
        campaign_templates(workspace.templates_dir),
        variant_concerns(ctx.vocabulary),
        list(ctx.article_ids),
        ctx.library.default_id,
    )
