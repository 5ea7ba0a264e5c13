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
- One scheduler per store: `SenderLock` is a PostgreSQL advisory lock or, on SQLite, a lock file; a second
  scheduler refuses to start. Holding it, the scheduler turns rows a crashed sender left in `sending` into
  `unknown`.
- SIGTERM (and Ctrl-C) set `STOP`: the batches in flight finish and are marked, then the process exits.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, Engine, text

from needlecast import ledger
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.model import BROADCAST, Campaign
from needlecast.campaign.runner import Runner
from needlecast.campaign.scheduling import audience_zones, broadcast_moments, schedule_campaign
from needlecast.campaign.winner import decision_due_at, load_decisions, winner_steps
from needlecast.config import Workspace, open_workspace
from needlecast.delivery import get_backend
from needlecast.errors import CampaignFileError, ConfigurationError, NeedlecastError
from needlecast.store.engine import open_store
from needlecast.store.helpers import utcnow

log = logging.getLogger("needlecast.scheduler")
STOP = threading.Event()
MISFIRE_GRACE = int(timedelta(days=7).total_seconds())
RESYNC_SECONDS = 60
_LOCK_KEY = 0x6E65656463617374  # "needcast": the advisory lock id on PostgreSQL

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _engine_for(workspace: Workspace) -> Engine:
    url = workspace.database_url
    with _engines_lock:
        if url not in _engines:
            _engines[url] = open_store(url)
        return _engines[url]


def _runner(root: str) -> Runner:
    workspace = open_workspace(Path(root))
    return Runner(workspace, _engine_for(workspace), get_backend(workspace), stop=STOP)


# -- job functions: module level, ids only ----------------------------------------------------------------


def run_broadcast_job(root: str, campaign_id: str, send_now: bool = False) -> None:
    """Enqueue and send a broadcast (one zone group's moment, or immediately with `send_now`)."""
    try:
        report = _runner(root).run_broadcast(campaign_id, send_now=send_now)
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


def run_send_now_job(root: str, campaign_id: str) -> None:
    """Send one campaign now (the console's and the API's "send now"): a broadcast at once, a sequence's
    enrolment and due steps."""
    try:
        report = _runner(root).send(campaign_id, send_now=True)
        log.info(
            "send now %s: %d enqueued, %d sent, %d failed", campaign_id, report.enqueued, report.sent, report.failed
        )
    except (NeedlecastError, ConfigurationError) as err:
        log.error("campaign %s not sent: %s", campaign_id, err)


def run_sweeper_job(root: str) -> None:
    """Advance every sequence and send whatever is due."""
    try:
        reports = _runner(root).sweep()
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


def run_resync_job(root: str) -> None:
    """Re-read campaign files and reschedule what changed (uses the running scheduler)."""
    scheduler = _current.get("scheduler")
    if scheduler is None:
        return
    try:
        sync(scheduler, open_workspace(Path(root)))
    except (NeedlecastError, ConfigurationError) as err:
        log.error("campaign files not synced: %s", err)


_current: dict[str, BaseScheduler] = {}


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
    ]
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


def sync(scheduler: BaseScheduler, workspace: Workspace) -> tuple[int, int]:
    """Make the job store match the campaign files; return (added or changed, removed).

    While any campaign file cannot be read, no job is removed: the broken file may be one whose
    broadcast is scheduled, and fixing the file must not have cost it its job.
    """
    engine = _engine_for(workspace)
    now = utcnow()
    with engine.begin() as conn:
        specs, broken = desired_jobs(workspace, conn, now)
    wanted = {job.id: job for job in specs}
    existing = {job.id: job for job in scheduler.get_jobs()}
    removed = 0
    for job_id in existing:
        if job_id.startswith(("broadcast:", "decide:")) and job_id not in wanted and not broken:
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


# -- the one-sender lock -------------------------------------------------------------------------------------


class SenderLock:
    """One scheduler per store: a PostgreSQL advisory lock, or an flock on a file beside the SQLite database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        self._file: Any = None

    def acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            self._conn = self.engine.connect()
            got = bool(self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}).scalar())
            self._conn.commit()
            if not got:
                self._conn.close()
                self._conn = None
            return got
        database = self.engine.url.database or ":memory:"
        path = Path(f"{database}.scheduler.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a+")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            return False
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()
        return True

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            self._conn.commit()
            self._conn.close()
            self._conn = None
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


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


def build_scheduler(engine: Engine, scheduler_cls: type[BaseScheduler] = StopSafeBlockingScheduler) -> BaseScheduler:
    return scheduler_cls(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")},
        executors={"default": {"type": "threadpool", "max_workers": 2}},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE},
        timezone="UTC",
    )


def recover(engine: Engine) -> int:
    """Rows a crashed sender left in `sending` become `unknown` (call while holding the lock)."""
    with engine.begin() as conn:
        count = ledger.recover_stale(conn)
    if count:
        log.warning(
            "%d ledger rows were left 'sending' by a stopped sender and are now 'unknown': "
            "run `needlecast campaign reconcile` once the provider's events are in",
            count,
        )
    return count


def _locked_scheduler(workspace: Workspace, scheduler_cls: type[BaseScheduler]) -> tuple[BaseScheduler, SenderLock]:
    """Take the one-sender lock, recover what a crashed sender left, and build a scheduler whose first job
    (`resync`, at once) brings the job store in line with the campaign files."""
    engine = _engine_for(workspace)
    lock = SenderLock(engine)
    if not lock.acquire():
        raise ConfigurationError(
            "another needlecast scheduler is already running on this database "
            "(APScheduler 3 cannot share a job store); stop it first"
        )
    recover(engine)
    scheduler = build_scheduler(engine, scheduler_cls)
    _current["scheduler"] = scheduler
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
    """`needlecast scheduler`: the BlockingScheduler, until SIGTERM / Ctrl-C."""
    scheduler, lock = _locked_scheduler(workspace, StopSafeBlockingScheduler)
    try:

        def stop(signum: int, _frame: Any) -> None:
            if STOP.is_set():
                return  # a second signal: the first is already finishing the batches in flight
            log.info("signal %d: finishing the batches in flight, then exiting", signum)
            STOP.set()
            threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("scheduler started for %s", workspace.root)
        scheduler.start()
    finally:
        _current.pop("scheduler", None)
        lock.release()


def sync_offline(workspace: Workspace) -> tuple[int, int] | None:
    """`needlecast schedule sync` while no scheduler runs: update the job store directly.

    Returns None when a scheduler is running (it re-reads the files itself within a minute).
    """
    engine = _engine_for(workspace)
    lock = SenderLock(engine)
    if not lock.acquire():
        return None
    try:
        scheduler = build_scheduler(engine, StopSafeBackgroundScheduler)
        scheduler.start(paused=True)
        try:
            return sync(scheduler, workspace)
        finally:
            scheduler.shutdown(wait=False)
    finally:
        lock.release()


def run_scheduler_in_background(workspace: Workspace) -> tuple[BaseScheduler, Callable[[], None]]:
    """Start the scheduler in this process's background (for `needlecast serve`); return it and its stop
    function. The same lock, recovery and jobs as `run_scheduler`; stopping finishes the batches in flight."""
    scheduler, lock = _locked_scheduler(workspace, StopSafeBackgroundScheduler)
    scheduler.start()

    def stop() -> None:
        STOP.set()
        scheduler.shutdown(wait=True)
        _current.pop("scheduler", None)
        lock.release()

    return scheduler, stop
