"""`start_send`: how every face starts a send in its own process (`needlecast send`, the console's "send
now", a scheduler job), written once.

The sequence: recover what dead senders left (their rows are theirs no more: `fleet.recovery.recover`),
build the runner over the workspace's backends (`delivery.backend_factory`), and run the send with the
garbage collector paced (`pacing.collect_seldom`: a large send makes and drops millions of acyclic objects).

Contract: `send(runner)` is the caller's own step (e.g. `Runner.send`, or an action that sends and audits);
its result is returned, its errors propagate. `make_runner` builds the runner (default `Runner`; the CLI's
timings pass a timed one); `recover_first=False` for a caller that recovers on its own schedule (the
scheduler's leader does, every third of the lease). `options` go to the runner (`stop`, `sender`,
`defer_to_workers`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine

from needlecast.campaign.send.runner import Runner
from needlecast.config import Workspace
from needlecast.delivery import backend_factory
from needlecast.fleet.recovery import recover
from needlecast.pacing import collect_seldom

T = TypeVar("T")


def start_send(
    workspace: Workspace,
    engine: Engine,
    send: Callable[[Runner], T],
    *,
    make_runner: Callable[..., Runner] | None = None,
    recover_first: bool = True,
    **options: Any,
) -> T:
    """Recover, build the runner, and run `send(runner)` with the collector paced (see the module contract)."""
    if recover_first:
        recover(engine, workspace.settings.delivery.lease_seconds)
    runner = (make_runner or Runner)(workspace, engine, backend_factory(workspace), **options)
    with collect_seldom():
        return send(runner)
