"""A runner whose stages are timed from the outside (`needlecast send --timings`, the benchmarks).

Stages (seconds, this process's part; helper processes are not included):
- plan: segmenting, planning and enqueueing (`Planner.plan_broadcast`, `Planner.advance_sequence`);
  within it enqueue, the store's inserts.
- dispatch: sending (`Dispatcher.dispatch`); within it claim (the store's claims, with the contact data),
  mark (recording outcomes) and turn (waiting for a write turn; on SQLite shared with other senders).
- body: building request bodies, the dispatch backends' own count (`Dispatcher.prepare_seconds`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from needlecast.campaign.send.runner import Runner
from needlecast.config import Workspace
from needlecast.delivery.base import BackendFactory
from needlecast.devtools.stopwatch import Stopwatch
from needlecast.store.delivery import delivery_store

MARKS = ("mark_sent", "mark_failed", "mark_unknown", "mark_skipped", "release", "release_claim", "requeue")
STORE_CALLS = {"claim": "claim", "enqueue": "enqueue", "set_status": "mark", **dict.fromkeys(MARKS, "mark")}
STORE_ENTRIES = {"writing": "turn", "write_turn": "turn"}


def timed_runner(
    workspace: Workspace, engine: Engine, backends: BackendFactory, *, watch: Stopwatch, **options: Any
) -> Runner:
    """A `Runner` (with `options`) whose store, planner and dispatcher put their stages on `watch`."""
    store = watch.wrap(delivery_store(engine), calls=STORE_CALLS, entries=STORE_ENTRIES)
    runner = Runner(workspace, engine, backends, store=store, **options)
    runner.planner = watch.wrap(runner.planner, calls={"plan_broadcast": "plan", "advance_sequence": "plan"})
    runner.dispatcher = watch.wrap(runner.dispatcher, calls={"dispatch": "dispatch"})
    return runner


def stage_seconds(watch: Stopwatch, runner: Runner) -> dict[str, float]:
    """The stages timed so far, with the backends' body building, rounded to milliseconds."""
    seconds = {**watch.seconds, "body": runner.dispatcher.prepare_seconds}
    return {stage: round(value, 3) for stage, value in sorted(seconds.items())}
