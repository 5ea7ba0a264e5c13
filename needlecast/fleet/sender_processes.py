"""Helper sender processes: a large dispatch shared by `[delivery] sender_processes` processes.

The ledger's claims keep the processes' rows apart (a row is claimed by exactly one of them), so a helper
is just another dispatcher (`campaign.send.dispatcher`) sending the same campaign. Helpers are fresh interpreters
(the `spawn` start method: no threads, locks or connections are inherited), which costs each one a second or
two of start-up; helpers can therefore be made before the parent plans, so that start-up overlaps planning.
A helper waits until the parent calls `release` (after the first slice of rows is in the ledger), then
dispatches; it keeps waiting for rows at an empty queue until the parent says everything is enqueued
(`release(enqueued=True)`). `cancel` sends it home without sending anything.

Contract: only ids and counts cross the process boundary; a helper reads the workspace and environment
afresh, stops after its batches in flight at SIGTERM, and stops by itself when its parent is gone.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.send.rendering import Sending
from needlecast.campaign.send.report import RunReport
from needlecast.campaign.send.wiring import dispatch_once, dispatcher_for, sending_secret
from needlecast.config import open_workspace
from needlecast.delivery import backend_factory
from needlecast.pacing import collect_seldom
from needlecast.store.delivery import delivery_store
from needlecast.store.engine import open_store

log = logging.getLogger("needlecast.runner")
_POLL_SECONDS = 0.2


class SenderHelpers:
    """The helper processes of one dispatch (none when `count` is 0)."""

    def __init__(self, root: Path, campaign_id: str, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._go = context.Event()
        self._enqueued = context.Event()
        self._cancelled = context.Event()
        self._processes: list[tuple[Any, Any]] = []
        for _ in range(count):
            results = context.Queue()
            process = context.Process(
                target=_helper_main,
                daemon=True,
                args=(str(root), campaign_id, os.getpid(), self._go, self._enqueued, self._cancelled, results),
            )
            process.start()
            self._processes.append((process, results))

    def __len__(self) -> int:
        return len(self._processes)

    @property
    def released(self) -> bool:
        return self._go.is_set()

    def release(self, *, enqueued: bool = False) -> None:
        """Let the helpers dispatch (rows they are to share are in the ledger; `enqueued`: all of them)."""
        self._go.set()
        if enqueued:
            self._enqueued.set()

    def cancel(self) -> None:
        """The parent failed before its own dispatch: helpers not yet released go home without sending;
        released ones stop like at SIGTERM (their batches in flight finish and are marked)."""
        self._cancelled.set()
        for process, _ in self._processes:
            if self._go.is_set() and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)
        for process, _ in self._processes:
            process.join(60)

    def join(self, *, stop: bool) -> list[dict[str, Any]]:
        """Wait for every helper (SIGTERM first when `stop`) and return their counts."""
        counts = []
        for process, results in self._processes:
            if stop and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)  # they finish their batches in flight, like the parent
            try:
                counts.append(results.get(timeout=600))
            except queue.Empty:
                log.warning("a helper sender process reported nothing (exit code %s)", process.exitcode)
            process.join(30)
        return counts


def _helper_main(
    root: str, campaign_id: str, parent_pid: int, go: Any, enqueued: Any, cancelled: Any, results: Any
) -> None:
    """A helper process: wait for the go, dispatch alongside the parent, report counts."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    counts: dict[str, Any] = {}
    try:

        def orphaned() -> bool:
            return os.getppid() != parent_pid

        dispatch = _helper_dispatch(
            Path(root),
            campaign_id,
            parent_pid,
            stop,
            lambda: not enqueued.is_set() and not cancelled.is_set() and not orphaned(),
        )
        if _wait_for_go(go, cancelled, stop, orphaned):
            with collect_seldom():
                counts = dispatch()
    finally:
        results.put(counts)


def _wait_for_go(go: Any, cancelled: Any, stop: threading.Event, orphaned: Callable[[], bool]) -> bool:
    while not go.wait(_POLL_SECONDS):
        if cancelled.is_set() or stop.is_set() or orphaned():
            return False
    return not cancelled.is_set()


def _helper_dispatch(
    root: Path, campaign_id: str, parent_pid: int, stop: threading.Event, more_coming: Callable[[], bool]
) -> Callable[[], dict[str, Any]]:
    """Set up now (workspace, store, backend and campaign files, read afresh), and return the call that
    dispatches the campaign and returns its counts (`RunReport.counts`).

    Setting up is done while the helper waits for the parent's go. The dispatch stops when `stop` is set or
    its parent is gone, and does not stop at an empty queue while `more_coming()` says the parent is still
    enqueueing.
    """
    workspace = open_workspace(root)
    store = delivery_store(open_store(workspace.database_url))
    dispatcher = dispatcher_for(
        workspace, store, backend_factory(workspace), stop=stop, parent_pid=parent_pid, more_coming=more_coming
    )
    ctx = CampaignContext.load(workspace)
    sending = Sending(ctx, ctx.campaign(campaign_id), sending_secret(dispatcher))

    def dispatch() -> dict[str, Any]:
        report = RunReport(campaign_id)
        dispatch_once(dispatcher, workspace, sending, report, None)  # as a sender of its own
        return report.counts()

    return dispatch
