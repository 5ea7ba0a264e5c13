"""`needlecast worker`: claims and sends the due rows of every campaign, beside any number of other workers.

A worker is a sender with a heartbeat (`needlecast.fleet.heartbeat`). Its loop: recover the rows of senders that
died (any worker may; each row is recovered once), find the campaigns with due queue entries, and dispatch
each one that may send (active, not a draft, past the claims gate) through the dispatcher; when
nothing is due, wait `poll_seconds` (or until stopped). The ledger's claims keep workers apart, on one
machine or many (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one machine, write turns).

Contract: `stop` (SIGTERM) ends the loop after the requests in flight are recorded; the claimed rest goes
back to `queued`. A worker that finds itself declared dead (silent past the lease) stops the same way and
exits with status 3. A campaign that cannot send is logged (id and reason) and looked at again after
`retry_seconds`; its rows stay queued. Logs carry ids and counts only.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from needlecast import ledger
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.send.dispatcher import Dispatcher
from needlecast.campaign.send.rendering import Sending
from needlecast.campaign.send.report import RunReport
from needlecast.campaign.send.wiring import dispatcher_for, may_send, sending_secret
from needlecast.config import Workspace
from needlecast.delivery import backend_factory
from needlecast.errors import CampaignBlocked, CampaignFileError, ConfigurationError, NeedlecastError
from needlecast.fleet.heartbeat import Heartbeat
from needlecast.fleet.recovery import recover
from needlecast.fleet.telemetry import SenderMetrics
from needlecast.pacing import collect_seldom
from needlecast.store.delivery import delivery_store
from needlecast.store.helpers import utcnow

log = logging.getLogger("needlecast.fleet.worker")


@dataclass
class WorkerTotals:
    """What one worker did, summed over its campaigns."""

    sent: int = 0
    failed: int = 0
    unknown: int = 0
    released: int = 0
    skipped: int = 0
    dispatches: int = 0
    recovered: list[ledger.Recovery] = field(default_factory=list)


class Worker:
    def __init__(
        self,
        workspace: Workspace,
        engine: Engine,
        *,
        stop: threading.Event | None = None,
        concurrency: int | None = None,
        poll_seconds: float = 1.0,
        retry_seconds: float = 30.0,
        on_recorded: Callable[[str, str, int], None] | None = None,
        telemetry: SenderMetrics | None = None,
    ) -> None:
        """`concurrency`: requests in flight at once (default `[delivery] max_in_flight`). `on_recorded` and
        `telemetry` let metrics watch the dispatch, the backend's requests and the rate limit's waits."""
        if concurrency is not None:
            if concurrency < 1:
                raise ConfigurationError("--concurrency must be at least 1 (requests in flight at once)")
            delivery = dataclasses.replace(workspace.settings.delivery, max_in_flight=concurrency)
            workspace = dataclasses.replace(
                workspace, settings=dataclasses.replace(workspace.settings, delivery=delivery)
            )
        self.workspace = workspace
        self.engine = engine
        self.store = delivery_store(engine)
        self.stop = stop or threading.Event()
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.on_recorded = on_recorded
        self.telemetry = telemetry
        self.totals = WorkerTotals()
        self.fenced = False
        self._resting: dict[str, float] = {}  # campaign id -> monotonic time before which it is not tried again

    def run(self) -> WorkerTotals:
        """Send until stopped."""
        lease = self.workspace.settings.delivery.lease_seconds
        observer = self.telemetry.observe if self.telemetry is not None else None
        backends = backend_factory(self.workspace, observer=observer)
        with Heartbeat(self.engine, "worker", lease, on_fenced=self.stop.set) as sender:
            dispatcher = dispatcher_for(
                self.workspace,
                self.store,
                backends,
                stop=self.stop,
                on_recorded=self.on_recorded,
                on_rate_wait=self.telemetry.waited if self.telemetry is not None else None,
            )
            secret = sending_secret(dispatcher)
            log.info(
                "worker %s started (%d request(s) in flight at most)",
                sender.id,
                self.workspace.settings.delivery.max_in_flight,
            )
            self._recover(lease, scan=True)
            while not self.stop.is_set():
                sent_something = self._round(dispatcher, sender, secret)
                if sender.fenced.is_set():
                    self.fenced = True
                    break
                if not sent_something:
                    self.stop.wait(self.poll_seconds)
                    self._recover(lease, scan=False)
            log.info(
                "worker %s stopped: %d sent, %d failed, %d unknown",
                sender.id,
                self.totals.sent,
                self.totals.failed,
                self.totals.unknown,
            )
        return self.totals

    def _recover(self, lease: float, *, scan: bool) -> None:
        result = recover(self.engine, lease, scan=scan)  # logs what became of the rows (counts only)
        if result.senders:
            self.totals.recovered.append(result)

    def _round(self, dispatcher: Dispatcher, sender: Heartbeat, secret: bytes) -> bool:
        """Dispatch every campaign with due rows once; whether any dispatch was attempted."""
        with self.engine.connect() as conn:
            due = self.store.due_campaigns(conn, utcnow())
        now = time.monotonic()
        due = [c for c in due if self._resting.get(c, 0.0) <= now]
        if not due:
            return False
        try:
            ctx = CampaignContext.load(self.workspace)
        except (NeedlecastError, ConfigurationError) as err:  # the content or config is broken: wait for a fix
            log.error("the workspace does not load, nothing sent: %s", err)
            for campaign_id in due:
                self._rest(campaign_id)
            return False
        attempted = False
        for campaign_id in due:
            if self.stop.is_set():
                break
            campaign = ctx.campaigns.get(campaign_id)
            if campaign is None:
                log.error("campaign %s has due emails but its file is missing or does not load", campaign_id)
                self._rest(campaign_id)
                continue
            report = RunReport(campaign_id)
            try:
                if not may_send(dispatcher, ctx, campaign, report):
                    self._rest(campaign_id)
                    continue
                attempted = True
                with collect_seldom():
                    dispatcher.dispatch(Sending(ctx, campaign, secret), report, sender)
            except (CampaignBlocked, CampaignFileError) as err:
                log.error("campaign %s not sent: %s", campaign_id, err)
                self._rest(campaign_id)
                continue
            except (NeedlecastError, ConfigurationError) as err:
                log.error("campaign %s: sending stopped: %s", campaign_id, err)
                self._rest(campaign_id)
                continue
            self._add(report)
            if report.paused:
                self._rest(campaign_id)
        return attempted

    def _rest(self, campaign_id: str) -> None:
        self._resting[campaign_id] = time.monotonic() + self.retry_seconds

    def _add(self, report: RunReport) -> None:
        totals = self.totals
        totals.dispatches += 1
        totals.sent += report.sent
        totals.failed += report.failed
        totals.unknown += report.unknown
        totals.released += report.released
        totals.skipped += sum(report.skipped.values())
