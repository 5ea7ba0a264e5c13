"""What every campaign is doing: `needlecast campaign list` / `status`, and the console's campaign list.

Contract: `campaign_overviews(ctx, conn, now)` returns one `Overview` per campaign file (a file that does
not load is listed with its problem, never hidden) and per campaign that has ledger state but no file any
more; `campaign_overview(ctx, conn, id, now)` one, or `NotFound` naming the campaigns there are. An overview
holds ids, counts (skipped emails by reason too) and times only. Its counts are `ledger_counts` (one GROUP
BY over the campaign's rows); a caller that keeps them (the web app) passes them in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from needlecast import ledger
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import BROADCAST, Campaign
from needlecast.campaign.plan.scheduling import audience_zones, broadcast_moments
from needlecast.campaign.plan.winner import decision_due_at, load_decisions, winner_steps
from needlecast.campaign.send.state import find_state
from needlecast.errors import NotFound
from needlecast.store.delivery import delivery_store
from needlecast.store.schema import campaign_state
from needlecast.wording import Note, duration_words, local_time

NOT_SCHEDULED = "not scheduled"
DRAFT = "draft"
BROKEN = "file has errors"


@dataclass
class Overview:
    id: str
    name: str
    kind: str
    segment: str
    file: str
    state: str  # active, paused, cancelled, not scheduled, draft, file has errors
    note: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)  # skipped emails by reason (`campaign.outcome` words them)
    next_send: datetime | None = None
    next_send_note: str = ""
    queued_by_due: list[tuple[datetime, int]] = field(default_factory=list)
    ab_tests: list[str] = field(default_factory=list)  # each winner test: decided (winner, rule, figures) or when
    # Unknown emails by request, with what `campaign reconcile` would do with each request now.
    unknown_requests: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["next_send"] = self.next_send.isoformat() if self.next_send else None
        data["queued_by_due"] = [{"due_at": due.isoformat(), "emails": n} for due, n in self.queued_by_due]
        return data


def _next_send(
    ctx: CampaignContext,
    campaign: Campaign,
    state: dict[str, Any] | None,
    queued: list[tuple[datetime, int]],
    zones: set[str],
    now: datetime,
) -> tuple[datetime | None, str]:
    if queued:
        due = queued[0][0]
        return due, "queued emails are due; the scheduler sends them" if due <= now else "first queued email"
    if campaign.kind == BROADCAST:
        upcoming = [m for m in broadcast_moments(campaign, zones) if m > now]
        if upcoming:
            return upcoming[0], "scheduled" if state else "once scheduled"
        if state:
            return None, "sent"
        return None, Note(
            "its schedule is past: send it with --now, or choose a later time",
            "its schedule is past: send it now (Send now, under Actions), or choose a later time",
        )
    interval = ctx.workspace.settings.schedule.sweep_interval_seconds
    return None, f"each sweep (every {interval} s) enrols new members and sends the steps that are due"


LedgerCounts = tuple[dict[str, int], dict[str, int]]  # a campaign's emails by status, its skipped by reason


def ledger_counts(conn: Connection, campaign_id: str) -> LedgerCounts:
    """A campaign's emails by status and its skipped emails by reason, counted now in one pass."""
    return delivery_store(conn).counts_and_skipped(conn, campaign_id)


def _overview(
    ctx: CampaignContext,
    conn: Connection,
    campaign: Campaign,
    zones: set[str],
    now: datetime,
    counted: LedgerCounts | None = None,
) -> Overview:
    state = find_state(conn, campaign.id)
    queued = delivery_store(conn).queued_by_due(conn, campaign.id)
    next_send, note = _next_send(ctx, campaign, state, queued, zones, now)
    if campaign.draft:
        status, status_note = (
            DRAFT,
            Note(
                "nothing is sent until someone presses Schedule in the console, or removes 'draft: true' from its file",
                "nothing is sent until someone presses Schedule under Actions",
            ),
        )
    elif state is None:
        status, status_note = (
            NOT_SCHEDULED,
            Note(
                "`needlecast schedule sync` or a running scheduler schedules it",
                "the scheduler schedules it when it next reads the campaigns, or press Schedule under Actions",
            ),
        )
    else:
        status, status_note = state["status"], state["note"]
    counts, skipped = counted if counted is not None else ledger_counts(conn, campaign.id)
    return Overview(
        id=campaign.id,
        name=campaign.name,
        kind=campaign.kind,
        segment=campaign.segment,
        file=campaign.path.name,
        state=status,
        note=status_note,
        counts=counts,
        skipped=skipped,
        next_send=next_send,
        next_send_note=note,
        queued_by_due=queued,
        ab_tests=_ab_tests(conn, campaign),
        unknown_requests=unknown_requests(ctx, conn, campaign.id),
    )


def unknown_requests(ctx: CampaignContext, conn: Connection, campaign_id: str) -> list[dict[str, Any]]:
    """The campaign's unknown requests (`ledger.judge_requests`), each with what reconciling would do."""
    lost_after = ctx.workspace.settings.delivery.reconcile_after_minutes * 60
    shown = []
    for verdict in ledger.judge_requests(conn, campaign_id, lost_after):
        if verdict.verdict == ledger.ACCEPTED_BY_EVENT:
            action = "settle as sent: an event proves the request was accepted"
        elif verdict.verdict == ledger.PROVED_LOST:
            action = "queue again: no event, and later requests have events (proved lost)"
        else:
            when = f"{verdict.lost_from:%Y-%m-%d %H:%M} UTC" if verdict.lost_from else "never"
            action = f"wait for events; provable lost from {when} if later requests have events by then"
        shown.append(
            {
                "request": verdict.request_id,
                "emails": verdict.emails,
                "written_at": verdict.written_at.isoformat(),
                "reconcile": action,
            }
        )
    return shown


def _ab_tests(conn: Connection, campaign: Campaign) -> list[str]:
    decided = load_decisions(conn, campaign.id)
    shown: list[str] = []
    for step, test in winner_steps(campaign):
        if step.id in decided:
            at = decided[step.id].decided_at
            said = decided[step.id].describe() + "; decided "
            shown.append(Note(said + f"{at:%Y-%m-%d %H:%M} UTC", said + local_time(at, campaign.time_zone)))
            continue
        due = decision_due_at(conn, campaign, step)
        when = f"{due:%Y-%m-%d %H:%M} UTC" if due else f"{test.decide_after} after the test slice is due"
        local = local_time(due, campaign.time_zone) if due else f"{duration_words(test.decide_after)} after the test"
        said = f"step {step.id}: testing {test.test_fraction:.0%} of the audience on {test.metric}; decided "
        shown.append(Note(said + when, said + (local if due else local + " slice is due")))
    return shown


def campaign_overviews(ctx: CampaignContext, conn: Connection, now: datetime) -> list[Overview]:
    """Every campaign (see the module contract), by id."""
    zones = audience_zones(conn)
    found = {c.id: _overview(ctx, conn, c, zones, now) for c in ctx.campaigns.values()}
    for problem in ctx.problems:
        key = problem.campaign_id or problem.path
        found.setdefault(
            key,
            Overview(
                id=problem.campaign_id or "?",
                name="",
                kind="?",
                segment="",
                file=problem.path.rsplit("/", 1)[-1],
                state=BROKEN,
                note=Note(str(problem), f"its file has an error in '{problem.field}': {problem.problem}"),
                counts=delivery_store(conn).counts(conn, problem.campaign_id) if problem.campaign_id else {},
            ),
        )
    for campaign_id, status, note in conn.execute(
        select(campaign_state.c.campaign_id, campaign_state.c.status, campaign_state.c.note)
    ):
        if campaign_id not in found:
            found[campaign_id] = Overview(
                id=campaign_id,
                name="",
                kind="?",
                segment="",
                file="(no file)",
                state=status,
                note=note or "its campaign file is gone; the ledger keeps what it sent",
                counts=delivery_store(conn).counts(conn, campaign_id),
                skipped=delivery_store(conn).skipped_by_reason(conn, campaign_id),
                queued_by_due=delivery_store(conn).queued_by_due(conn, campaign_id),
            )
    return [found[key] for key in sorted(found)]


def campaign_overview(
    ctx: CampaignContext, conn: Connection, campaign_id: str, now: datetime, counted: LedgerCounts | None = None
) -> Overview:
    """One campaign's overview; `NotFound` (with the campaigns there are) for an unknown id. `counted`: its
    `ledger_counts` already counted (default: counted now). A campaign whose file loads is read alone."""
    campaign = ctx.campaigns.get(campaign_id)
    if campaign is not None:
        return _overview(ctx, conn, campaign, audience_zones(conn), now, counted)
    for item in campaign_overviews(ctx, conn, now):
        if item.id == campaign_id:
            return item
    ctx.campaign(campaign_id)  # raises NotFound naming the defined campaigns (or the file that failed)
    raise NotFound(f"no campaign '{campaign_id}'")
