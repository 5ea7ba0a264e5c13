"""Leadership: one scheduler leads per store (DESIGN.md invariant 4), the others wait as standbys.

Contract:
- `take_lead` takes the leader lock (`store.leader.SenderLock`); with `wait`, as a standby until the leader
  goes (None if stopped meanwhile), without it `ConfigurationError` at once. The new leader flags its
  sender row and recovers what dead senders left (`recovery.recover`, scanning the ledger) before it runs
  any job.
- `watch_lock` runs beside a leader: when the lock's database session is gone another scheduler may lead,
  so it sets `lost` and calls `stop` at once.
- `LocalWorkers` are the `[delivery] sender_processes` local `needlecast worker` processes of a scheduler,
  started first and stopped last (SIGTERM: they finish their requests in flight).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from needlecast.config import Workspace
from needlecast.errors import ConfigurationError
from needlecast.fleet.heartbeat import Heartbeat
from needlecast.fleet.recovery import recover
from needlecast.store.delivery import delivery_store
from needlecast.store.leader import SenderLock

log = logging.getLogger("needlecast.scheduler")


def take_lead(
    workspace: Workspace, engine: Engine, stop: threading.Event, heartbeat: Heartbeat | None, *, wait: bool
) -> SenderLock | None:
    """The leader lock, once held (see the module contract); None when `stop` was set while waiting."""
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
        if stop.wait(min(1.0, takeover / 5)):
            return None
    if heartbeat is not None:
        heartbeat.set_leader(True)
    log.info("leading: this scheduler runs the jobs%s", " (took over from the previous leader)" if standby else "")
    recover(engine, workspace.settings.delivery.lease_seconds, scan=True)
    return lock


def watch_lock(
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
        store = delivery_store(engine)
        while self.processes and not stop.is_set() and time.monotonic() < deadline:
            with engine.connect() as conn:
                if store.live_senders(conn, lease_seconds, kind="worker") >= len(self.processes):
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
