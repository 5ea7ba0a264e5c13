"""The changes people make, whichever face they use (console, API, command line): checked, done, audited.

Contract: every function here takes the acting `Actor`, raises `PermissionDenied` unless the actor may do
it (`accounts.roles.require`), does the change with the same library call the other faces use, and writes
one audit entry in the same transaction (or, for file changes, right after the file is written). Nothing
here holds logic the library lacks: it is the one place where "who may" and "who did" are decided.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine

from needlecast import ledger
from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.audience.contacts import get_contact
from needlecast.audience.importer import ImportSummary, Progress, import_file
from needlecast.audience.suppression import erase, suppress
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.editor import record_signoff as write_signoff
from needlecast.campaign.definition.editor import release_draft as write_release
from needlecast.campaign.definition.editor import save_document
from needlecast.campaign.definition.gate import ensure_sendable
from needlecast.campaign.definition.model import BROADCAST, Campaign
from needlecast.campaign.plan.scheduling import audience_zones, refuse_if_past, schedule_campaign
from needlecast.campaign.send.rendering import render_variant, step_variants
from needlecast.campaign.send.state import CANCELLED, PAUSED, find_state, set_status
from needlecast.config import Workspace, test_recipients
from needlecast.content.library import write_override
from needlecast.content.loader import load_vocabulary_for
from needlecast.delivery.base import Backend, Batch, Outcome, Recipient
from needlecast.errors import CampaignFileError, InvalidRequest, TemplateProblem
from needlecast.store.helpers import utcnow
from needlecast.templating.environment import build_environment, email_templates
from needlecast.templating.recipient import RecipientValues
from needlecast.templating.render import RenderedEmail

if TYPE_CHECKING:
    from needlecast.audience.consent import Purpose
    from needlecast.campaign.send.report import RunReport
    from needlecast.campaign.send.runner import Runner

MANUAL_REASONS = ("unsubscribed", "hard_bounce", "complaint", "manual")

log = logging.getLogger("needlecast.audit")


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


def correct_section_tags(
    engine: Engine, workspace: Workspace, actor: Actor, article_id: str, slug: str, concerns: tuple[str, ...] | None
) -> None:
    """Set a section's concerns by hand (None: back to the tagger's), written into `content/tags.yaml` and
    audited. The article, the section and every concern must exist (`NotFound`, `InvalidRequest` otherwise)."""
    require(actor, "content.tag")
    ctx = CampaignContext.load(workspace)
    article = ctx.library.article(article_id)
    article.section(slug)  # NotFound naming the sections there are
    known = {*ctx.vocabulary.names, "general"}
    if concerns is not None and (not concerns or any(c not in known for c in concerns)):
        raise InvalidRequest(f"concerns must be one or more of {', '.join(sorted(known))}")
    path = workspace.path(workspace.settings.content.overrides)
    write_override(path, ctx.library.default_id, article_id, slug, concerns)
    with engine.begin() as conn:
        audit.record(
            conn, actor, "content.tagged", f"section:{article_id}/{slug}", concerns=",".join(concerns or ("auto",))
        )


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


# -- what the command line does in its own process (the console and the API ask a sender instead) -------------


def send_counts(report: RunReport) -> dict[str, Any]:
    """A run's counts as its audit entry carries them (ids and numbers only)."""
    counts: dict[str, Any] = {
        "enqueued": report.enqueued,
        "sent": report.sent,
        "failed": report.failed,
        "deferred": report.released,
        "unknown": report.unknown,
        "skipped": sum(report.skipped.values()),
    }
    if report.enrolled or report.exited:
        counts.update(enrolled=report.enrolled, exited=report.exited)
    for note in ("paused", "blocked", "inactive"):
        if getattr(report, note):
            counts[note] = getattr(report, note)
    return counts


def send_campaign(
    engine: Engine, workspace: Workspace, actor: Actor, campaign_id: str, runner: Runner, *, send_now: bool
) -> RunReport:
    """Send a campaign in this process (`needlecast send`, see `Runner.send`) and audit it with its counts:
    `campaign.sent_now` (the console's action for the same change) with `send_now`, else `campaign.sent`.

    A run that stops half-way (an error, Ctrl-C) is audited too, with the error's type: the emails it sent
    before are in the ledger. An unknown campaign id is `NotFound`, and nothing is audited."""
    require(actor, "campaigns.schedule")
    _campaign(workspace, campaign_id)  # NotFound before anything changes
    action, target = ("campaign.sent_now" if send_now else "campaign.sent"), f"campaign:{campaign_id}"
    try:
        report = runner.send(campaign_id, send_now=send_now)
    except BaseException as err:
        try:
            with engine.begin() as conn:
                audit.record(conn, actor, action, target, error=type(err).__name__)
        except Exception as failed:  # the run's own error matters more; say the entry is missing
            log.error("the audit entry for %s of %s was not written: %s", action, campaign_id, type(failed).__name__)
        raise
    with engine.begin() as conn:
        audit.record(conn, actor, action, target, **send_counts(report))
    return report


@dataclass(frozen=True)
class Reconciled:
    """What `reconcile_campaign` did."""

    requests: ledger.RequestSettlement
    settled: int  # unknown emails settled as sent from provider events
    resent: int  # unknown emails queued again because the person asked (`resend_unknown`)
    left: int  # still unknown


def reconcile_campaign(
    engine: Engine, workspace: Workspace, actor: Actor, campaign_id: str, *, resend_unknown: bool
) -> Reconciled:
    """Settle a campaign's unknown emails from stored provider events (see `ledger.settle_requests`), queue
    the rest again when `resend_unknown`; audited as `campaign.reconciled` with every count, in the same
    transaction (`requeued`: every email queued again, proved lost or resent on request)."""
    require(actor, "campaigns.schedule")
    lost_after = workspace.settings.delivery.reconcile_after_minutes * 60
    with engine.begin() as conn:
        requests = ledger.settle_requests(conn, campaign_id, lost_after)
        settled = ledger.reconcile(conn, campaign_id) + requests.accepted_rows
        resent = ledger.requeue_unknown(conn, campaign_id) if resend_unknown else 0
        left = ledger.counts(conn, campaign_id)[ledger.UNKNOWN]
        audit.record(
            conn,
            actor,
            "campaign.reconciled",
            f"campaign:{campaign_id}",
            settled=settled,
            requests_accepted=requests.accepted,
            requests_lost=requests.lost,
            requeued=requests.requeued_rows + resent,
            resent_unknown=resent,
            still_unknown=left,
        )
    return Reconciled(requests, settled, resent, left)


def sync_schedule(engine: Engine, workspace: Workspace, actor: Actor) -> tuple[int, int] | None:
    """Bring the job store in line with the campaign files while no scheduler runs (`schedule.sync_offline`);
    audited as `schedule.synced` with the jobs added or changed and removed. None (nothing changed, nothing
    audited) when a scheduler is running: it re-reads the files itself."""
    from needlecast.schedule import sync_offline

    require(actor, "campaigns.schedule")
    result = sync_offline(workspace)
    if result is not None:
        with engine.begin() as conn:
            audit.record(conn, actor, "schedule.synced", "schedule", changed=result[0], removed=result[1])
    return result


def record_contact_consent(
    engine: Engine, actor: Actor, email: str, purpose: Purpose, granted: bool, *, source: str, wording: str = ""
) -> int:
    """Record consent given or withdrawn (`audience.consent.record_consent`) for the contact with `email`;
    audited as `contact.consent` by contact id. Returns the id; `NotFound` for an unknown address."""
    from needlecast.audience.consent import record_consent

    require(actor, "contacts.write")
    with engine.begin() as conn:
        contact_id = int(get_contact(conn, email)["id"])
        record_consent(conn, contact_id, purpose, granted, source=source, wording_version=wording)
        audit.record(
            conn, actor, "contact.consent", f"contact:#{contact_id}", purpose=purpose, granted=granted, source=source
        )
    return contact_id


def start_opt_in(engine: Engine, actor: Actor, email: str, secret: bytes, *, source: str) -> str:
    """Start double opt-in for the contact with `email` (pending, marketing consent off until confirmed);
    audited as `contact.opt_in_started`. Returns the signed confirmation token."""
    from needlecast.audience.consent import start_double_opt_in

    require(actor, "contacts.write")
    with engine.begin() as conn:
        contact_id = int(get_contact(conn, email)["id"])
        token = start_double_opt_in(conn, contact_id, secret, source=source)
        audit.record(conn, actor, "contact.opt_in_started", f"contact:#{contact_id}", source=source)
    return token


def draft_campaign(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    article: str,
    *,
    kind: str,
    segment: str | None = None,
    campaign_id: str | None = None,
    force: bool = False,
) -> tuple[Any, Path]:
    """Write a draft campaign that uses `article` (`campaign.drafting`); audited as `campaign.saved` (the
    console's action for writing a campaign file), with the article it was drafted from. Returns the draft
    and the path written."""
    from needlecast.campaign.definition.drafting import draft_campaign as make_draft
    from needlecast.campaign.definition.drafting import write_draft

    require(actor, "campaigns.edit")
    ctx = CampaignContext.load(workspace)
    draft = make_draft(ctx, article, kind, segment, campaign_id)
    created = not (workspace.campaigns_dir / f"{draft.id}.yaml").exists()
    path = write_draft(ctx, draft, force)
    with engine.begin() as conn:
        audit.record(
            conn, actor, "campaign.saved", f"campaign:{draft.id}", file=path.name, created=created, drafted_from=article
        )
    return draft, path


def upgrade_database(url: str, actor: Actor) -> tuple[str | None, str]:
    """Apply pending schema migrations (`store.engine.upgrade`); returns the revisions before and after. A
    change is audited as `database.upgraded`, right after it (the audit log is a table of that schema)."""
    from needlecast.store.engine import current_revision, make_engine, upgrade

    require(actor, "database.upgrade")
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        after = upgrade(engine)
        if before != after:
            with engine.begin() as conn:
                audit.record(conn, actor, "database.upgraded", "database", before=before or "empty", after=after)
    finally:
        engine.dispose()
    return before, after
