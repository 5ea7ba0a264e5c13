"""Campaign commands: plan, campaign list/status/pause/resume/cancel/reconcile, schedule sync."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from needlecast.cli.common import (
    FormatOption,
    OutputFormat,
    app,
    campaign_app,
    console,
    current_store,
    current_workspace,
    operator,
    print_json,
    schedule_app,
    setup_logging,
    table,
)

if TYPE_CHECKING:
    from needlecast.readmodels.campaigns import CampaignDetail

CampaignArgument = Annotated[str, typer.Argument(help="Campaign id (see `needlecast campaign list`).")]


@app.command()
def plan(
    campaign: Annotated[str | None, typer.Argument(help="Campaign id (default: every campaign).")] = None,
    days: Annotated[
        int | None,
        typer.Option(help="How many days ahead to plan (default 14; 30 for a journey or a sequence named alone)."),
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write every planned email to this CSV.")] = None,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Show who gets what and when, who is excluded and why, and what would stop a send. Sends nothing."""
    from needlecast.readmodels.plans import plan_days, plan_preview

    setup_logging()
    workspace = current_workspace()
    days = days if days is not None else plan_days(workspace, campaign)
    preview = plan_preview(current_store(workspace), workspace, campaign, days, now=datetime.now(UTC), csv=csv)
    if format == OutputFormat.json:
        print_json(
            {
                "days": days,
                "campaigns": [item.as_dict() for item in preview.campaigns],
                "problems": preview.problems,
                "csv": {"path": str(csv), "emails": preview.csv_emails} if csv else None,
            }
        )
        return
    for problem in preview.problems:
        console.print(f"[red]not planned:[/] {escape(problem)}", highlight=False)
    for item in preview.campaigns:
        if item.kind == "journey" or (item.kind == "sequence" and not item.emails):  # the journey engine's forecast
            expected = table(
                f"{item.id} ({item.kind}, segment {item.segment}): expected emails per day and node, next {days} days",
                ["day (UTC)", "node", "emails"],
                right=("emails",),
            )
            for row in item.forecast:
                expected.add_row(row["day"], row["node"], ("at most " if row["at_most"] else "") + str(row["emails"]))
            console.print(expected)
        else:
            shown = table(
                f"{item.id} ({item.kind}, segment {item.segment}): {item.total} email(s) in the next {days} days",
                ["day (UTC)", "step", "variant", "arm", "recipients"],
                right=("recipients",),
            )
            for row in item.emails:
                shown.add_row(row["day"], row["step"], row["variant"], row["arm"] or "-", str(row["recipients"]))
            console.print(shown)
        console.print(
            "  content: " + "; ".join(f"step {step}: {article}" for step, article in item.articles.items()),
            highlight=False,
            markup=False,
        )
        if item.new_enrolments:
            console.print(f"  would enrol {item.new_enrolments} new contact(s)")
        for label, counter in (("excluded", item.excluded), ("deferred", item.deferred)):
            for reason, count in sorted(counter.items()):
                console.print(f"  {label}: {reason}: {count}", highlight=False, markup=False)
        for note in item.notes:
            console.print(f"  [yellow]note:[/] {escape(note)}", highlight=False)
    if csv:
        console.print(f"{preview.csv_emails} planned email(s) written to {csv}", highlight=False)


@campaign_app.command("list")
def campaign_list(format: FormatOption = OutputFormat.table) -> None:
    """Every campaign: kind, segment, state, next send and its emails by ledger state."""
    from needlecast.readmodels.campaigns import campaign_list as overviews

    setup_logging()
    workspace = current_workspace()
    items = overviews(current_store(workspace), workspace)
    if format == OutputFormat.json:
        print_json([item.as_dict() for item in items])
        return
    shown = table(
        f"campaigns in {workspace.campaigns_dir}",
        ["campaign", "kind", "segment", "state", "next send (UTC)", "queued", "sent", "failed", "unknown", "skipped"],
        right=("queued", "sent", "failed", "unknown", "skipped"),
    )
    for item in items:
        counts = item.counts
        shown.add_row(
            item.id,
            item.kind,
            item.segment or "-",
            item.state,
            f"{item.next_send:%Y-%m-%d %H:%M}" if item.next_send else "-",
            *(str(counts.get(k, 0)) for k in ("queued", "sent", "failed", "unknown", "skipped")),
        )
    console.print(shown)
    for item in items:
        if item.state == "file has errors":
            console.print(f"[red]{escape(item.file)}:[/] {escape(item.note)}", highlight=False)


@campaign_app.command("status")
def campaign_status(campaign: CampaignArgument, format: FormatOption = OutputFormat.table) -> None:
    """One campaign: its state, when it sends next, its emails per ledger state and when queued ones are due."""
    from needlecast.readmodels.campaigns import campaign_detail

    setup_logging()
    workspace = current_workspace()
    detail = campaign_detail(current_store(workspace), workspace, campaign)
    item = detail.overview
    if format == OutputFormat.json:
        print_json(item.as_dict())
        return
    console.print(f"{item.id}: {item.state}" + (f" ({item.note})" if item.note else ""), highlight=False, markup=False)
    if item.next_send:
        console.print(f"next send: {item.next_send:%Y-%m-%d %H:%M} UTC ({item.next_send_note})", highlight=False)
    elif item.next_send_note:
        console.print(f"next send: {item.next_send_note}", highlight=False, markup=False)
    counts = table("emails by ledger state", list(item.counts), right=tuple(item.counts))
    counts.add_row(*(str(v) for v in item.counts.values()))
    console.print(counts)
    _print_outcome(detail)
    for line in item.ab_tests:
        console.print(f"A/B: {line}", highlight=False, markup=False)
    if item.unknown_requests:
        unknown = table(
            "unknown emails by request (a crash or a lost answer: the provider may have them)",
            ["request", "emails", "written (UTC)", "reconcile would"],
            right=("emails",),
        )
        for request in item.unknown_requests:
            written = datetime.fromisoformat(request["written_at"])
            unknown.add_row(
                request["request"], str(request["emails"]), f"{written:%Y-%m-%d %H:%M:%S}", request["reconcile"]
            )
        console.print(unknown)
    if item.queued_by_due:
        due = table("queued emails by due time", ["due (UTC)", "emails"], right=("emails",))
        for moment, count in item.queued_by_due:
            due.add_row(f"{moment:%Y-%m-%d %H:%M}", str(count))
        console.print(due)


def _print_outcome(detail: CampaignDetail) -> None:
    """What happened to each email, in words: skipped ones by reason (with what the rule does with them)."""
    if detail.skipped:
        skipped = table("skipped emails by reason (never sent)", ["reason", "emails"], right=("emails",))
        for count, reason in detail.skipped:
            skipped.add_row(reason, str(count))
        console.print(skipped)
    console.print(f"what happened: {detail.said}", highlight=False, markup=False)


def _set_campaign(campaign: str, status: str) -> None:
    from needlecast.actions.campaigns import auto_pause_figures, set_campaign_status

    setup_logging()
    workspace = current_workspace()
    if status == "active":  # a campaign that paused itself: the figures first, then the resume
        figures = auto_pause_figures(current_store(workspace), campaign)
        if figures:
            console.print(f"{campaign} {figures}", highlight=False, markup=False)
    cancelled = set_campaign_status(current_store(workspace), workspace, operator(), campaign, status)
    console.print(f"{campaign}: {status}" + (f"; {cancelled} queued email(s) cancelled" if cancelled else ""))


@campaign_app.command("pause")
def campaign_pause(campaign: CampaignArgument) -> None:
    """Stop sending (queued emails wait) until `resume`."""
    _set_campaign(campaign, "paused")


@campaign_app.command("resume")
def campaign_resume(campaign: CampaignArgument) -> None:
    """Resume a paused campaign; its queued emails go at the next run."""
    _set_campaign(campaign, "active")


@campaign_app.command("cancel")
def campaign_cancel(campaign: CampaignArgument) -> None:
    """Cancel a campaign: queued emails are marked cancelled and never sent."""
    _set_campaign(campaign, "cancelled")


@campaign_app.command("reconcile")
def campaign_reconcile(
    campaign: CampaignArgument,
    resend_unknown: Annotated[
        bool,
        typer.Option(
            "--resend-unknown",
            help=(
                "Queue the emails still unknown after reconciling to be sent again. They may reach someone twice: "
                "only after checking the provider's activity."
            ),
        ),
    ] = False,
) -> None:
    """Settle 'unknown' emails from stored provider events; optionally resend the rest.

    A request is settled whole: one event for any of its emails proves it accepted (all sent); a request with
    no event while later ones have events is proved lost after \\[delivery] reconcile_after_minutes and its
    emails are queued again. The scheduler does this at every sweep; this command does it now."""
    from needlecast.actions.campaigns import reconcile_campaign

    setup_logging()
    workspace = current_workspace()
    done = reconcile_campaign(current_store(workspace), workspace, operator(), campaign, resend_unknown=resend_unknown)
    requests = done.requests
    if requests.accepted or requests.lost:
        console.print(
            f"requests: {requests.accepted} proved accepted by an event, {requests.lost} proved lost "
            f"({requests.requeued_rows} email(s) queued again), {requests.waiting} still waiting for events"
        )
    console.print(
        f"{done.settled} unknown email(s) settled as sent from provider events; "
        f"{done.resent} queued to be sent again; {done.left} still unknown"
    )


@schedule_app.command("sync")
def schedule_sync() -> None:
    """Bring the job store in line with the campaign files (changed reschedule, deleted unschedule)."""
    from needlecast.actions.campaigns import sync_schedule

    setup_logging()
    workspace = current_workspace()
    result = sync_schedule(current_store(workspace), workspace, operator())
    if result is None:
        console.print("a scheduler is running: it re-reads the campaign files within a minute")
    else:
        console.print(f"{result[0]} job(s) added or changed, {result[1]} removed")


@app.command()
def status(format: FormatOption = OutputFormat.table) -> None:
    """Who is sending: the leading scheduler and its standbys, the live workers (with their heartbeat ages),
    and how many emails are queued and due."""
    from needlecast.readmodels.fleet import sending_fleet

    setup_logging()
    workspace = current_workspace()
    found = sending_fleet(current_store(workspace), workspace)
    if format == OutputFormat.json:
        print_json(found.as_dict())
        return
    leader = found.leader
    console.print(
        f"leader: scheduler {leader.id} on {leader.host} (pid {leader.pid}), "
        f"heartbeat {leader.heartbeat_age_seconds:g} s ago"
        if leader
        else "leader: none (no scheduler is running: start one with `needlecast scheduler`)",
        highlight=False,
        markup=False,
    )
    console.print(f"standby schedulers: {len(found.standbys)}", highlight=False)
    shown = table("live senders", ["id", "kind", "host", "pid", "heartbeat (s ago)", "up (s)"], right=("pid",))
    for info in (*found.standbys, *found.workers, *found.others):
        shown.add_row(
            info.id, info.kind, info.host, str(info.pid), f"{info.heartbeat_age_seconds:g}", f"{info.up_seconds:g}"
        )
    console.print(shown)
    console.print(
        f"workers alive: {len(found.workers)}"
        + ("" if found.workers else " (the scheduler sends itself; start workers with `needlecast worker`)"),
        highlight=False,
        markup=False,
    )
    console.print(f"queue: {found.queued} email(s) queued, {found.due} due now", highlight=False)
