"""`needlecast plan`: who gets what, when, and what would stop a campaign, without sending or writing anything.

Contract: `build_plans(workspace, engine, campaign_id, days, now)` plans one campaign (or every one) for the
next `days` days with the same rules the scheduler uses, renders every step it plans, and gives each plan
`notes` that say why it plans nothing or what will stop it from sending (a draft, a paused campaign, a
schedule already past, a step that does not render, the sign-off gate). Campaign files that do not load are
returned in `problems`; the other campaigns are planned all the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine

from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.membership import load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.gate import blocking_findings
from needlecast.campaign.definition.model import BROADCAST, JOURNEY, SEQUENCE, Campaign
from needlecast.campaign.journeys.outlook import journey_plan
from needlecast.campaign.plan.rules import (
    EXCLUDED_ALREADY,
    EXCLUDED_CAPPED_EARLIER,
    Plan,
    load_ledger_view,
    plan_broadcast,
    plan_sequence,
)
from needlecast.campaign.plan.scheduling import audience_zones, broadcast_moments, refuse_if_past
from needlecast.campaign.plan.send_time import engagement_for
from needlecast.campaign.plan.send_time import summary as send_time_summary
from needlecast.campaign.plan.warmup_days import days_note, engagement_scores, spread
from needlecast.campaign.plan.winner import decision_due_at, load_decisions, winner_steps
from needlecast.campaign.send.rendering import render_campaign
from needlecast.campaign.send.state import ACTIVE, find_state
from needlecast.config import Workspace
from needlecast.content.model import GENERAL
from needlecast.errors import CampaignFileError, NeedlecastError
from needlecast.wording import Note, duration_words, local_time


@dataclass
class Plans:
    plans: list[Plan] = field(default_factory=list)
    problems: list[CampaignFileError] = field(default_factory=list)


def build_plans(
    workspace: Workspace,
    engine: Engine,
    campaign_id: str | None,
    days: int,
    now: datetime,
    *,
    audience: FrameCache | None = None,
    send_now: bool = False,
    context: CampaignContext | None = None,
) -> Plans:
    """The plan of one campaign (or every campaign) for the next `days` days (see the module contract);
    `audience` gives the contacts frame and segment results (the web app's cache; default: read now);
    `send_now`: a broadcast planned as "send now" would send it (due now, then quiet hours and the cap);
    `context`: the workspace's campaigns as the caller loaded them just now (default: loaded here)."""
    ctx = context or CampaignContext.load(workspace)
    campaigns = [ctx.campaign(campaign_id)] if campaign_id else list(ctx.campaigns.values())
    horizon = now + timedelta(days=days)
    result = Plans(problems=[] if campaign_id else list(ctx.problems))
    with engine.connect() as conn:
        frame = audience.frame(conn) if audience else load_frame(conn)
        zones = audience_zones(conn)
        for campaign in campaigns:
            if campaign.kind == JOURNEY:  # no list of emails: each person follows their own path
                result.plans.append(journey_plan(conn, campaign, now, horizon, people=frame))
                continue
            view = load_ledger_view(conn, campaign.id, now, event_types=campaign.event_types)
            if campaign.kind == SEQUENCE and campaign.journey is not None:  # run by the journey engine
                result.plans.append(_sequence_plan(ctx, conn, campaign, frame, view, now, horizon))
                continue
            warm_note = ""
            if campaign.kind == BROADCAST:
                members = audience.segment(conn, ctx.segments[campaign.segment], now) if audience else None
                decisions = load_decisions(conn, campaign.id) if winner_steps(campaign) else {}
                plan = plan_broadcast(
                    ctx,
                    campaign,
                    frame,
                    view.keys,
                    view.history,
                    now,
                    send_now=send_now,
                    members=members,
                    decisions=decisions,
                    engagement=None if send_now else engagement_for(conn, campaign, now),
                )
                plan.emails, warm_note = _warm_up(conn, workspace, plan, now)
                planned_any = not plan.emails.empty  # beyond the horizon too
                if planned_any:
                    plan.emails = plan.emails[plan.emails["due_at"] <= pd.Timestamp(horizon)]
            else:
                planned_any = True
                plan = plan_sequence(
                    ctx,
                    campaign,
                    frame,
                    view.enrolled,
                    view.keys,
                    view.history,
                    now,
                    view.started_at or now,
                    horizon,
                    view.events,
                    engagement_for(conn, campaign, now),
                )
            plan.notes = _notes(
                ctx, conn, campaign, plan, zones, view.started_at, now, horizon, days, planned_any=planned_any
            )
            if warm_note:
                plan.notes.append(warm_note)
            if not plan.emails.empty and (plan.emails["timing"] != "").any():
                optimised = plan.emails[plan.emails["timing"] != ""]
                timing, due = optimised["timing"], optimised["due_at"]
                plan.notes.append(
                    Note(send_time_summary(timing, due), send_time_summary(timing, due, campaign.time_zone))
                )
            result.plans.append(plan)
    return result


def _sequence_plan(
    ctx: CampaignContext,
    conn: Connection,
    campaign: Campaign,
    frame: pd.DataFrame,
    view: Any,
    now: datetime,
    horizon: datetime,
) -> Plan:
    """A sequence's plan from the journey engine's forecast (`journeys.outlook`): the people it would enrol now
    (its `enrol:` rule, as the sweeper applies it) walk it beside those already in it."""
    enrolling = plan_sequence(
        ctx, campaign, frame, view.enrolled, view.keys, view.history, now, view.started_at or now, now, view.events
    )
    plan = journey_plan(conn, campaign, now, horizon, people=frame, newcomers=enrolling.new_enrolments)
    plan.candidates = enrolling.candidates
    stops = _stopping_notes(ctx, campaign, find_state(conn, campaign.id))  # a draft, paused, cancelled
    plan.notes = _winner_notes(conn, campaign) + stops + plan.notes
    if plan.forecast is None or plan.forecast.empty:
        plan.notes.append(_sequence_nothing(campaign, plan, view.started_at))
    return plan


def _warm_up(conn: Connection, workspace: Workspace, plan: Plan, now: datetime) -> tuple[pd.DataFrame, str]:
    """A broadcast's emails spread over a new sender's warm-up days (`warmup_days.spread`), and what `plan` says of
    them (the days it takes, as the clinic's calendar has them; '' without a warm-up)."""
    warm = workspace.settings.deliverability.warmup
    if warm is None:
        return plan.emails, ""
    emails, _ = spread(plan.emails, warm, engagement_scores(conn, now))
    zone = workspace.settings.clinic.time_zone
    said = days_note(emails, warm, zone)
    # The command line's table counts UTC days: its note names the zone of its own days.
    return emails, Note(said[:-1] + f" (days in {zone}).", said) if said else ""


def _stopping_notes(ctx: CampaignContext, campaign: Campaign, state: Mapping[str, Any] | None) -> list[str]:
    """What holds the campaign back before any plan: a draft, a paused or cancelled state, a step that does not
    render, lint errors that the sign-off gate will block on."""
    notes: list[str] = []
    if campaign.draft:
        notes.append(
            Note(
                "a draft: nothing is scheduled or sent until someone presses Schedule in the console, or removes "
                "'draft: true' from its file",
                "a draft: nothing is scheduled or sent until someone presses Schedule under Actions",
            )
        )
    elif state is not None and state["status"] != ACTIVE:
        notes.append(
            Note(
                f"{state['status']}: nothing is sent until `needlecast campaign resume {campaign.id}`",
                f"{state['status']}: nothing is sent until someone resumes it (Resume, under Actions)",
            )
        )
    try:
        render_campaign(ctx, campaign)
    except CampaignFileError as err:
        notes.append(Note(f"will not send: {err}", f"will not send: {_in_words(err)}"))
    if campaign.signoff is None:
        findings = blocking_findings(ctx, campaign)
        if findings:
            first = findings[0]
            notes.append(
                Note(
                    f"will be blocked by the sign-off gate: `needlecast lint` reports {len(findings)} error(s), "
                    f"e.g. {first.file}:{first.line} {first.rule}; fix them or record a signoff in "
                    f"{campaign.path.name}",
                    f"will be blocked by the sign-off gate: the claims review finds {len(findings)} error(s) (see "
                    "Claims review below); fix them, or record a sign-off",
                )
            )
    return notes


def _notes(
    ctx: CampaignContext,
    conn: Connection,
    campaign: Campaign,
    plan: Plan,
    zones: set[str],
    started_at: datetime | None,
    now: datetime,
    horizon: datetime,
    days: int,
    *,
    planned_any: bool = True,
) -> list[str]:
    """What stops the campaign or why it plans nothing; `planned_any`: whether it planned any email before the
    horizon was applied (a broadcast that already went to everyone planned none)."""
    notes: list[str] = _winner_notes(conn, campaign)
    state = find_state(conn, campaign.id)
    notes += _stopping_notes(ctx, campaign, state)
    if campaign.kind == BROADCAST and (state is None or state["digest"] != campaign.digest) and plan.emails.size:
        try:
            refuse_if_past(campaign, zones, now)
        except CampaignFileError as err:
            notes.append(
                Note(f"will be refused when scheduled: {err}", f"will be refused when scheduled: {_in_words(err)}")
            )
    queued = int((plan.emails["status"] == "queued").sum()) if not plan.emails.empty else 0
    held = _nothing_new(plan)
    if queued:
        capped = _capped_earlier(plan)
        return notes + ([f"besides: {capped}"] if capped else [])
    if campaign.kind == BROADCAST:
        if held and not planned_any:
            notes.append("plans nothing new: " + held)
            return notes
        upcoming = [m for m in broadcast_moments(campaign, zones) if m > horizon]
        if upcoming and not any(m <= horizon for m in broadcast_moments(campaign, zones)):
            ahead = (upcoming[0] - now).days
            notes.append(
                Note(
                    f"plans nothing in the next {days} days: its first send is {upcoming[0]:%Y-%m-%d %H:%M} UTC "
                    f"(plan further ahead with --days {ahead + 1})",
                    f"plans nothing in the next {days} days: its first send is "
                    f"{local_time(upcoming[0], campaign.time_zone)}, in {ahead} day{'' if ahead == 1 else 's'}",
                )
            )
        elif held:
            notes.append("plans nothing new: " + held)
        else:
            notes.append("plans nothing: the segment has no member who may be mailed (see the exclusions)")
        return notes
    notes.append(_sequence_nothing(campaign, plan, started_at))
    return notes


def _sequence_nothing(campaign: Campaign, plan: Plan, started_at: datetime | None) -> str:
    """Why a sequence plans nothing in the window: whom it enrols, or no step due."""
    if not campaign.enrol.explicit:
        unscheduled = "not scheduled yet, so from now"
        cli_since = unscheduled if started_at is None else f"{started_at:%Y-%m-%d %H:%M} UTC"
        since = unscheduled if started_at is None else local_time(started_at, campaign.time_zone)
        return Note(
            "plans nothing: a sequence without 'enrol' takes the contacts who sign up after it is first "
            f"scheduled ({cli_since}); "
            f"none of the segment's {plan.candidates} member(s) not yet enrolled has. To include earlier "
            'leads, add enrol: {joined_after: "YYYY-MM-DD"}',
            "plans nothing: a sequence that does not say whom it enrols takes the contacts who sign up after "
            f"it is first scheduled ({since});"
            f" none of the segment's {plan.candidates} member(s) not yet enrolled has. To include earlier "
            "leads, edit the campaign and enrol those who signed up after a date",
        )
    if not plan.new_enrolments and plan.candidates:
        rule = f"tag '{campaign.enrol.tag}'" if campaign.enrol.tag else f"signed up after {campaign.enrol.joined_after}"
        return f"plans nothing: none of the segment's {plan.candidates} member(s) not yet enrolled has {rule}"
    return "plans nothing in this window: no step is due for anyone enrolled"


def _in_words(err: CampaignFileError) -> str:
    """A campaign file's problem for people: what is wrong and the fix, without the file, field or command."""
    fix, command, _ = err.fix.partition(": needlecast ")  # a command in the fix is the command line's
    fix += " (Send now, under Actions)" if command and "--now" in err.fix else ""
    return f"{err.problem}: {fix}" if fix else err.problem


def _nothing_new(plan: Plan) -> str:
    """Why a broadcast that already ran plans nothing more: who has the email, and who the cap held back."""
    parts = []
    if plan.excluded.get(EXCLUDED_ALREADY):
        parts.append(f"{plan.excluded[EXCLUDED_ALREADY]} email(s) are already sent or queued")
    capped = _capped_earlier(plan)
    if capped:
        parts.append(capped)
    return "; ".join(parts)


def _capped_earlier(plan: Plan) -> str:
    """What the cap did at an earlier send, and what that means for those people ('' when it held none)."""
    count = plan.excluded.get(EXCLUDED_CAPPED_EARLIER, 0)
    if not count:
        return ""
    return (
        f"{count} were held back by the frequency cap when it was sent (another email from the clinic too "
        "recently): a broadcast skips them for good and does not send it later; to reach them, send a new "
        "campaign once the cap allows"
    )


def _winner_notes(conn: Connection, campaign: Campaign) -> list[str]:
    """What each winner test has decided, or when it will."""
    notes: list[str] = []
    tests = winner_steps(campaign)
    decided = load_decisions(conn, campaign.id) if tests else {}  # a statement fewer on most pages
    for step, test in tests:
        if step.id in decided:
            notes.append(f"A/B decided: {decided[step.id].describe()}; the rest gets arm {decided[step.id].winner}")
            continue
        due = decision_due_at(conn, campaign, step)
        when = f"at {due:%Y-%m-%d %H:%M} UTC" if due else f"{test.decide_after} after the test slice is due"
        local = f"at {local_time(due, campaign.time_zone)}" if due else f"{duration_words(test.decide_after)} after"
        said = (
            f"A/B winner test on step {step.id}: {test.test_fraction:.0%} of the audience tests the arms; the rest "
            f"waits for the winner on {test.metric} (confidence {test.confidence:.0%}, fallback "
            f"{'arm A' if test.fallback == 'A' else 'the better rate'}), decided "
        )
        notes.append(Note(said + when, said + (local if due else f"{local} the test slice is due")))
    return notes


def step_articles(ctx: CampaignContext, campaign: Campaign) -> dict[str, str]:
    """Step id -> the article it draws on ("ID (Treatment)", "every article" for a library-wide step), with the
    concerns of its variants that the article has no section about (those get its general sections)."""
    shown: dict[str, str] = {}
    for step in campaign.steps:
        if step.library:
            shown[step.id] = "every article (library-wide)"
            continue
        article_id = step.article or ctx.library.default_id
        try:
            article = ctx.article_for(step)
        except NeedlecastError as err:
            shown[step.id] = f"{article_id} (cannot be read: {err})"
            continue
        uncovered = [v for v in step.variants or ctx.vocabulary.names if v != GENERAL and not article.covers(v)]
        gap = f"; nothing on {', '.join(uncovered)}: general sections" if uncovered else ""
        shown[step.id] = f"{article.id} ({article.treatment}{gap})"
    return shown


def summary_rows(plan: Plan, time_zone: str = "UTC") -> pd.DataFrame:
    """Recipients per day (in `time_zone`), step, variant and arm (queued emails; skipped ones are in the
    exclusions)."""
    emails = plan.emails
    if emails.empty:
        return pd.DataFrame(columns=["day", "step", "variant", "arm", "recipients"])
    queued = emails[emails["status"] == "queued"].copy()
    queued["day"] = pd.to_datetime(queued["due_at"], utc=True).dt.tz_convert(time_zone).dt.strftime("%Y-%m-%d")
    grouped = queued.groupby(["day", "step_id", "variant", "arm"]).size().reset_index(name="recipients")
    return grouped.rename(columns={"step_id": "step"})


def write_plan_csv(plans: list[Plan], path: Path) -> int:
    """Every planned email, one row each (with the address: this file is for the team, not for logs)."""
    frames = [p.emails for p in plans if not p.emails.empty]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not table.empty:
        table = table.assign(due_at=pd.to_datetime(table["due_at"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return len(table)
