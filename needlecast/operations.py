"""The changes people make, whichever face they use (console, API, command line): checked, done, audited.

Contract: every function here takes the acting `Actor`, raises `PermissionDenied` unless the actor may do
it (`accounts.roles.require`), does the change with the same library call the other faces use, and writes
one audit entry in the same transaction (or, for file changes, right after the file is written). Nothing
here holds logic the library lacks: it is the one place where "who may" and "who did" are decided.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from needlecast import ledger
from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.audience.contacts import get_contact
from needlecast.audience.importer import ImportSummary, Progress, import_file
from needlecast.audience.suppression import erase, suppress
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.editor import record_signoff as write_signoff
from needlecast.campaign.editor import release_draft as write_release
from needlecast.campaign.editor import save_document
from needlecast.campaign.gate import ensure_sendable
from needlecast.campaign.model import BROADCAST, Campaign
from needlecast.campaign.rendering import render_variant, step_variants
from needlecast.campaign.scheduling import audience_zones, refuse_if_past, schedule_campaign
from needlecast.campaign.state import CANCELLED, PAUSED, find_state, set_status
from needlecast.config import Workspace, test_recipients
from needlecast.content.loader import load_vocabulary_for
from needlecast.delivery.base import Backend, Batch, Outcome, Recipient
from needlecast.errors import CampaignFileError, InvalidRequest, TemplateProblem
from needlecast.store.helpers import utcnow
from needlecast.templating.environment import build_environment, email_templates
from needlecast.templating.recipient import RecipientValues
from needlecast.templating.render import RenderedEmail

MANUAL_REASONS = ("unsubscribed", "hard_bounce", "complaint", "manual")


def _campaign(workspace: Workspace, campaign_id: str) -> tuple[CampaignContext, Campaign]:
    ctx = CampaignContext.load(workspace)
    return ctx, ctx.campaign(campaign_id)


def set_campaign_status(engine: Engine, workspace: Workspace, actor: Actor, campaign_id: str, status: str) -> int:
    """Pause, resume (`active`) or cancel a scheduled campaign; returns how many queued emails a cancel
    cancelled. An unknown id is `NotFound` naming the campaigns there are."""
    require(actor, "campaigns.schedule")
    with engine.begin() as conn:
        if find_state(conn, campaign_id) is None:
            CampaignContext.load(workspace).campaign(campaign_id)  # NotFound for an unknown id
        note = {PAUSED: f"paused by {actor.name}", CANCELLED: f"cancelled by {actor.name}"}.get(status, "")
        set_status(conn, campaign_id, status, note)
        cancelled = ledger.cancel_queued(conn, campaign_id) if status == CANCELLED else 0
        action = {PAUSED: "campaign.paused", CANCELLED: "campaign.cancelled"}.get(status, "campaign.resumed")
        audit.record(conn, actor, action, f"campaign:{campaign_id}", cancelled=cancelled)
    return cancelled


def schedule(
    engine: Engine, workspace: Workspace, actor: Actor, campaign_id: str, *, release_draft: bool = False
) -> dict[str, Any]:
    """Schedule a campaign now (a past broadcast schedule, a draft, and a campaign the claims gate blocks are
    refused: `CampaignBlocked` names the findings and the fix); the running
    scheduler (or `schedule sync`) gives it its jobs. Returns its state. With `release_draft` (the console's
    Schedule) a draft is made live first: its file loses `draft: true` once every check has passed."""
    require(actor, "campaigns.schedule")
    ctx, campaign = _campaign(workspace, campaign_id)
    ensure_sendable(ctx, campaign, doing="scheduled")  # the claims gate, before anything is scheduled
    released = release_draft and campaign.draft
    with engine.begin() as conn:
        if released:
            campaign = _released(ctx, conn, campaign, send_now=False)
        state = schedule_campaign(conn, campaign, audience_zones(conn), utcnow())
        audit.record(conn, actor, "campaign.scheduled", f"campaign:{campaign_id}", released_draft=released)
    return state


def request_send_now(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    campaign_id: str,
    launch: Callable[[str], object],
    *,
    release_draft: bool = False,
) -> None:
    """Send a campaign now: scheduled at once (`send --now`), then `launch(campaign_id)` starts the send
    where senders run (the scheduler's job, or this process). `release_draft`: as for `schedule`."""
    require(actor, "campaigns.schedule")
    ctx, campaign = _campaign(workspace, campaign_id)
    ensure_sendable(ctx, campaign)
    released = release_draft and campaign.draft
    with engine.begin() as conn:
        if released:
            campaign = _released(ctx, conn, campaign, send_now=True)
        schedule_campaign(conn, campaign, audience_zones(conn), utcnow(), send_now=True)
        audit.record(conn, actor, "campaign.sent_now", f"campaign:{campaign_id}", released_draft=released)
    launch(campaign_id)


def _released(ctx: CampaignContext, conn: Connection, campaign: Campaign, *, send_now: bool) -> Campaign:
    """A draft made live: refused first as scheduling would refuse it (a past schedule), then its file loses
    `draft: true`, so that the file the scheduler re-reads is the one scheduled."""
    if campaign.kind == BROADCAST and not send_now and not ledger.has_rows(conn, campaign.id):
        refuse_if_past(campaign, audience_zones(conn), utcnow())
    return write_release(ctx, campaign)


def save_campaign(
    engine: Engine, workspace: Workspace, actor: Actor, document: dict[str, Any], replacing: str | None = None
) -> Campaign:
    """Write a campaign file from the console's form, through the loader (errors name the field), always as a
    draft: nothing it saves is scheduled or sent until someone schedules it (`schedule(release_draft=True)`,
    audited). A broadcast that has sent nothing yet and whose moment is already past is refused, naming the
    field, and nothing is written."""
    require(actor, "campaigns.edit")
    ctx = CampaignContext.load(workspace)
    old = ctx.campaign(replacing).path if replacing else None
    drafted = {key: value for key, value in document.items() if key != "draft"}
    drafted = dict(list(drafted.items())[:3]) | {"draft": True} | dict(list(drafted.items())[3:])

    def refuse_past(campaign: Campaign) -> None:
        if campaign.kind != BROADCAST:
            return
        with engine.connect() as conn:
            if ledger.has_rows(conn, campaign.id):
                return  # it has sent: its moment is history, not a plan
            zones = audience_zones(conn)
        try:
            refuse_if_past(campaign, zones, utcnow())
        except CampaignFileError as err:
            raise CampaignFileError(
                err.path,
                err.field,
                err.problem,
                "choose a moment in the future (to send it at once, save a later moment and press Send now)",
                campaign_id=campaign.id,
            ) from err

    campaign = save_document(ctx, drafted, old, check=refuse_past)
    with engine.begin() as conn:
        audit.record(
            conn, actor, "campaign.saved", f"campaign:{campaign.id}", file=campaign.path.name, created=replacing is None
        )
    return campaign


def record_signoff(engine: Engine, workspace: Workspace, actor: Actor, campaign_id: str, note: str) -> Campaign:
    """The claims sign-off, by the acting reviewer, dated today, written into the campaign's file."""
    require(actor, "signoff.record")
    ctx, campaign = _campaign(workspace, campaign_id)
    saved = write_signoff(ctx, campaign, actor.name, note, date.today())
    with engine.begin() as conn:
        audit.record(conn, actor, "campaign.signoff", f"campaign:{campaign_id}", note=note.strip()[:500])
    return saved


def save_template(engine: Engine, workspace: Workspace, actor: Actor, name: str, html: str, text: str) -> None:
    """Replace an email template's two parts after checking they render for every variant (a syntax error
    or an undefined variable is a `TemplateProblem` with its line, and nothing is written)."""
    require(actor, "templates.edit")
    if name not in email_templates(workspace.templates_dir):
        raise InvalidRequest(
            f"'{name}' is not an email template; use one of: {', '.join(email_templates(workspace.templates_dir))}"
        )
    check_template(workspace, name, html, text)
    base = workspace.templates_dir / name
    for suffix, content in ((".html", html), (".txt", text)):
        Path(f"{base}{suffix}").write_text(content.replace("\r\n", "\n"), encoding="utf-8")
    with engine.begin() as conn:
        audit.record(conn, actor, "template.saved", f"template:{name}")


def render_edited_template(
    workspace: Workspace, name: str, html: str, text: str, variants: tuple[str, ...] | None = None
) -> dict[str, RenderedEmail]:
    """An edited template (not yet written) rendered for `variants` (default every one), with its layouts;
    `TemplateProblem` naming the part and line at the first error."""
    import shutil
    import tempfile

    from needlecast.content.loader import load_article
    from needlecast.templating.context import email_context, variant_concerns
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


def check_template(workspace: Workspace, name: str, html: str, text: str) -> None:
    """`TemplateProblem` unless an edited template renders for every variant."""
    render_edited_template(workspace, name, html, text)


@dataclass
class TestSend:
    requests: int
    recipients: tuple[str, ...]
    variants: int


def test_send(
    workspace: Workspace, engine: Engine, actor: Actor, backend: Backend, campaign_id: str, step_id: str | None = None
) -> TestSend:
    """One step's every variant and arm, to the seed addresses of `[console] test_recipients`, through the
    configured backend: never to the audience and never into the ledger. Subjects start with [TEST]."""
    require(actor, "campaigns.test_send")
    seeds = test_recipients(workspace)  # read now: an edit of needlecast.toml counts without a restart
    if not seeds:
        raise InvalidRequest(
            "no seed addresses to send a test to: your administrator adds them to the workspace settings "
            '([console] test_recipients = ["you@clinic.example"] in needlecast.toml)'
        )
    ctx, campaign = _campaign(workspace, campaign_id)
    step = campaign.step(step_id) if step_id else campaign.steps[0]
    backend.check()
    from needlecast.config import signing_secret

    values = RecipientValues(workspace.settings, signing_secret(required=backend.name == "sendgrid"), "test")
    clinic = workspace.settings.clinic
    batches = []
    for variant in step_variants(ctx, step):
        for arm in step.arm_names:
            rendered = render_variant(ctx, campaign, step, variant, arm)
            rendered = values.with_links(rendered)
            rendered = dataclasses.replace(
                rendered, subject=f"[TEST {variant}{' ' + arm if arm else ''}] {rendered.subject}"
            )
            recipients = []
            for seed in seeds:
                person, unsubscribe = values.for_request(0, "Test")
                recipients.append(Recipient("", seed, person, unsubscribe))
            batches.append(
                Batch(
                    campaign.id,
                    step.id,
                    variant,
                    rendered,
                    campaign.sender_email or clinic.sender_email,
                    campaign.sender_name or clinic.sender_name,
                    tuple(recipients),
                    reply_to=campaign.reply_to or clinic.reply_to,
                    arm=arm,
                )
            )
    outcomes: list[Outcome] = []
    backend.send_all(batches, lambda _b, result: outcomes.extend(result))
    failed = [o for o in outcomes if o.status != "sent"]
    with engine.begin() as conn:
        audit.record(
            conn,
            actor,
            "campaign.test_sent",
            f"campaign:{campaign_id}",
            step=step.id,
            requests=len(batches),
            seeds=len(seeds),
            failed=len(failed),
        )
    if failed:
        raise InvalidRequest(f"the test send did not go through: {failed[0].error or failed[0].status}")
    return TestSend(len(batches), seeds, len(step_variants(ctx, step)))


def suppress_contact(engine: Engine, actor: Actor, email: str, reason: str, source: str) -> bool:
    """Suppress an address (a contact or not); True when newly suppressed."""
    require(actor, "contacts.suppress")
    if reason not in MANUAL_REASONS:
        raise InvalidRequest(f"'{reason}' is not one of: {', '.join(MANUAL_REASONS)}")
    with engine.begin() as conn:
        try:
            target = f"contact:#{get_contact(conn, email)['id']}"
        except LookupError:
            target = "address (not a contact)"
        added = suppress(conn, email, reason, source=source)
        audit.record(conn, actor, "contact.suppressed", target, reason=reason, new=added)
    return added


def erase_contact(engine: Engine, actor: Actor, email: str) -> bool:
    """Erase a person (see `audience.suppression.erase`); True when a contact existed."""
    require(actor, "contacts.erase")
    with engine.begin() as conn:
        try:
            target = f"contact:#{get_contact(conn, email)['id']}"
        except LookupError:
            target = "address (not a contact)"
        existed = erase(conn, email)
        audit.record(conn, actor, "contact.erased", target)
    return existed


def import_audience(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    path: Path,
    *,
    list_name: str = "",
    mapping: dict[str, str] | None = None,
    progress: Progress | None = None,
    source_name: str | None = None,
) -> ImportSummary:
    """Import a CSV or XLSX file (see `audience.importer`), audited with its counts."""
    require(actor, "audiences.import")
    summary = import_file(
        engine,
        path,
        load_vocabulary_for(workspace),
        list_name=list_name,
        mapping=mapping,
        progress=progress,
        limits=workspace.settings.imports,
    )
    with engine.begin() as conn:
        audit.record(
            conn,
            actor,
            "audience.imported",
            f"import:#{summary.import_id}",
            file=source_name or path.name,
            read=summary.read,
            inserted=summary.inserted,
            updated=summary.updated,
            duplicates=summary.duplicates,
            rejected=summary.rejected,
        )
    return summary
