"""The commands that start processes: web, serve, scheduler, worker, demo, and send (a send in this process,
with its helper sender processes).

The one CLI module that may import the services themselves (`needlecast.fleet`, `needlecast.schedule`,
`needlecast.web.app`, `needlecast.devtools`): what it starts is a process, not a change (each change those
processes make goes through the actions and is audited as its actor).
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Annotated, Any

import typer
from rich.markup import escape

from needlecast.cli.campaigns import CampaignArgument
from needlecast.cli.common import (
    app,
    console,
    current_store,
    current_workspace,
    err_console,
    operator,
    setup_logging,
)
from needlecast.config import Workspace
from needlecast.errors import ConfigurationError

log = logging.getLogger("needlecast.web")


def _uvicorn_config(workspace: Workspace, host: str, port: int, scheduler: Any = None) -> Any:
    import uvicorn

    from needlecast.web.app import create_app
    from needlecast.web.senders import Senders

    engine = current_store(workspace)
    app_ = create_app(workspace, engine, senders=Senders(workspace, engine, scheduler))
    # Behind a reverse proxy: trust X-Forwarded-* from it (FORWARDED_ALLOW_IPS), links use public_base_url.
    # log_config=None: uvicorn's lines go through needlecast's handlers and their privacy filter.
    return uvicorn.Config(
        app_,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        access_log=False,
        log_config=None,
        limit_concurrency=200,
        timeout_keep_alive=5,
    )


def _warn_about_webhook(workspace: Workspace) -> None:
    from needlecast.web.recipient_pages import webhook_mode

    mode = webhook_mode(workspace)
    if mode == "refused":
        err_console.print(
            "[yellow]warning:[/] no SendGrid webhook verification key is set, so SendGrid's events are refused "
            '(403). Turn on "Signed Event Webhook" in SendGrid (Settings > Mail Settings > Event Webhook), copy '
            "its verification key, and set SENDGRID_WEBHOOK_PUBLIC_KEY (or [tracking] webhook_public_key).",
            highlight=False,
        )
    elif mode == "unsigned":
        err_console.print(
            "[yellow]warning:[/] unsigned webhook events are accepted ([tracking] accept_unsigned_events = true): "
            "anyone who can reach this app can post events",
            highlight=False,
        )


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the web app: the console (/console), the API (/api/v1), the signup form (/subscribe), the
    SendGrid webhook, unsubscribe, preferences and double opt-in pages (uvicorn)."""
    import uvicorn

    setup_logging(service=True)
    workspace = current_workspace()
    _warn_about_webhook(workspace)
    uvicorn.Server(_uvicorn_config(workspace, host, port)).run()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Run the web app and the scheduler in one process (one scheduler per database)."""
    import uvicorn

    from needlecast.schedule import run_scheduler_in_background

    setup_logging(service=True)
    workspace = current_workspace()
    _warn_about_webhook(workspace)
    scheduler, stop_scheduler = run_scheduler_in_background(workspace)
    try:
        uvicorn.Server(_uvicorn_config(workspace, host, port, scheduler)).run()
    finally:
        stop_scheduler()


@app.command()
def demo(
    with_events: Annotated[
        bool,
        typer.Option(
            "--with-events",
            help="Then post simulated SendGrid events through the real, signed webhook and print the send report.",
        ),
    ] = False,
) -> None:
    """Run every stage on embedded defaults (SQLite, outbox backend, sample audience; no API key)."""
    from needlecast.devtools.demo import run_demo

    setup_logging()
    raise typer.Exit(run_demo(current_workspace(), console, with_events=with_events, actor=operator()))


MetricsPortOption = Annotated[
    int,
    typer.Option(
        "--metrics-port",
        help="Serve Prometheus metrics on this port (0: none): emails recorded, provider requests by status "
        "and latency, rate-limit waits, queue depth, heartbeat ages.",
    ),
]
MetricsHostOption = Annotated[
    str, typer.Option("--metrics-host", help="Interface the metrics endpoint listens on (0.0.0.0 for a remote scrape).")
]


@app.command()
def scheduler(metrics_port: MetricsPortOption = 0, metrics_host: MetricsHostOption = "127.0.0.1") -> None:
    """Run the scheduler for this workspace until SIGTERM or Ctrl-C (same as `python scheduler.py`).

    One scheduler leads per database; start another on a second machine and it waits as a standby, taking
    over within \\[schedule] takeover_seconds (default 15) when the leader's connection dies. The scheduler
    plans and enqueues; while any `needlecast worker` is alive it leaves the sending to the workers.
    """
    from needlecast.schedule import run_scheduler

    setup_logging(service=True)
    workspace = current_workspace()
    if metrics_port:
        _serve_metrics(workspace, metrics_port, metrics_host)
    run_scheduler(workspace)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", help="Requests in flight at once (default: \\[delivery] max_in_flight)."),
    ] = None,
    metrics_port: MetricsPortOption = 0,
    metrics_host: MetricsHostOption = "127.0.0.1",
) -> None:
    """Claim and send the due emails of every campaign until SIGTERM or Ctrl-C.

    Start as many as you like, on any machine that reaches the database (PostgreSQL for more than one
    machine) and has this workspace: claims keep them apart, and rate limits hold for all of them together.
    SIGTERM finishes the requests in flight and returns the rest to the queue. A worker that dies is found
    by the others within \\[delivery] lease_seconds (at once on the same machine) and its emails recovered.
    """
    import signal as signals
    import threading

    from needlecast.fleet.worker import Worker

    setup_logging(service=True)
    workspace = current_workspace()
    engine = current_store(workspace)
    stop = threading.Event()
    metrics = _serve_metrics(workspace, metrics_port, metrics_host) if metrics_port else None

    def on_signal(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            logging.getLogger("needlecast.fleet.worker").info("signal %d: finishing the requests in flight", signum)
        stop.set()

    signals.signal(signals.SIGTERM, on_signal)
    signals.signal(signals.SIGINT, on_signal)
    running = Worker(
        workspace,
        engine,
        stop=stop,
        concurrency=concurrency,
        on_recorded=metrics.record if metrics else None,
        telemetry=metrics,
    )
    running.run()
    if running.fenced:
        raise typer.Exit(3)


def _serve_metrics(workspace: Any, port: int, host: str) -> Any:
    from needlecast.fleet.telemetry import SenderMetrics

    metrics = SenderMetrics(current_store(workspace), workspace.settings.delivery.lease_seconds)
    try:
        metrics.serve(port, host)
    except OSError as err:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {err.strerror}") from err
    return metrics


@app.command()
def send(
    campaign: CampaignArgument,
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help=(
                "A broadcast: send now instead of at its scheduled time (quiet hours and the frequency cap still "
                "apply; deferred emails are sent when they end). A sequence: enrol and send what is due now."
            ),
        ),
    ] = False,
    timings: Annotated[
        bool,
        typer.Option(
            "--timings", help="Print the seconds spent in each stage (plan, enqueue, dispatch, claim, mark, ...)."
        ),
    ] = False,
) -> None:
    """Send a campaign without waiting for the scheduler.

    A broadcast sends what is due by its schedule (a schedule already past is refused unless --now); a
    sequence enrols whoever its rule admits and sends the steps that are due. Run twice, nothing is sent
    twice.
    """
    from needlecast.actions.campaigns import send_now_locally
    from needlecast.devtools.stopwatch import Stopwatch
    from needlecast.devtools.timed import stage_seconds, timed_runner

    setup_logging()
    workspace = current_workspace()
    watch = Stopwatch()
    report, runner = send_now_locally(
        current_store(workspace),
        workspace,
        operator(),
        campaign,
        send_now=now,
        make_runner=partial(timed_runner, watch=watch) if timings else None,
    )
    _print_report(report)
    if timings:
        stages = ", ".join(f"{stage} {seconds:.3f}" for stage, seconds in stage_seconds(watch, runner).items())
        console.print(f"seconds by stage (this process): {stages}", highlight=False)
    _print_still_queued(campaign)


def _print_report(report: Any) -> None:
    console.print(
        f"{report.campaign_id}: {report.enqueued} new ledger row(s), {report.sent} sent, "
        f"{report.failed} failed, {report.released} deferred, {report.unknown} unknown, "
        f"{sum(report.skipped.values())} skipped"
        + (f", {report.enrolled} enrolled, {report.exited} exited" if report.enrolled or report.exited else ""),
        highlight=False,
    )
    if report.inactive:
        console.print(f"  campaign is {report.inactive}: nothing sent", highlight=False, markup=False)
    for (step, segment, variant, arm), count in sorted(report.sent_by.items()):
        console.print(
            f"  sent: step {step}, segment {segment}, variant {variant}{', arm ' + arm if arm else ''}: {count}",
            highlight=False,
        )
    for label, counter in (("excluded", report.excluded), ("deferred", report.deferred), ("skipped", report.skipped)):
        for reason, count in sorted(counter.items()):
            console.print(f"  {label}: {reason}: {count}", highlight=False, markup=False)
    if report.paused:
        console.print(f"[red]campaign paused after repeated failures:[/] {escape(report.paused)}")


def _print_still_queued(campaign_id: str) -> None:
    from needlecast.readmodels.fleet import queued_by_due

    waiting = queued_by_due(current_store(), campaign_id)
    if not waiting:
        return
    count = sum(n for _, n in waiting)
    console.print(
        f"  {count} email(s) wait in the queue, the first due at {waiting[0][0]:%Y-%m-%d %H:%M} UTC: the scheduler "
        f"(`needlecast scheduler`) sends them when due, or run `needlecast send {campaign_id}` again after then",
        highlight=False,
    )
