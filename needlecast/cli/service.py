"""Long-running services and the outbox: web, serve, outbox list/show."""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Annotated, Any

import typer

from needlecast.cli.common import (
    FormatOption,
    OutputFormat,
    app,
    console,
    current_store,
    current_workspace,
    err_console,
    outbox_app,
    print_json,
    setup_logging,
    table,
)
from needlecast.config import Workspace

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


@outbox_app.command("list")
def outbox_list(
    limit: Annotated[int, typer.Option(help="Show the last N requests.")] = 20,
    format: FormatOption = OutputFormat.table,
) -> None:
    """The recorded requests: number, campaign, step, recipients, subject."""
    from needlecast.delivery.outbox import read_outbox

    workspace = current_workspace()
    rows = []
    for entry in deque(read_outbox(workspace.outbox_dir), maxlen=max(0, limit)):
        request = entry["request"]
        args = request.get("custom_args", {})
        rows.append(
            {
                "n": entry["n"],
                "message_id": entry["message_id"],
                "campaign": args.get("campaign", ""),
                "step": args.get("step", ""),
                "recipients": len(request["personalizations"]),
                "subject": request["subject"],
            }
        )
    if format == OutputFormat.json:
        print_json(rows)
        return
    shown = table(
        f"outbox: last {len(rows)} request(s) in {workspace.outbox_dir}",
        ["n", "message id", "campaign", "step", "recipients", "subject"],
        right=("n", "recipients"),
    )
    for row in rows:
        shown.add_row(*(str(v) for v in row.values()))
    console.print(shown)


@outbox_app.command("show")
def outbox_show(
    number: Annotated[int, typer.Argument(help="Request number (see `needlecast outbox list`).")],
    recipient: Annotated[str | None, typer.Option(help="Whose copy (default: the first recipient).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: WORKSPACE/outbox/show).")] = None,
) -> None:
    """Render one recorded message as its recipient would see it, to .html and .eml."""
    from needlecast.delivery.outbox import find_request, recipient_copy
    from needlecast.templating.eml import build_eml
    from needlecast.templating.tokens import apply_substitutions

    workspace = current_workspace()
    entry = find_request(workspace.outbox_dir, number)
    copy = recipient_copy(entry, recipient)
    request = entry["request"]
    target = out or workspace.outbox_dir / "show"
    target.mkdir(parents=True, exist_ok=True)
    html_path = target / f"request-{number}-recipient-{copy.position}.html"
    eml_path = html_path.with_suffix(".eml")
    html_path.write_text(apply_substitutions(copy.message.html, copy.substitutions), encoding="utf-8")
    sender = request["from"]
    eml_path.write_bytes(
        build_eml(
            copy.message,
            copy.substitutions,
            sender=(sender.get("name", ""), sender["email"]),
            recipient=copy.address,
            reply_to=request.get("reply_to", {}).get("email", ""),
            headers=copy.headers,
        )
    )
    console.print(
        f"subject: {apply_substitutions(copy.message.subject, copy.substitutions)}", highlight=False, markup=False
    )
    console.print(str(html_path), highlight=False)
    console.print(str(eml_path), highlight=False)
