"""The campaign stage of `needlecast demo`: the scheduler sends the sample broadcast and nurture day 0."""

from __future__ import annotations

import threading
import time
from collections import Counter

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select

from needlecast.audience.membership import evaluate, load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import BROADCAST
from needlecast.config import Workspace, open_workspace
from needlecast.delivery.outbox import read_outbox
from needlecast.devtools.scoped_env import environment
from needlecast.schedule import (
    SchedulerRuntime,
    StopSafeBackgroundScheduler,
    leading_scheduler,
    schedule_send_now,
    sync,
)
from needlecast.store.helpers import utcnow
from needlecast.store.schema import deliveries

WAIT_SECONDS = 120


def run_campaign_stage(workspace: Workspace, engine: Engine, console: Console) -> int:
    """Schedule the sample broadcast a few seconds ahead, let the sweeper enrol the sample leads, run the
    scheduler until both have run, and report what was sent and what was excluded. Returns an exit status."""
    # Quiet hours would hold the demo until 08:00 in some recipients' zones; `needlecast plan` shows them.
    with environment(NEEDLECAST_QUIET_HOURS="off"):
        return _campaign_stage(open_workspace(workspace.root), engine, console)


def _campaign_stage(workspace: Workspace, engine: Engine, console: Console) -> int:
    console.print("quiet hours are off for the demo so that it finishes at any hour of the day")
    before = sum(1 for _ in read_outbox(workspace.outbox_dir))
    ctx = CampaignContext.load(workspace)
    broadcasts = [c.id for c in ctx.campaigns.values() if c.kind == BROADCAST]
    finished: Counter[str] = Counter()
    done = threading.Event()
    wanted = {f"broadcast-now:{c}" for c in broadcasts} | {"sweeper"}

    def listen(event: JobExecutionEvent) -> None:
        finished[event.job_id] += 1
        if event.exception is not None:
            console.print(f"[red]job {event.job_id} failed:[/] {event.exception}")
        if all(finished[j] for j in wanted):
            done.set()

    runtime = SchedulerRuntime(engine)
    leading = leading_scheduler(workspace, runtime, StopSafeBackgroundScheduler, wait=False)
    assert leading is not None  # without waiting it leads or raises
    scheduler, lock = leading
    try:
        scheduler.add_listener(listen, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        scheduler.start(paused=True)
        sync(scheduler, workspace, engine)
        scheduler.modify_job("sweeper", next_run_time=utcnow())  # sweep now, even if an earlier run left it
        for campaign_id in broadcasts:
            schedule_send_now(scheduler, workspace, campaign_id, delay_seconds=3)
        console.print(f"scheduler running: the nurture sweeper now, {', '.join(broadcasts)} in 3 seconds")
        started = time.monotonic()
        scheduler.resume()
        completed = done.wait(WAIT_SECONDS)
        scheduler.shutdown(wait=True)
        console.print(f"scheduler stopped after {time.monotonic() - started:.1f} s")
    finally:
        runtime.scheduler = None
        lock.release()
    if not completed:
        console.print(f"[red]the scheduled jobs did not finish within {WAIT_SECONDS} s[/]")
        return 1
    _report(ctx, engine, console)
    new = sum(1 for _ in read_outbox(workspace.outbox_dir)) - before
    if new:
        console.print(
            f"{new} request(s) written to {workspace.outbox_dir / 'requests.jsonl'} "
            "(`needlecast outbox list`, `needlecast outbox show N`)"
        )
    else:
        console.print("nothing new was sent: every planned email was already in the ledger")
    return 0


def _report(ctx: CampaignContext, engine: Engine, console: Console) -> None:
    table = Table(title="sent, per campaign, step, segment and variant")
    for column in ("campaign", "step", "segment", "variant", "arm", "status", "emails"):
        table.add_column(column)
    query = (
        select(
            deliveries.c.campaign_id,
            deliveries.c.step_id,
            deliveries.c.segment,
            deliveries.c.variant,
            deliveries.c.arm,
            deliveries.c.status,
            func.count(),
        )
        .group_by(
            deliveries.c.campaign_id,
            deliveries.c.step_id,
            deliveries.c.segment,
            deliveries.c.variant,
            deliveries.c.arm,
            deliveries.c.status,
        )
        .order_by(deliveries.c.campaign_id, deliveries.c.step_id, deliveries.c.variant, deliveries.c.arm)
    )
    skipped = (
        select(deliveries.c.campaign_id, deliveries.c.error, func.count())
        .where(deliveries.c.status == "skipped")
        .group_by(deliveries.c.campaign_id, deliveries.c.error)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        skipped_rows = conn.execute(skipped).all()
        frame = load_frame(conn)
    for row in rows:
        table.add_row(*(str(v) if v != "" else "-" for v in row))
    console.print(table)
    console.print("excluded, and why:")
    now = utcnow()
    for campaign in ctx.campaigns.values():
        result = evaluate(ctx.segments[campaign.segment], frame, now)
        for reason, count in sorted(result.excluded.items()):
            console.print(f"  {campaign.id}: {reason}: {count}", highlight=False)
    for campaign_id, reason, count in skipped_rows:
        console.print(f"  {campaign_id}: skipped at send time: {reason}: {count}", highlight=False)
