"""APScheduler wiring: thin jobs that carry ids only (DESIGN.md invariant 4).

- Jobs live in a SQLAlchemyJobStore in the same database. Each job calls a module-level function here with
  JSON-able arguments (the workspace folder and a campaign id); the campaign file and the audience are read
  when the job runs. Job ids are deterministic, added with `replace_existing=True`, `coalesce=True` and a
  generous `misfire_grace_time`, so a scheduler that was down catches up once on restart, and the ledger
  makes a repeated run send nothing twice.
- A broadcast is one DateTrigger job per distinct UTC moment (one per time-zone group for local-time sends).
  Sequences are served by one `sweeper` job on an interval, which enrols, advances, and also resumes any
  rows left queued (retries, deferrals). A `resync` job re-reads the campaign files every minute: a changed
  file reschedules, a deleted one unschedules.
- One scheduler leads per store (`store.leader.SenderLock`); another waits as a standby and leads within
  `[schedule] takeover_seconds` of the leader's connection dying. On taking the lead, and then every third
  of the lease (the `upkeep` job), it recovers the rows of senders that died (`ledger.recover_senders`);
  the sweeper also settles unknown requests (`ledger.settle_requests`). While any worker is alive its jobs
  plan and enqueue, and leave the sending to the workers.
- The `confirmations` job stores the signup form's submissions and sends their confirmation emails every
  CONFIRMATIONS_SECONDS (`audience.confirmations`: each taken and claimed by one sender, so each goes out
  once); the web app never decides or sends.
- SIGTERM (and Ctrl-C) set the runtime's `stop`: the batches in flight finish and are marked, then the
  process exits.
- No module state: what a running scheduler's jobs need (its engine, stop event, heartbeat and the scheduler
  itself) is one `SchedulerRuntime`, which the scheduler's executor hands to each job function (keyword
  `runtime`); the job store keeps only the function's name and the ids.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, Engine

from needlecast import ledger
from needlecast.audience.confirmations import process_signups
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import BROADCAST, Campaign
from needlecast.campaign.plan.scheduling import audience_zones, broadcast_moments, schedule_campaign
from needlecast.campaign.plan.winner import decision_due_at, load_decisions, winner_steps
from needlecast.campaign.send.runner import Runner
from needlecast.config import Workspace, open_workspace, signing_secret
from needlecast.delivery import get_backend
from needlecast.errors import CampaignFileError, ConfigurationError, NeedlecastError
from needlecast.fleet.heartbeat import Heartbeat
from needlecast.pacing import collect_seldom
from needlecast.reports.digest import digest_job_id, digest_trigger, send_weekly_digest
from needlecast.store import fleet
from needlecast.store.delivery import delivery_store
from needlecast.store.engine import open_store
from needlecast.store.helpers import utcnow
from needlecast.store.leader import SenderLock

log = logging.getLogger("needlecast.scheduler")
MISFIRE_GRACE = int(timedelta(days=7).total_seconds())
RESYNC_SECONDS = 60
CONFIRMATIONS_SECONDS = 5  # how soon a signup's confirmation email goes out
SENDERS_KEPT_SECONDS = 7 * 24 * 3600  # how long a stopped or dead sender's row stays, for whoever investigates


@dataclass
class SchedulerRuntime:
    """What one process's scheduler jobs run with: handed to every job function as `runtime`."""

    engine: Engine
    stop: threading.Event = field(default_factory=threading.Event)
    heartbeat: Heartbeat | None = None  # this process's sender row, while it runs as a scheduler
    scheduler: BaseScheduler | None = None  # the scheduler running the jobs, while it leads


class _JobWithRuntime:
    """A stored job as the executor runs it: its function gets the stored ids, and the runtime as `runtime`
    when it takes one (needlecast's job functions do)."""

    def __init__(self, job: Any, runtime: SchedulerRuntime) -> None:
        self._job = job
        takes_runtime = "runtime" in inspect.signature(job.func).parameters
        self.func = partial(job.func, runtime=runtime) if takes_runtime else job.func

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job, name)

    def __str__(self) -> str:
        return str(self._job)


class RuntimeExecutor(ThreadPoolExecutor):
    """APScheduler's thread pool executor, running each job with this process's `SchedulerRuntime` (the
    job store cannot hold it: it keeps a function's name and JSON-able arguments only)."""

    def __init__(self, runtime: SchedulerRuntime, max_workers: int = 2) -> None:
        super().__init__(max_workers)
        self.runtime = runtime

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        super()._do_submit_job(_JobWithRuntime(job, self.runtime), run_times)


def _runtime(runtime: SchedulerRuntime | None) -> SchedulerRuntime:
    if runtime is None:
        raise ConfigurationError(
            "scheduler jobs run only in a needlecast scheduler (its executor gives them a runtime)"
        )
    return runtime


def _runner(runtime: SchedulerRuntime | None, root: str) -> Runner:
    """The runner of a scheduler job: it plans, and sends only while no worker is alive."""
    runtime = _runtime(runtime)
    workspace = open_workspace(Path(root))
    return Runner(
        workspace,
        runtime.engine,
        get_backend(workspace),
        stop=runtime.stop,
        sender=runtime.heartbeat,
        defer_to_workers=True,
    )


# -- job functions: module level, ids only ----------------------------------------------------------------


def run_broadcast_job(
    root: str, campaign_id: str, send_now: bool = False, *, runtime: SchedulerRuntime | None = None
) -> None:
    """Enqueue and send a broadcast (one zone group's moment, or immediately with `send_now`)."""
    try:
        with collect_seldom():
            report = _runner(runtime, root).run_broadcast(campaign_id, send_now=send_now)
        log.info(
            "broadcast %s: %d enqueued, %d sent, %d failed, %d deferred, %d unknown, %d skipped",
            campaign_id,
            report.enqueued,
            report.sent,
            report.failed,
            report.released,
            report.unknown,
            sum(report.skipped.values()),
        )
    except (NeedlecastError, ConfigurationError) as err:
        log.error("broadcast %s not sent: %s", campaign_id, err)


def run_send_now_job(root: str, campaign_id: str, *, runtime: SchedulerRuntime | None = None) -> None:
    """Send one campaign now (the console's and the API's "send now"): a broadcast at once, a sequence's
    enrolment and due steps."""
    try:
        with collect_seldom():
            report = _runner(runtime, root).send(campaign_id, send_now=True)
        log.info(
            "send now %s: %d enqueued, %d sent, %d failed", campaign_id, report.enqueued, report.sent, report.failed
        )
    except (NeedlecastError, ConfigurationError) as err:
        log.error("campaign %s not sent: %s", campaign_id, err)


def run_sweeper_job(root: str, *, runtime: SchedulerRuntime | None = None) -> None:
    """Advance every sequence and send whatever is due (or leave it to the workers); settle unknown requests."""
    try:
        runner = _runner(runtime, root)
        with collect_seldom():
            reports = runner.sweep()
        settle_unknown_requests(runner.engine, runner.workspace)
    except (NeedlecastError, ConfigurationError) as err:
        log.error("sweep stopped: %s", err)
        return
    for report in reports:
        if report.enqueued or report.sent or report.failed or report.unknown or report.enrolled:
            log.info(
                "sweep %s: %d enrolled, %d exited, %d enqueued, %d sent, %d failed, %d unknown",
                report.campaign_id,
                report.enrolled,
                report.exited,
                report.enqueued,
                report.sent,
                report.failed,
                report.unknown,
            )
    log.info("sweep done: %d campaign(s) looked at", len(reports))


def run_upkeep_job(root: str, *, runtime: SchedulerRuntime | None = None) -> None:
    """Recover the rows of senders that died (workers on any machine), every few seconds; forget the senders
    that ended more than SENDERS_KEPT_SECONDS ago (`needlecast status` shows only live ones anyway)."""
    try:
        workspace = open_workspace(Path(root))
        engine = _runtime(runtime).engine
        recover(engine, workspace.settings.delivery.lease_seconds, scan=False)
        with delivery_store(engine).writing() as conn:
            fleet.forget_ended(conn, fleet.clock(conn) - SENDERS_KEPT_SECONDS)
    except (NeedlecastError, ConfigurationError) as err:
        log.error("upkeep: %s", err)


def run_confirmations_job(root: str, *, runtime: SchedulerRuntime | None = None) -> None:
    """Store the signup form's submissions and send their queued confirmation emails (counts only in the
    log)."""
    try:
        workspace = open_workspace(Path(root))
        secret = signing_secret(required=workspace.settings.delivery.backend == "sendgrid")
        done = process_signups(_runtime(runtime).engine, workspace, secret)
    except (NeedlecastError, ConfigurationError) as err:
        log.error("signup confirmations not sent: %s", err)
        return
    if done:
        log.info("signup confirmations: %s", ", ".join(f"{n} {state}" for state, n in sorted(done.items())))


def run_digest_job(root: str, *, runtime: SchedulerRuntime | None = None) -> None:
    """Email the weekly digest to `[reports] digest.recipients` (`reports.digest`: once per week)."""
    try:
        done = send_weekly_digest(_runtime(runtime).engine, open_workspace(Path(root)), utcnow())
    except (NeedlecastError, ConfigurationError) as err:
        log.error("weekly digest not sent: %s", err)
        return
    log.info("weekly digest: %s", done)


def settle_unknown_requests(engine: Engine, workspace: Workspace) -> ledger.RequestSettlement:
    """Settle every campaign's unknown requests (`ledger.settle_requests`) and log what was done."""
    after = workspace.settings.delivery.reconcile_after_minutes * 60
    total = ledger.RequestSettlement()
    with engine.connect() as conn:
        campaign_ids = fleet.campaigns_with_requests(conn, fleet.UNKNOWN)
    for campaign_id in campaign_ids:
        with delivery_store(engine).writing() as conn:
            result = ledger.settle_requests(conn, campaign_id, after)
        if result.accepted or result.lost:
            log.info(
                "campaign %s: %d unknown request(s) proved accepted (%d emails sent), %d proved lost "
                "(%d emails queued again), %d still unknown",
                campaign_id,
                result.accepted,
                result.accepted_rows,
                result.lost,
                result.requeued_rows,
                result.waiting,
            )
        for name in ("accepted", "accepted_rows", "lost", "requeued_rows", "waiting"):
            setattr(total, name, getattr(total, name) + getattr(result, name))
    return total


def run_resync_job(root: str, *, runtime: SchedulerRuntime | None = None) -> None:
    """Re-read campaign files and reschedule what changed (uses the running scheduler)."""
    runtime = _runtime(runtime)
    if runtime.scheduler is None:
        return
    try:
        sync(runtime.scheduler, open_workspace(Path(root)), runtime.engine)
    except (NeedlecastError, ConfigurationError) as err:
        log.error("campaign files not synced: %s", err)


# -- sync ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    id: str
    func: Callable[..., None]
    trigger: Any
    args: list[Any]


def desired_jobs(workspace: Workspace, conn: Connection, now: datetime) -> tuple[list[JobSpec], int]:
    """The jobs the campaign files call for, and how many files could not be read.

    Each broadcast is scheduled here (`campaign.scheduling.schedule_campaign`): one whose schedule is
    already past when it is first scheduled is refused and logged, and gets no job; a draft gets none.
    Sequences are scheduled too (their enrolment starts when they are first scheduled); the one sweeper
    job serves them all.
    """
    ctx = CampaignContext.load(workspace)
    for problem in ctx.problems:
        log.error("campaign file not loaded: %s", problem)
    root = str(workspace.root)
    jobs = [
        JobSpec(
            "sweeper",
            run_sweeper_job,
            IntervalTrigger(seconds=workspace.settings.schedule.sweep_interval_seconds),
            [root],
        ),
        JobSpec("resync", run_resync_job, IntervalTrigger(seconds=RESYNC_SECONDS), [root]),
        JobSpec("upkeep", run_upkeep_job, IntervalTrigger(seconds=upkeep_seconds(workspace)), [root]),
        JobSpec("confirmations", run_confirmations_job, IntervalTrigger(seconds=CONFIRMATIONS_SECONDS), [root]),
    ]
    if workspace.settings.reports.digest.recipients:
        jobs.append(JobSpec(digest_job_id(workspace), run_digest_job, digest_trigger(workspace), [root]))
    zones = audience_zones(conn)
    for campaign in ctx.campaigns.values():
        if campaign.draft:
            continue
        try:
            schedule_campaign(conn, campaign, zones, now)  # refuses before it writes anything
        except CampaignFileError as err:
            log.error("campaign %s not scheduled: %s", campaign.id, err)
            continue
        if campaign.kind != BROADCAST:
            continue
        started = ledger.has_rows(conn, campaign.id)
        for moment in broadcast_moments(campaign, zones):
            if moment <= now and started:
                continue  # already ran; re-adding a past moment would only run a no-op
            job_id = f"broadcast:{campaign.id}:{moment.strftime('%Y%m%dT%H%M%SZ')}"
            jobs.append(JobSpec(job_id, run_broadcast_job, DateTrigger(run_date=moment), [root, campaign.id]))
        jobs += _decision_jobs(conn, campaign, zones, now, root)
    return jobs, len(ctx.problems)


def _decision_jobs(conn: Connection, campaign: Campaign, zones: set[str], now: datetime, root: str) -> list[JobSpec]:
    """A job at each winner test's decision time: it runs the broadcast, which decides and sends the rest (the
    sweeper also decides whatever is due, so a test sent with --now, or a missed job, is decided too)."""
    jobs = []
    decided = load_decisions(conn, campaign.id)
    moments = broadcast_moments(campaign, zones)
    for step, test in winner_steps(campaign):
        if step.id in decided or not moments:
            continue
        moment = decision_due_at(conn, campaign, step) or max(moments) + test.decide_after
        if moment <= now:
            continue
        job_id = f"decide:{campaign.id}:{step.id}:{moment.strftime('%Y%m%dT%H%M%SZ')}"
        jobs.append(JobSpec(job_id, run_broadcast_job, DateTrigger(run_date=moment), [root, campaign.id]))
    return jobs


def _same_trigger(job: Any, spec: JobSpec) -> bool:
    """Whether a stored job already has the trigger `spec` wants (an interval job's interval can change)."""
    if isinstance(spec.trigger, IntervalTrigger):
        return isinstance(job.trigger, IntervalTrigger) and job.trigger.interval == spec.trigger.interval
    return True  # a broadcast's moment is in its job id


def sync(scheduler: BaseScheduler, workspace: Workspace, engine: Engine) -> tuple[int, int]:
    """Make the job store match the campaign files; return (added or changed, removed).

    While any campaign file cannot be read, no job is removed: the broken file may be one whose
    broadcast is scheduled, and fixing the file must not have cost it its job.
    """
    now = utcnow()
    with engine.begin() as conn:
        specs, broken = desired_jobs(workspace, conn, now)
    wanted = {job.id: job for job in specs}
    existing = {job.id: job for job in scheduler.get_jobs()}
    removed = 0
    for job_id in existing:
        if job_id.startswith(("broadcast:", "decide:", "digest:")) and job_id not in wanted and not broken:
            scheduler.remove_job(job_id)
            removed += 1
    added = 0
    for job_id, spec in wanted.items():
        if job_id in existing and _same_trigger(existing[job_id], spec):
            continue  # unchanged: keep its next run time
        # The sweeper runs at once (and then on its interval); other jobs at their trigger's time.
        first_run = {"next_run_time": now} if job_id == "sweeper" else {}
        scheduler.add_job(
            spec.func,
            trigger=spec.trigger,
            args=spec.args,
            id=job_id,
            name=job_id,
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=MISFIRE_GRACE,
            max_instances=1,
            **first_run,
        )
        added += 1
    return added, removed


def add_send_now_job(scheduler: BaseScheduler, root: str, campaign_id: str) -> str:
    """A one-off job that sends a campaign at once (`run_send_now_job`); a second request while one waits
    replaces it (the ledger keeps the send single either way)."""
    job_id = f"send-now:{campaign_id}"
    scheduler.add_job(
        run_send_now_job,
        trigger=DateTrigger(run_date=utcnow()),
        args=[root, campaign_id],
        id=job_id,
        name=job_id,
        replace_existing=True,
        coalesce=True,
        misfire_grace_time=MISFIRE_GRACE,
        max_instances=1,
    )
    return job_id


def send_now_waiting(engine: Engine, campaign_id: str) -> bool:
    """Whether the shared job store still holds the campaign's send-now job (no scheduler has taken it yet)."""
    store = SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")
    store.start(None, "default")  # only looked up, never run: no scheduler needed
    return store.lookup_job(f"send-now:{campaign_id}") is not None


def schedule_send_now(scheduler: BaseScheduler, workspace: Workspace, campaign_id: str, delay_seconds: float) -> str:
    """A one-off job that sends a broadcast `delay_seconds` from now, ignoring its schedule (the demo)."""
    job_id = f"broadcast-now:{campaign_id}"
    scheduler.add_job(
        run_broadcast_job,
        trigger=DateTrigger(run_date=utcnow() + timedelta(seconds=delay_seconds)),
        args=[str(workspace.root), campaign_id, True],
        id=job_id,
        name=job_id,
        replace_existing=True,
        coalesce=True,
        misfire_grace_time=MISFIRE_GRACE,
        max_instances=1,
    )
    return job_id


# -- the leader lock ----------------------------------------------------------------------------------------


class _StopSafe:
    """APScheduler 3 checks for a stopped scheduler only before it takes the job-store lock, while
    `shutdown` marks it stopped and then waits for that lock. A wake-up (a sweeper due) that falls in
    between went on to submit a job to the executor `shutdown` had just closed: "cannot schedule new futures
    after shutdown" at SIGTERM. Checked again under the lock, the shutdown either waits for this round to
    finish submitting, or this round sees the stop and submits nothing."""

    _jobstores_lock: Any
    state: int

    def _process_jobs(self) -> float | None:
        with self._jobstores_lock:  # re-entrant: the base class takes it again
            if self.state == STATE_STOPPED:
                return None
            return super()._process_jobs()  # type: ignore[misc]


class StopSafeBlockingScheduler(_StopSafe, BlockingScheduler):
    pass


class StopSafeBackgroundScheduler(_StopSafe, BackgroundScheduler):
    pass


def build_scheduler(
    runtime: SchedulerRuntime, scheduler_cls: type[BaseScheduler] = StopSafeBlockingScheduler
) -> BaseScheduler:
    """A scheduler over the job store in the runtime's database, whose jobs run with `runtime`."""
    return scheduler_cls(
        jobstores={"default": SQLAlchemyJobStore(engine=runtime.engine, tablename="apscheduler_jobs")},
        executors={"default": RuntimeExecutor(runtime)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE},
        timezone="UTC",
    )


def upkeep_seconds(workspace: Workspace) -> int:
    """How often the leader looks for dead senders: a third of the lease (at least every 2 s)."""
    return max(2, int(workspace.settings.delivery.lease_seconds / 3))


def recover(engine: Engine, lease_seconds: float, *, scan: bool = True) -> ledger.Recovery:
    """Recover the rows of senders that died (`ledger.recover_senders`; any process may, at any time) and log
    what became of them (counts only)."""
    with delivery_store(engine).writing() as conn:
        result = ledger.recover_senders(conn, lease_seconds, scan=scan)
    if result.requeued:
        log.warning(
            "%d ledger rows claimed by %d stopped sender(s) were never posted: queued again",
            result.requeued,
            len(result.senders),
        )
    if result.unknown or result.legacy:
        log.warning(
            "%d ledger rows of %d request(s) that a stopped sender may have posted are now 'unknown': they are "
            "settled from the provider's events (`needlecast campaign reconcile`)",
            result.unknown + result.legacy,
            result.requests,
        )
    return result


def leading_scheduler(
    workspace: Workspace, runtime: SchedulerRuntime, scheduler_cls: type[BaseScheduler], *, wait: bool
) -> tuple[BaseScheduler, SenderLock] | None:
    """Take the leader lock (with `wait`, as a standby until the leader goes; None if stopped meanwhile),
    recover what dead senders left, and build a scheduler whose first job (`resync`, at once) brings the job
    store in line with the campaign files. It becomes `runtime.scheduler`."""
    engine = runtime.engine
    takeover = workspace.settings.schedule.takeover_seconds
    lock = SenderLock(engine, takeover)
    standby = False
    while not lock.acquire():
        if not wait:
            raise ConfigurationError(
                "another needlecast scheduler leads this database (APScheduler 3 cannot share a job store): "
                "stop it first, or run `needlecast scheduler`, which waits as its standby"
            )
        if not standby:
            log.info("standby: another scheduler leads this store; taking over within %gs of it stopping", takeover)
            standby = True
        if runtime.stop.wait(min(1.0, takeover / 5)):
            return None
    if runtime.heartbeat is not None:
        runtime.heartbeat.set_leader(True)
    log.info("leading: this scheduler runs the jobs%s", " (took over from the previous leader)" if standby else "")
    recover(engine, workspace.settings.delivery.lease_seconds, scan=True)
    scheduler = build_scheduler(runtime, scheduler_cls)
    runtime.scheduler = scheduler
    scheduler.add_job(
        run_resync_job,
        trigger=IntervalTrigger(seconds=RESYNC_SECONDS),
        args=[str(workspace.root)],
        id="resync",
        name="resync",
        replace_existing=True,
        coalesce=True,
        misfire_grace_time=MISFIRE_GRACE,
        max_instances=1,
        next_run_time=utcnow(),
    )
    return scheduler, lock


def run_scheduler(workspace: Workspace) -> None:
    """`needlecast scheduler`: lead (or wait as a standby, then lead) until SIGTERM / Ctrl-C.

    With `[delivery] sender_processes` above 1, that many local workers (`needlecast worker`) are started
    first and stopped last; the scheduler then plans and leaves the sending to them. Exits with status 3
    when it loses the leader lock (its database connection died): a supervisor restarts it as a standby.
    """
    engine = open_store(workspace.database_url)
    runtime = SchedulerRuntime(engine)
    settings = workspace.settings

    def stop(signum: int, _frame: Any) -> None:
        if runtime.stop.is_set():
            return  # a second signal: the first is already finishing the batches in flight
        log.info("signal %d: finishing the batches in flight, then exiting", signum)
        runtime.stop.set()
        scheduler = runtime.scheduler
        if scheduler is not None:
            threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers = LocalWorkers(
        workspace.root, settings.delivery.sender_processes if settings.delivery.sender_processes > 1 else 0
    )
    lost = threading.Event()
    try:
        # Its own workers send what it plans: until they are up it would send by itself, racing them.
        workers.wait_alive(engine, settings.delivery.lease_seconds, runtime.stop)
        with Heartbeat(engine, "scheduler", settings.delivery.lease_seconds, on_fenced=lambda: stop(0, None)) as beat:
            runtime.heartbeat = beat
            leading = leading_scheduler(workspace, runtime, StopSafeBlockingScheduler, wait=True)
            if leading is None:
                return
            scheduler, lock = leading
            watch = threading.Thread(
                target=_watch_lock,
                args=(lock, settings.schedule.takeover_seconds, runtime.stop, lost, stop),
                daemon=True,
            )
            watch.start()
            try:
                log.info("scheduler started for %s", workspace.root)
                if not runtime.stop.is_set():
                    scheduler.start()
            finally:
                runtime.scheduler = None
                beat.set_leader(False)
                lock.release()
    finally:
        runtime.heartbeat = None
        workers.stop()
    if lost.is_set():
        raise SystemExit(3)


def _watch_lock(
    lock: SenderLock,
    takeover_seconds: float,
    stopping: threading.Event,
    lost: threading.Event,
    stop: Callable[..., None],
) -> None:
    """The leader checks its lock's session; when it is gone another scheduler may lead: stop at once."""
    while not stopping.wait(max(0.5, takeover_seconds / 3)):
        if not lock.held():
            log.error("the leader lock's database session is gone: stopping (another scheduler may lead now)")
            lost.set()
            stop(0, None)
            return


class LocalWorkers:
    """`[delivery] sender_processes` local `needlecast worker` processes, for the life of a scheduler."""

    def __init__(self, root: Path, count: int) -> None:
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "needlecast.cli", "worker"],
                cwd=root,
                env={**os.environ, "NEEDLECAST_WORKSPACE": str(root)},
                stdin=subprocess.DEVNULL,
            )
            for _ in range(count)
        ]
        if count:
            log.info("%d local worker(s) started", count)

    def wait_alive(self, engine: Engine, lease_seconds: float, stop: threading.Event, timeout: float = 120.0) -> bool:
        """Wait until this many workers are alive in the store (True), or `timeout` passes, `stop` is set or a
        worker process exits (False: the scheduler then sends by itself while no worker is alive)."""
        deadline = time.monotonic() + timeout
        while self.processes and not stop.is_set() and time.monotonic() < deadline:
            with engine.connect() as conn:
                if len(fleet.live(conn, fleet.cutoff(conn, lease_seconds), kind="worker")) >= len(self.processes):
                    return True
            if any(process.poll() is not None for process in self.processes):
                break
            stop.wait(0.2)
        if self.processes:
            log.warning("the local workers are not all alive: the scheduler sends by itself while none is")
        return not self.processes

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # they finish their requests in flight
        for process in self.processes:
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()


def sync_offline(workspace: Workspace) -> tuple[int, int] | None:
    """`needlecast schedule sync` while no scheduler runs: update the job store directly.

    Returns None when a scheduler is running (it re-reads the files itself within a minute).
    """
    engine = open_store(workspace.database_url)
    try:
        lock = SenderLock(engine)
        if not lock.acquire():
            return None
        try:
            scheduler = build_scheduler(SchedulerRuntime(engine), StopSafeBackgroundScheduler)
            scheduler.start(paused=True)
            try:
                return sync(scheduler, workspace, engine)
            finally:
                scheduler.shutdown(wait=False)
        finally:
            lock.release()
    finally:
        engine.dispose()


def run_scheduler_in_background(workspace: Workspace) -> tuple[BaseScheduler, Callable[[], None]]:
    """Start the scheduler in this process's background (for `needlecast serve`); return it and its stop
    function. The same lock, recovery and jobs as `run_scheduler`; stopping finishes the batches in flight."""
    runtime = SchedulerRuntime(open_store(workspace.database_url))
    leading = leading_scheduler(workspace, runtime, StopSafeBackgroundScheduler, wait=False)
    assert leading is not None  # without waiting it leads or raises
    scheduler, lock = leading
    scheduler.start()

    def stop() -> None:
        runtime.stop.set()
        scheduler.shutdown(wait=True)
        runtime.scheduler = None
        lock.release()

    return scheduler, stop
