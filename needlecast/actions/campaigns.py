"""Campaign actions: schedule, send now, pause, resume, cancel, save, sign off, send, reconcile, draft.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

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
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.editor import record_signoff as write_signoff
from needlecast.campaign.definition.editor import release_draft as write_release
from needlecast.campaign.definition.editor import save_document
from needlecast.campaign.definition.gate import ensure_sendable
from needlecast.campaign.definition.model import BROADCAST, Campaign
from needlecast.campaign.plan.scheduling import audience_zones, refuse_if_past, schedule_campaign
from needlecast.campaign.send import guardrails
from needlecast.campaign.send.state import ACTIVE as ACTIVE  # the statuses a face passes to set_campaign_status
from needlecast.campaign.send.state import CANCELLED, PAUSED, find_state, set_status
from needlecast.config import Workspace
from needlecast.errors import CampaignFileError
from needlecast.store.delivery import delivery_store
from needlecast.store.helpers import utcnow

if TYPE_CHECKING:
    from needlecast.campaign.send.report import RunReport
    from needlecast.campaign.send.runner import Runner


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
        # A resume clears the guard's figures and restarts its window; the audit entry keeps what it paused on.
        guard = guardrails.on_resume(conn, campaign_id) if status == ACTIVE else {}
        set_status(conn, campaign_id, status, note)
        cancelled = delivery_store(conn).cancel_queued(conn, campaign_id) if status == CANCELLED else 0
        action = {PAUSED: "campaign.paused", CANCELLED: "campaign.cancelled"}.get(status, "campaign.resumed")
        extra = {"auto_paused": guard} if guard else {}
        audit.record(conn, actor, action, f"campaign:{campaign_id}", cancelled=cancelled, **extra)
    return cancelled


def auto_pause_figures(engine: Engine, campaign_id: str) -> str:
    """Why the deliverability guard paused the campaign, with its figures ('' when it did not): what a
    person is shown before resuming it (the console's confirmation, `needlecast campaign resume`)."""
    with engine.connect() as conn:
        return guardrails.paused_figures(conn, campaign_id)


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
    if campaign.kind == BROADCAST and not send_now and not delivery_store(conn).has_rows(conn, campaign.id):
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
            if delivery_store(conn).has_rows(conn, campaign.id):
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


def send_now_locally(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    campaign_id: str,
    *,
    send_now: bool,
    make_runner: Callable[..., Runner] | None = None,
) -> tuple[RunReport, Runner]:
    """Start a send in this process and send the campaign (`needlecast send`): `start_send`'s sequence
    (recover what dead senders left, build the runner over the workspace's backends, pace the collector),
    then `send_campaign` (permission, the send, its audit entry). Returns the report and the runner it ran
    on. `make_runner` builds the runner (default `Runner`): the CLI's `--timings` passes a timed one, whose
    stages it reads from the returned runner. An unknown campaign id is `NotFound`, and nothing is audited."""
    from needlecast.campaign.send.start import start_send

    def send(runner: Runner) -> tuple[RunReport, Runner]:
        return send_campaign(engine, workspace, actor, campaign_id, runner, send_now=send_now), runner

    return start_send(workspace, engine, send, make_runner=make_runner)


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
        settled = delivery_store(conn).settle_campaign_by_events(conn, campaign_id) + requests.accepted_rows
        resent = delivery_store(conn).requeue_unknown(conn, campaign_id) if resend_unknown else 0
        left = delivery_store(conn).counts(conn, campaign_id)[ledger.UNKNOWN]
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
    course: tuple[int, int, int] | None = None,
) -> tuple[Any, Path]:
    """Write a draft campaign that uses `article` (a recall's `course`: sessions, weeks apart, maintenance
    months) (`campaign.definition.drafting`); audited as `campaign.saved` (the
    console's action for writing a campaign file), with the article it was drafted from. Returns the draft
    and the path written."""
    from needlecast.campaign.definition.drafting import draft_campaign as make_draft
    from needlecast.campaign.definition.drafting import write_draft

    require(actor, "campaigns.edit")
    ctx = CampaignContext.load(workspace)
    from needlecast.campaign.journeys.drafts import Course

    draft = make_draft(ctx, article, kind, segment, campaign_id, course=Course(*course) if course else None)
    created = not (workspace.campaigns_dir / f"{draft.id}.yaml").exists()
    path = write_draft(ctx, draft, force)
    with engine.begin() as conn:
        audit.record(
            conn, actor, "campaign.saved", f"campaign:{draft.id}", file=path.name, created=created, drafted_from=article
        )
    return draft, path
