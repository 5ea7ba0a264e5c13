"""Who sends when the console or the API says "send now".

Contract: `Senders(workspace, engine, scheduler=None).send_now(campaign_id)` never sends in the request: with
an in-process scheduler (`needlecast serve`) it adds a one-off job to it; otherwise, when no scheduler holds
the store's sender lock, a thread of this process takes the lock and sends; and when a scheduler runs
elsewhere, the one-off job goes into the shared job store, where that scheduler finds it at its next wake-up
(within a minute). `busy()` names the campaigns this process is sending now (in its own thread, or in its
scheduler's send-now job); `sending(campaign_id)` says whether a send asked for here has not ended yet: being
sent by this process, or its job still waiting for a scheduler.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine

from needlecast.config import Workspace

log = logging.getLogger("needlecast.web")
SEND_NOW_PREFIX = "send-now:"  # the id of a campaign's send-now job (`schedule.add_send_now_job`)


class Senders:
    def __init__(self, workspace: Workspace, engine: Engine, scheduler: Any = None) -> None:
        self.workspace = workspace
        self.engine = engine
        self.scheduler = scheduler
        self._busy: set[str] = set()
        self._queued: set[str] = set()  # send-now jobs handed to a scheduler elsewhere, until it takes them
        self._lock = threading.Lock()
        self.finished = threading.Event()  # set whenever a send of this process ends (tests wait on it)
        if scheduler is not None:
            from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, EVENT_JOB_SUBMITTED

            scheduler.add_listener(
                self._on_job, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
            )

    def _on_job(self, event: Any) -> None:
        """The in-process scheduler's send-now jobs: busy from submission until they end."""
        from apscheduler.events import EVENT_JOB_SUBMITTED

        job_id = str(getattr(event, "job_id", ""))
        if not job_id.startswith(SEND_NOW_PREFIX):
            return
        campaign_id = job_id.removeprefix(SEND_NOW_PREFIX)
        with self._lock:
            if event.code == EVENT_JOB_SUBMITTED:
                self._busy.add(campaign_id)
                self.finished.clear()
                return
            self._busy.discard(campaign_id)
        self.finished.set()

    def busy(self) -> set[str]:
        with self._lock:
            return set(self._busy)

    def sending(self, campaign_id: str) -> bool:
        """Whether a send of `campaign_id` asked for in this process has not ended: being sent here, or its
        send-now job still waiting in this process's scheduler or in the shared job store."""
        if campaign_id in self.busy():
            return True
        if self.scheduler is not None:
            return self.scheduler.get_job(f"{SEND_NOW_PREFIX}{campaign_id}") is not None
        with self._lock:
            queued = campaign_id in self._queued
        if not queued:
            return False
        from needlecast.schedule import send_now_waiting

        if send_now_waiting(self.engine, campaign_id):
            return True
        with self._lock:
            self._queued.discard(campaign_id)  # taken: its rows show the rest
        return False

    def send_now(self, campaign_id: str) -> str:
        """Start sending `campaign_id`; says where it is being sent (for the page that asked)."""
        from needlecast.schedule import add_send_now_job

        root = str(self.workspace.root)
        if self.scheduler is not None:
            add_send_now_job(self.scheduler, root, campaign_id)
            return "the scheduler is sending it now"
        from needlecast.store.leader import SenderLock

        lock = SenderLock(self.engine)
        if lock.acquire():
            with self._lock:
                self._busy.add(campaign_id)
            self.finished.clear()
            threading.Thread(
                target=self._send, args=(lock, campaign_id), name=f"send-{campaign_id}", daemon=True
            ).start()
            return "this web app is sending it now"
        self._queue_for_the_scheduler(root, campaign_id)
        with self._lock:
            self._queued.add(campaign_id)
        return "the running scheduler picks it up within a minute"

    def _send(self, lock: Any, campaign_id: str) -> None:
        from needlecast.campaign.send.start import start_send
        from needlecast.errors import ConfigurationError, NeedlecastError

        try:
            start_send(self.workspace, self.engine, lambda runner: runner.send(campaign_id, send_now=True))
        except (NeedlecastError, ConfigurationError) as err:
            log.error("campaign %s not sent: %s", campaign_id, err)
        except Exception as err:  # a bug: logged by type only, the send's rows are safe in the ledger
            log.error("campaign %s send failed: %s", campaign_id, type(err).__name__)
        finally:
            lock.release()
            with self._lock:
                self._busy.discard(campaign_id)
            self.finished.set()

    def _queue_for_the_scheduler(self, root: str, campaign_id: str) -> None:
        from needlecast.schedule import SchedulerRuntime, StopSafeBackgroundScheduler, add_send_now_job, build_scheduler

        scheduler = build_scheduler(SchedulerRuntime(self.engine), StopSafeBackgroundScheduler)
        scheduler.start(paused=True)
        try:
            add_send_now_job(scheduler, root, campaign_id)
        finally:
            scheduler.shutdown(wait=False)
