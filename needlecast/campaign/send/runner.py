"""The runner: what a scheduler job, `needlecast send` or the console runs for a campaign.

It composes the planner (`campaign.plan.planner`: segment -> plan -> enqueue) and the dispatcher
(`campaign.send.dispatcher`: next batch -> re-check -> requests -> backend -> record) over one delivery store,
and decides around them: whether the campaign may send, A/B decisions before planning, helper sender
processes for a large send, and whether to leave the sending to workers.

Contract (DESIGN.md invariants):
- Every email goes through the ledger: enqueue (idempotent) -> claim -> backend -> mark.
- A broadcast renders every step before anything is enqueued: nothing is enqueued when a step does not render.
- A runner made with `defer_to_workers` (the scheduler's) plans and enqueues, and sends only while no worker
  is alive.
- Timings and garbage-collector pacing are the caller's: wrap the store (`devtools.timed`) and the call
  (`pacing.collect_seldom`); `start.start_send` does both for the faces.
- The dispatcher gets what it needs (`wiring`): its settings (`dispatch_settings`), a campaign as a
  `rendering.Sending`, and the sender it dispatches as (this process's heartbeat, or one of its own).
Logs carry ids and counts only: no addresses, names or concerns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine

from needlecast.audience.membership import load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import BROADCAST, SEQUENCE, Campaign
from needlecast.campaign.plan.planner import Planner
from needlecast.campaign.plan.scheduling import audience_zones, schedule_campaign
from needlecast.campaign.plan.winner import decide_due, decision_due_at, load_decisions, winner_steps
from needlecast.campaign.send.rendering import RenderKey, Sending, render_campaign
from needlecast.campaign.send.report import RunReport
from needlecast.campaign.send.wiring import dispatch_once, dispatcher_for, may_send, sending_secret
from needlecast.config import Workspace
from needlecast.delivery.base import BackendFactory
from needlecast.errors import CampaignBlocked, CampaignFileError, InvalidRequest
from needlecast.fleet.heartbeat import Heartbeat
from needlecast.fleet.sender_processes import SenderHelpers
from needlecast.store.delivery import DeliveryStore, delivery_store
from needlecast.store.helpers import utcnow
from needlecast.templating.render import RenderedEmail

__all__ = ["RunReport", "Runner"]

log = logging.getLogger("needlecast.runner")


class Runner:
    def __init__(
        self,
        workspace: Workspace,
        engine: Engine,
        backends: BackendFactory,
        *,
        clock: Callable[[], datetime] = utcnow,
        stop: threading.Event | None = None,
        claim_size: int | None = None,
        more_coming: Callable[[], bool] = lambda: False,
        sender: Heartbeat | None = None,
        defer_to_workers: bool = False,
        store: DeliveryStore | None = None,
    ) -> None:
        """`backends`: builds each dispatch's backend (`delivery.backend_factory`, with the fleet's limiter and
        the dispatch's intent writer). `sender`: this process's heartbeat (without one, each dispatch registers
        its own sender for its duration). `defer_to_workers`: the scheduler's runner, which plans but leaves
        the sending to workers while any is alive.
        `store`: the delivery store (default: the engine's; a caller may pass a wrapped one, e.g. timed)."""
        self.workspace = workspace
        self.engine = engine
        self.clock = clock
        self.stop = stop or threading.Event()
        self.sender = sender
        self.defer_to_workers = defer_to_workers
        self.store = store or delivery_store(engine)
        self._renders: dict[str, dict[RenderKey, RenderedEmail]] = {}  # by campaign, made before enqueueing
        self.planner = Planner(workspace, self.store)
        self.dispatcher = dispatcher_for(
            workspace, self.store, backends, clock=clock, stop=self.stop, claim_size=claim_size, more_coming=more_coming
        )
        self.secret = sending_secret(self.dispatcher)

    # -- entry points (what scheduler jobs call) ----------------------------------------------------------

    def send(self, campaign_id: str, *, send_now: bool = False) -> RunReport:
        """`needlecast send`: a broadcast (`run_broadcast`), or one sweep of a sequence (`run_sequence`)."""
        ctx = CampaignContext.load(self.workspace)
        campaign = ctx.campaign(campaign_id)
        if campaign.kind == BROADCAST:
            return self.run_broadcast(campaign_id, send_now=send_now, ctx=ctx)
        return self.run_sequence(campaign_id, ctx=ctx)

    def run_broadcast(
        self, campaign_id: str, *, send_now: bool = False, ctx: CampaignContext | None = None
    ) -> RunReport:
        """Schedule (a past schedule is refused unless `send_now`), render every step, enqueue (idempotent)
        and send what is due. Nothing is enqueued when a step does not render."""
        ctx = ctx or CampaignContext.load(self.workspace)
        campaign = ctx.campaign(campaign_id)
        report = RunReport(campaign.id)
        if campaign.kind != BROADCAST:
            raise InvalidRequest(
                f"campaign '{campaign.id}' is a {campaign.kind}, not a broadcast: send it with "
                f"`needlecast send {campaign.id} --now` (enrols and sends what is due)"
            )
        with self.engine.begin() as conn:
            schedule_campaign(conn, campaign, audience_zones(conn), self.clock(), send_now=send_now)
        if not self.may_send(ctx, campaign, report):
            return report
        self._renders[campaign.id] = render_campaign(ctx, campaign)
        now = self.clock()
        parallel_from = self.workspace.settings.delivery.parallel_from
        # A large audience: start the helper senders first, so that their start-up overlaps segmenting
        # and planning (on the other core). They are let go once `parallel_from` rows are in the ledger,
        # and dismissed if the segment turns out smaller.
        helpers = self._helpers(campaign, self.planner.audience_size())

        def on_slice() -> None:
            if report.enqueued >= parallel_from:
                helpers.release()

        try:
            report.decisions = decide_due(ctx, self.engine, campaign, now)  # before planning: the rest needs it
            members = self.planner.plan_broadcast(ctx, campaign, report, now, send_now=send_now, on_slice=on_slice)
            if helpers and not helpers.released and members < parallel_from:
                helpers.cancel()
                helpers = self._helpers(campaign, 0)
        except BaseException:
            helpers.cancel()
            raise
        self.dispatch(ctx, campaign, report, helpers=helpers)
        return report

    def run_sequence(self, campaign_id: str, *, ctx: CampaignContext | None = None) -> RunReport:
        """One sweep of one sequence, now: schedule it, enrol whoever its rule admits, send what is due."""
        ctx = ctx or CampaignContext.load(self.workspace)
        campaign = ctx.campaign(campaign_id)
        if campaign.kind != SEQUENCE:
            raise InvalidRequest(f"campaign '{campaign.id}' is a {campaign.kind}, not a sequence")
        with self.engine.begin() as conn:
            schedule_campaign(conn, campaign, (), self.clock())
            frame = load_frame(conn)
        report = RunReport(campaign.id)
        self._sweep_one(ctx, campaign, frame, self.clock(), report)
        return report

    def sweep(self) -> list[RunReport]:
        """Enrol and advance every sequence, then send whatever is due for every active campaign. A
        campaign that cannot send (blocked, a step that does not render) is reported and the others go on;
        a campaign file that does not load is logged (ids and the file's problem only)."""
        ctx = CampaignContext.load(self.workspace)
        for problem in ctx.problems:
            log.error("campaign file not loaded: %s", problem)
        reports = []
        now = self.clock()
        with self.engine.connect() as conn:
            frame = load_frame(conn)
        for campaign in ctx.campaigns.values():
            report = RunReport(campaign.id)
            reports.append(report)
            try:
                if campaign.kind == BROADCAST and self._winner_due(campaign, now):
                    reports[-1] = self.run_broadcast(campaign.id, ctx=ctx)  # decide, then plan and send the rest
                    continue
                if campaign.kind == BROADCAST and not self._has_queued(campaign.id):
                    continue
                self._sweep_one(ctx, campaign, frame, now, report)
            except (CampaignBlocked, CampaignFileError) as err:
                report.blocked = str(err)
                log.error("campaign %s not sent: %s", campaign.id, err)
        return reports

    def _sweep_one(
        self, ctx: CampaignContext, campaign: Campaign, frame: pd.DataFrame, now: datetime, report: RunReport
    ) -> None:
        if not self.may_send(ctx, campaign, report):
            return
        self._renders[campaign.id] = render_campaign(ctx, campaign)
        if campaign.kind == SEQUENCE:
            self.planner.advance_sequence(ctx, campaign, frame, now, report)
        self.dispatch(ctx, campaign, report)

    def may_send(self, ctx: CampaignContext, campaign: Campaign, report: RunReport) -> bool:
        """Whether the campaign may send now (`may_send`)."""
        return may_send(self.dispatcher, ctx, campaign, report)

    def dispatch(
        self, ctx: CampaignContext, campaign: Campaign, report: RunReport, *, helpers: SenderHelpers | None = None
    ) -> None:
        """Send what is due (`Dispatcher.dispatch`), shared with helper processes (`helpers`, started early by
        the caller, or here when enough rows are due); or nothing, leaving it to the workers, when this is
        the scheduler's runner and any worker is alive."""
        if self.defer_to_workers and self._workers_alive():
            if helpers is not None:
                helpers.cancel()
            log.info("campaign %s: workers are alive; the sending is theirs", campaign.id)
            return
        if helpers is None:
            helpers = self._helpers(campaign, None)
        helpers.release(enqueued=True)
        try:
            sending = Sending(ctx, campaign, self.secret, self._renders.get(campaign.id))
            dispatch_once(self.dispatcher, self.workspace, sending, report, self.sender)
        finally:
            for counts in helpers.join(stop=self.stop.is_set()):
                report.add_counts(counts)

    # -- around the planner and the dispatcher ----------------------------------------------------------------

    def _workers_alive(self) -> int:
        lease = self.workspace.settings.delivery.lease_seconds
        with self.engine.connect() as conn:
            return self.store.live_senders(conn, lease, kind="worker")

    def _helpers(self, campaign: Campaign, size: int | None) -> SenderHelpers:
        """Helper sender processes for a send of up to `size` emails (None: as many as are due now), when
        `[delivery] sender_processes` allows them and the send reaches `parallel_from`."""
        delivery = self.workspace.settings.delivery
        count = 0
        if delivery.sender_processes > 1 and not (self.defer_to_workers and self._workers_alive()):
            if size is None:
                with self.engine.connect() as conn:
                    size = self.store.queued_count(conn, campaign.id, self.clock())
            count = delivery.sender_processes - 1 if size >= delivery.parallel_from else 0
        helpers = SenderHelpers(self.workspace.root, campaign.id, count)
        if helpers:
            log.info(
                "campaign %s: up to %d emails; %d helper sender process(es) started", campaign.id, size, len(helpers)
            )
        return helpers

    def _winner_due(self, campaign: Campaign, now: datetime) -> bool:
        """Whether a winner test of the broadcast waits for a decision whose time has come."""
        steps = winner_steps(campaign)
        if not steps or campaign.draft:
            return False
        with self.engine.connect() as conn:
            decided = load_decisions(conn, campaign.id)
            for step, _test in steps:
                due = decision_due_at(conn, campaign, step)
                if step.id not in decided and due is not None and due <= now:
                    return True
        return False

    def _has_queued(self, campaign_id: str) -> bool:
        with self.engine.connect() as conn:
            return self.store.queued_count(conn, campaign_id) > 0
