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
- One scheduler leads per store (`fleet.leadership`); another waits as a standby and leads within
  `[schedule] takeover_seconds` of the leader's connection dying. On taking the lead, and then every third
  of the lease (the `upkeep` job), it recovers the rows of senders that died (`fleet.recovery`);
  the sweeper also settles unknown requests (`fleet.recovery.settle_unknown_requests`). While any worker
  is alive its jobs plan and enqueue, and leave the sending to the workers. Jobs start their sends with
  `campaign.send.start.start_send`, like every face.
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
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING, STATE_STOPPED, BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, Engine

from needlecast.audience.confirmations import process_signups
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import BROADCAST, Campaign
from needlecast.campaign.journeys.sweeper import journeys_of, sweep_all, sweep_seconds
from needlecast.campaign.plan.scheduling import audience_zones, broadcast_moments, schedule_campaign
from needlecast.campaign.plan.winner import decision_due_at, load_decisions, winner_steps
from needlecast.campaign.send.runner import Runner
from needlecast.campaign.send.start import start_send
from needlecast.config import Workspace, open_workspace, signing_secret
from needlecast.errors import CampaignFileError, ConfigurationError, NeedlecastError
from needlecast.fleet.heartbeat import Heartbeat
from needlecast.fleet.leadership import LocalWorkers, take_lead, watch_lock
from needlecast.fleet.recovery import (
    forget_ended,
    recover,
    settle_unknown_requests,
    upkeep_seconds,
)
from needlecast.reports.digest import digest_job_id, digest_trigger, send_weekly_digest
from needlecast.store.delivery import delivery_store
from needlecast.store.engine import open_store
from needlecast.store.helpers import utcnow
from needlecast.store.leader import SenderLock

log = logging.getLogger("needlecast.scheduler")
MISFIRE_GRACE = int(timedelta(days=7).total_seconds())
RESYNC_SECONDS = 60
CONFIRMATIONS_SECONDS = 5  # how soon a signup's confirmation email goes out
T = TypeVar("T")


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


def _send(runtime: SchedulerRuntime | None, root: str, send: Callable[[Runner], T]) -> T:
    """A scheduler job's send (`start_send`): it plans, and sends only while no worker is alive, as this
    scheduler's sender. No recovery first: the leader recovers on taking the lead and in `upkeep`."""
    runtime = _runtime(runtime)
    workspace = open_workspace(Path(root))
    return start_send(
        workspace,
        runtime.engine,
        send,
        recover_first=False,
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
        report = _send(runtime, root, lambda runner: runner.run_broadcast(campaign_id, send_now=send_now))
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
        report = _send(runtime, root, lambda runner: runner.send(campaign_id, send_now=True))
        log.info(
            "send now %s: %d enqueued, %d sent, %d failed", campaign_id, report.enqueued, report.sent, report.failed
        )
    except (NeedlecastError, ConfigurationError) as err:
        log.error("campaign %s not sent: %s", campaign_id, err)


def run_sweeper_job(root: str, *, runtime: SchedulerRuntime | None = None) -> None:
    """Advance every sequence and send whatever is due (or leave it to the workers); settle unknown requests."""
    try:
        reports, runner = _send(runtime, root, lambda runner: (runner.sweep(), runner))
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


def run_journeys_job(root: str, *, runtime: SchedulerRuntime | None = None) -> None:
    """Advance every journey's due positions (`needlecast.campaign.journeys.sweeper`: one job for everyone, in set
    operations); the emails it enqueues go out with the sweeper job's (or the workers') sending."""
    try:
        workspace = open_workspace(Path(root))
        reports = sweep_all(_runtime(runtime).engine, CampaignContext.load(workspace), utcnow())
    except (NeedlecastError, ConfigurationError) as err:
        log.error("journeys: %s", err)
        return
    for report in reports:
        log.info(
            "journey %s: %d entered, %d moved, %d enqueued, %d converted, %d left",
            report.campaign_id,
            report.entered,
            report.moved,
            report.enqueued,
            report.converted,
            sum(report.left.values()),
        )


def run_upkeep_job(root: str, *, runtime: SchedulerRuntime | None = None) -> None:
    """Recover the rows of senders that died (workers on any machine), every few seconds; forget the senders
    that ended more than SENDERS_KEPT_SECONDS ago (`needlecast status` shows only live ones anyway)."""
    try:
        workspace = open_workspace(Path(root))
        engine = _runtime(runtime).engine
        recover(engine, workspace.settings.delivery.lease_seconds, scan=False)
        forget_ended(engine)
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

    Each broadcast is scheduled here (`campaign.plan.scheduling.schedule_campaign`): one whose schedule is
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
    if journeys_of(ctx):  # one job advances every journey
        jobs.append(JobSpec("journeys", run_journeys_job, IntervalTrigger(seconds=sweep_seconds(workspace)), [root]))
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
        started = delivery_store(conn).has_rows(conn, campaign.id)
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
    """Two races of APScheduler 3.11's shutdown, closed.

    - It checks for a stopped scheduler only before it takes the job-store lock, while `shutdown` marks it
      stopped and then waits for that lock. A wake-up (a sweeper due) that falls in between went on to submit
      a job to the executor `shutdown` had just closed: "cannot schedule new futures after shutdown" at
      SIGTERM. Checked again under the lock, the shutdown either waits for this round to finish submitting,
      or this round sees the stop and submits nothing.
    - `shutdown(wait=True)` waits for the running jobs while it holds the job-store lock, which a running
      job needs to change the jobs (the resync job's `sync`): a SIGTERM while a resync ran hung the
      scheduler for good. Here the running jobs are waited for first, without the lock (`shutdown`)."""

    _jobstores_lock: Any
    _executors: dict[str, Any]
    state: int

    def shutdown(self, wait: bool = True) -> None:
        """Stop: with `wait`, no job is started any more (paused), the round that was submitting jobs
        finishes (the lock taken once), and the running jobs finish, free to take the job-store lock; then
        APScheduler's own shutdown, which finds nothing left to wait for."""
        if wait and self.state == STATE_RUNNING:
            self.pause()  # type: ignore[attr-defined]
            with self._jobstores_lock:
                pass
            for executor in list(self._executors.values()):
                executor.shutdown(wait=True)
        super().shutdown(wait)  # type: ignore[misc]

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


def leading_scheduler(
    workspace: Workspace, runtime: SchedulerRuntime, scheduler_cls: type[BaseScheduler], *, wait: bool
) -> tuple[BaseScheduler, SenderLock] | None:
    """Take the leader lock (with `wait`, as a standby until the leader goes; None if stopped meanwhile) and
    recover what dead senders left (`fleet.leadership.take_lead`), then build a scheduler whose first job
    (`resync`, at once) brings the job store in line with the campaign files. It becomes `runtime.scheduler`."""
    lock = take_lead(workspace, runtime.engine, runtime.stop, runtime.heartbeat, wait=wait)
    if lock is None:
        return None
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
                target=watch_lock,
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
