"""The plan rules: who gets which email of a campaign, in which variant and arm, and when; and who does not.

Shared by `needlecast plan` (`plan.preview`, which writes nothing) and the planner (`plan.planner`, which
enqueues what is due), so the preview and the send cannot disagree.

Rules:
- Audience: the campaign's segment (consent, suppression and concern consent already applied there).
- Variant: the member's segment variant if the step has it, else `general` if the step has that, else the
  member is excluded ("no content for their concern").
- A/B arm: a stable hash of (campaign, step, contact) against the split, so a re-plan gives the same arm. A
  broadcast step with a winner test (`ab.test_fraction`) plans only its test slice until the winner is
  decided (the rest is "waiting for the A/B winner"); then the rest, with the winning arm, at the decision
  time or its own time if later (`campaign.plan.winner`).
- When: a broadcast's `send_at`, or `local_time` on `date` in each recipient's zone (their own, else the
  campaign's); a sequence step at enrolment + delay. With `optimise`, each recipient's best hour within the
  window from that moment (`campaign.plan.send_time`; the rule that chose it is the email's `timing`). A time
  inside the recipient's quiet hours moves to the end of them ("deferred by quiet hours").
- Frequency cap across campaigns: no two emails to a contact within 24 hours of each other
  (`max_per_day`, default 1) and at most `max_per_week` (default 3) in the 7 days before. A broadcast email
  over the cap is recorded as skipped ("capped: ...", with which limit) and is never sent later (a broadcast
  is time-bound: Klaviyo's Smart Sending does the same); a sequence email waits until the cap allows it. A
  re-plan names the people an earlier send skipped for the cap as such (`EXCLUDED_CAPPED_EARLIER`), never
  as people who already have the email.
- Sequences enrol members who signed up after `enrol.joined_after` (default: when the campaign was first
  scheduled), or who carry `enrol.tag`, or for whom the clinic's systems reported an `enrol.event` since then;
  they exit on an exit rule (an attribute's value, or a contact event that occurred after they enrolled, or,
  for a new enrolment, after they signed up or after the event that enrolled them), on suppression
  (unsubscribe, bounce, complaint) and on losing consent.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select

from needlecast.audience.membership import SegmentResult, evaluate
from needlecast.audience.segments import attributes_of, variant_for
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import BROADCAST, Campaign, Step
from needlecast.campaign.plan.send_time import Engagement, choose_send_times
from needlecast.campaign.plan.timing import after_quiet_hours, local_moment, parse_quiet_hours
from needlecast.campaign.plan.winner import Decision, in_test_slice
from needlecast.config import ScheduleSettings
from needlecast.content.model import GENERAL
from needlecast.store.cap_window import other_campaigns_emails
from needlecast.store.ledger_people import ledger_people
from needlecast.store.schema import campaign_state, contact_events, contacts, enrolments

EXCLUDED_NO_VARIANT = "no content for their concern"
EXCLUDED_CAPPED = "frequency cap"
EXCLUDED_ALREADY = "already in the ledger"
EXCLUDED_CAPPED_EARLIER = "frequency cap, when it was sent: skipped for good"
CAPPED = "capped: "  # how every frequency-cap skip reason begins
SKIPPED_CAP_DAY = CAPPED + "another email within 24 hours"
SKIPPED_CAP_WEEK = CAPPED + "{} emails in the 7 days before"
DEFERRED_QUIET = "deferred by quiet hours"
DEFERRED_CAP = "deferred by frequency cap"
WAITING_WINNER = "waiting for the A/B winner"

PLAN_COLUMNS = [
    "contact_id",
    "email",
    "campaign_id",
    "step_id",
    "segment",
    "variant",
    "arm",
    "due_at",
    "zone",
    "status",
    "reason",
    "timing",  # send-time optimisation: the rule that chose the moment ("" when the step is not optimised)
]


@dataclass
class Plan:
    campaign: Campaign
    emails: pd.DataFrame  # PLAN_COLUMNS; status "queued" or "skipped" (with reason)
    excluded: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    new_enrolments: list[int] = field(default_factory=list)
    exits: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # why it plans nothing, what will stop it (for `plan`)
    candidates: int = 0  # sequences: segment members the enrol rule was applied to
    # journeys and sequences: the journey engine's expected emails per send node and moment (`journeys.forecast`)
    forecast: pd.DataFrame | None = None


def arm_for(campaign_id: str, step: Step, contact_id: int) -> str:
    if not step.arms:
        return ""
    point = int(hashlib.sha256(f"{campaign_id}|{step.id}|{contact_id}".encode()).hexdigest()[:8], 16) % 100
    edge = 0
    for arm in step.arms:
        edge += arm.share
        if point < edge:
            return arm.name
    return step.arms[-1].name


def _step_variant(step: Step, variants: pd.Series) -> pd.Series:
    if not step.variants:
        return variants
    allowed = set(step.variants)
    fallback = GENERAL if GENERAL in allowed else ""
    return variants.where(variants.isin(allowed), fallback)


def apply_quiet_hours(emails: pd.DataFrame, schedule: ScheduleSettings, deferred: Counter[str]) -> pd.DataFrame:
    quiet = parse_quiet_hours(schedule.quiet_hours)
    if quiet is None or emails.empty:
        return emails
    pairs = emails[["due_at", "zone"]].drop_duplicates()
    moved = {(d, z): after_quiet_hours(d.to_pydatetime(), z, quiet) for d, z in pairs.itertuples(index=False)}
    new_due = [moved[(d, z)] for d, z in zip(emails["due_at"], emails["zone"], strict=True)]
    changed = sum(1 for old, new in zip(emails["due_at"], new_due, strict=True) if old.to_pydatetime() != new)
    if changed:
        deferred[DEFERRED_QUIET] += changed
    emails = emails.copy()
    emails["due_at"] = pd.to_datetime(new_due, utc=True)
    return emails


def apply_cap(
    emails: pd.DataFrame,
    history: pd.DataFrame,
    schedule: ScheduleSettings,
    *,
    defer: bool,
    excluded: Counter[str],
    deferred: Counter[str],
) -> pd.DataFrame:
    """Mark (broadcast) or move (sequence) emails that would break the frequency cap. `history` holds the
    contact_id and moment of every email already in the ledger that counts."""
    if emails.empty or history.empty or (schedule.max_per_day <= 0 and schedule.max_per_week <= 0):
        return emails
    relevant = history[history["contact_id"].isin(emails["contact_id"])]
    if relevant.empty:
        return emails
    near, week = _cap_counts(emails, relevant)
    over = np.zeros(len(emails), dtype=bool)
    if schedule.max_per_day > 0:
        over |= near >= schedule.max_per_day
    if schedule.max_per_week > 0:
        over |= week >= schedule.max_per_week
    if not over.any():
        return emails
    emails = emails.copy()
    if not defer:  # a broadcast: one look, the email is skipped (the loop below is for moving an email on)
        daily = (near >= schedule.max_per_day) if schedule.max_per_day > 0 else np.zeros(len(emails), dtype=bool)
        status = emails.columns.get_loc("status")
        reason = emails.columns.get_loc("reason")
        for position in np.flatnonzero(over):
            emails.iat[position, status] = "skipped"
            emails.iat[position, reason] = (
                SKIPPED_CAP_DAY if daily[position] else SKIPPED_CAP_WEEK.format(week[position])
            )
        excluded[EXCLUDED_CAPPED] += int(over.sum())
        return emails
    by_contact = relevant.groupby("contact_id")["at"].apply(list).to_dict()
    for index, row in emails[over].iterrows():  # only the emails over the cap move: each is walked on
        moments = by_contact[row["contact_id"]]
        due = row["due_at"]
        for _ in range(8):
            near_now = sum(1 for m in moments if abs(m - due) < pd.Timedelta(hours=24))
            week_now = sum(1 for m in moments if due - pd.Timedelta(days=7) <= m <= due)
            if not (
                (schedule.max_per_day > 0 and near_now >= schedule.max_per_day)
                or (schedule.max_per_week > 0 and week_now >= schedule.max_per_week)
            ):
                break
            due = max(m for m in moments if abs(m - due) < pd.Timedelta(days=7)) + pd.Timedelta(hours=24)
        if due != row["due_at"]:
            emails.at[index, "due_at"] = due
            deferred[DEFERRED_CAP] += 1
    return emails


def _cap_counts(emails: pd.DataFrame, history: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """For each email (in `emails`' order), how many of its contact's `history` moments fall within 24 hours
    of its due moment, and how many in the 7 days up to it: counted column-wise over (email, moment) pairs
    (a plan of 200,000 people who all have history took 25 s row by row)."""
    pairs = pd.DataFrame(
        {
            "position": np.arange(len(emails)),
            "contact_id": emails["contact_id"].to_numpy(),
            "due": emails["due_at"].array,
        }
    ).merge(history[["contact_id", "at"]], on="contact_id")
    gap = pairs["at"] - pairs["due"]
    near_pairs = (gap.abs() < pd.Timedelta(hours=24)).to_numpy()
    week_pairs = ((gap >= -pd.Timedelta(days=7)) & (gap <= pd.Timedelta(0))).to_numpy()
    positions = pairs["position"].to_numpy()
    near = np.bincount(positions, weights=near_pairs, minlength=len(emails)).astype(int)
    week = np.bincount(positions, weights=week_pairs, minlength=len(emails)).astype(int)
    return near, week


def _frame_for(
    members: pd.DataFrame, campaign: Campaign, step: Step, due: pd.Series, deferred_zone: str
) -> pd.DataFrame:
    variants = _step_variant(step, members["variant"])
    zones = members["time_zone"].where(members["time_zone"] != "", deferred_zone)
    return pd.DataFrame(
        {
            "contact_id": members["id"].astype("int64"),
            "email": members.get("email", ""),  # a frame for one segment may not read it
            "campaign_id": campaign.id,
            "step_id": step.id,
            "segment": campaign.segment,
            "variant": variants,
            "arm": [arm_for(campaign.id, step, int(c)) for c in members["id"]] if step.arms else "",
            "due_at": pd.to_datetime(due, utc=True).array,
            "zone": zones.array,
            "status": "queued",
            "reason": "",
            "timing": "",
        }
    )


def plan_broadcast(
    ctx: CampaignContext,
    campaign: Campaign,
    frame: pd.DataFrame,
    ledger_keys: LedgerKeys,
    history: pd.DataFrame,
    now: datetime,
    *,
    send_now: bool = False,
    members: SegmentResult | None = None,
    decisions: Mapping[str, Decision] | None = None,
    engagement: Engagement | None = None,
) -> Plan:
    """The broadcast's emails (every step goes to every member). `members`: the segment already evaluated
    over `frame` at `now`, when the caller has it; `decisions`: the A/B winners decided so far, by step;
    `engagement`: the human opens and clicks that send-time optimisation reads (`schedule.optimise`; not
    with `send_now`, which sends now). The people of `ledger_keys` get nothing again; those it has
    as skipped for the cap are counted as such (`EXCLUDED_CAPPED_EARLIER`)."""
    assert campaign.kind == BROADCAST
    result = members if members is not None else evaluate(ctx.segments[campaign.segment], frame, now)
    plan = Plan(campaign, pd.DataFrame(columns=PLAN_COLUMNS), excluded=Counter(result.excluded))
    audience = result.members
    parts = []
    for step in campaign.steps:
        zones = audience["time_zone"].where(audience["time_zone"] != "", campaign.time_zone)
        if send_now:
            due = pd.Series(pd.Timestamp(now), index=audience.index)
        elif campaign.schedule.send_at is not None:
            due = pd.Series(pd.Timestamp(campaign.schedule.send_at).tz_convert("UTC"), index=audience.index)
        else:
            on, at = campaign.schedule.on, campaign.schedule.local_time
            assert on is not None and at is not None  # the loader requires both for a local-time send
            by_zone = {z: pd.Timestamp(local_moment(on, at, z)) for z in zones.unique()}
            due = zones.map(by_zone)
        timing = None
        optimise = campaign.schedule.optimise
        if optimise is not None and not send_now:
            due, timing = choose_send_times(
                campaign.id, step.id, audience.assign(zone=zones), due, optimise, engagement or Engagement.none()
            )
        if step.winner_test is None:
            new = _new_to_ledger(plan, ledger_keys, step, audience, pd.Series(True, index=audience.index))
            emails = _frame_for(audience[new], campaign, step, due[new], campaign.time_zone)
            parts.append(_with_timing(emails, timing[new] if timing is not None else None))
            continue
        test = pd.Series(
            in_test_slice(campaign.id, step.id, audience["id"].tolist(), step.winner_test.test_fraction),
            index=audience.index,
            dtype=bool,
        )
        new = _new_to_ledger(plan, ledger_keys, step, audience, test)
        tested = _frame_for(audience[new], campaign, step, due[new], campaign.time_zone)
        parts.append(_with_timing(tested, timing[new] if timing is not None else None))
        decision = (decisions or {}).get(step.id)
        if decision is None:
            plan.deferred[WAITING_WINNER] += int((~test).sum())
            continue
        new = _new_to_ledger(plan, ledger_keys, step, audience, ~test)
        rest_due = due[new].where(due[new] > pd.Timestamp(decision.decided_at), pd.Timestamp(decision.decided_at))
        rest = _frame_for(audience[new], campaign, step, rest_due, campaign.time_zone)
        parts.append(_with_timing(rest, timing[new] if timing is not None else None).assign(arm=decision.winner))
    emails = pd.concat(parts, ignore_index=True) if parts else plan.emails
    return _finish(ctx, plan, emails, LedgerKeys(), history, defer_cap=False)  # the ledger's people left out above


def _new_to_ledger(
    plan: Plan, ledger_keys: LedgerKeys, step: Step, audience: pd.DataFrame, among: pd.Series
) -> pd.Series:
    """`among` (a mask of `audience`) without the people the ledger already has for `step`, left out before
    their emails are built (a broadcast being sent has a row for nearly everyone). Those with a variant for
    the step are counted in `plan.excluded` as `_finish` counts them (already have it, or held back by the cap
    when it was sent); those without one stay, to be counted as having no variant, as before."""
    if not ledger_keys:
        return among
    ids = audience["id"].to_numpy(dtype="int64")
    has_variant = (_step_variant(step, audience["variant"]) != "").to_numpy()
    held = ledger_keys.holds_step(step.id, ids) & among.to_numpy() & has_variant
    capped = int((ledger_keys.capped_step(step.id, ids) & held).sum())
    for reason, count in ((EXCLUDED_CAPPED_EARLIER, capped), (EXCLUDED_ALREADY, int(held.sum()) - capped)):
        if count:  # a reason is listed only with people in it
            plan.excluded[reason] += count
    return among & ~held


def _with_timing(emails: pd.DataFrame, timing: pd.Series | None) -> pd.DataFrame:
    return emails if timing is None else emails.assign(timing=timing.to_numpy())


def _finish(
    ctx: CampaignContext,
    plan: Plan,
    emails: pd.DataFrame,
    ledger_keys: LedgerKeys,
    history: pd.DataFrame,
    *,
    defer_cap: bool,
) -> Plan:
    if emails.empty:
        plan.emails = emails
        return plan
    no_variant = emails["variant"] == ""
    plan.excluded[EXCLUDED_NO_VARIANT] += int(no_variant.sum())
    emails = emails[~no_variant]
    if ledger_keys:
        # (A broadcast leaves the ledger's people out before this, `_new_to_ledger`, naming those the cap skipped.)
        already_mask = pd.Series(ledger_keys.holds(emails["step_id"], emails["contact_id"]), index=emails.index)
        plan.excluded[EXCLUDED_ALREADY] += int(already_mask.sum())
        emails = emails[~already_mask]
    schedule = ctx.workspace.settings.schedule
    emails = apply_quiet_hours(emails, schedule, plan.deferred)
    emails = apply_cap(emails, history, schedule, defer=defer_cap, excluded=plan.excluded, deferred=plan.deferred)
    plan.emails = emails.reset_index(drop=True)
    plan.excluded = +plan.excluded
    return plan


def _newcomers(
    campaign: Campaign,
    candidates: pd.DataFrame,
    happened: dict[str, dict[int, list[pd.Timestamp]]],
    started_at: datetime,
) -> tuple[pd.DataFrame, dict[int, pd.Timestamp]]:
    """The segment members not yet enrolled whom the campaign's `enrol` rule admits (a tag, an event since the
    start, or a sign-up since it), and for those enrolled by an event the moment their exit events count from."""
    since = _utc(campaign.enrol.joined_after or started_at)
    if campaign.enrol.tag:
        tag = campaign.enrol.tag
        return candidates[candidates["tags"].map(lambda t: tag in (t or "").split(";"))], {}
    if campaign.enrol.event:
        enrolling = happened.get(campaign.enrol.event, {})
        latest = {c: max(times) for c, times in enrolling.items() if max(times) >= since}
        candidates = candidates[candidates["id"].isin(list(latest))]
        return candidates, {int(c): latest[int(c)] for c in candidates["id"]}
    return candidates[candidates["signed_up_at"] >= since], {}


def plan_sequence(
    ctx: CampaignContext,
    campaign: Campaign,
    frame: pd.DataFrame,
    enrolled: pd.DataFrame,
    ledger_keys: LedgerKeys,
    history: pd.DataFrame,
    now: datetime,
    started_at: datetime,
    horizon: datetime,
    events: pd.DataFrame | None = None,
    engagement: Engagement | None = None,
) -> Plan:
    """Enrolments, exits and the sequence emails due up to `horizon`.

    `enrolled` has contact_id, enrolled_at, exited_at for this campaign; `events` (contact_id, type,
    occurred_at) the contact events of the types the campaign names (`Campaign.event_types`). Emails for new
    enrolments are planned as if they enrolled at `now`. A step with `optimise` goes at each person's best
    hour within its window from the step's due time (`engagement`: their human opens and clicks).
    """
    happened = _event_times(events)
    segment = ctx.segments[campaign.segment]
    result = evaluate(segment, frame, now)
    plan = Plan(campaign, pd.DataFrame(columns=PLAN_COLUMNS), excluded=Counter(result.excluded))
    members = result.members
    active = enrolled[enrolled["exited_at"].isna()] if not enrolled.empty else enrolled
    known = set(enrolled["contact_id"]) if not enrolled.empty else set()

    candidates, reference = _newcomers(campaign, members[~members["id"].isin(known)], happened, started_at)
    plan.candidates = len(members[~members["id"].isin(known)])
    plan.new_enrolments = [int(c) for c in candidates["id"]]

    # Exits: checked for everyone enrolled (and for the new ones, who may already meet a rule).
    by_id = frame.set_index("id")
    for contact_id in plan.new_enrolments:
        reference.setdefault(contact_id, _utc(by_id.loc[contact_id, "signed_up_at"]))
    columns = ["contact_id", "enrolled_at"]
    current = active[columns] if not active.empty else pd.DataFrame(columns=columns)
    newcomers = pd.DataFrame(
        {"contact_id": plan.new_enrolments, "enrolled_at": [pd.Timestamp(now)] * len(plan.new_enrolments)}
    )
    journey = pd.concat([df for df in (current, newcomers) if not df.empty] or [current], ignore_index=True)
    keep = []
    for contact_id, enrolled_at in journey.itertuples(index=False):
        start = reference.get(int(contact_id), _utc(enrolled_at))
        reason = _exit_reason(campaign, by_id, int(contact_id)) or _event_exit(
            campaign, happened, int(contact_id), start
        )
        if reason:
            plan.exits[int(contact_id)] = reason
            plan.excluded[f"exited: {reason}"] += 1
        keep.append(reason is None)
    journey = journey[keep]
    if journey.empty:
        plan.emails = pd.DataFrame(columns=PLAN_COLUMNS)
        return plan
    people = by_id.loc[journey["contact_id"].astype("int64")].reset_index()
    people["variant"] = [
        variant_for(c, bool(k), segment.concerns)
        for c, k in zip(people["concerns"], people["concern_consent"], strict=True)
    ]
    parts = []
    enrolled_at = pd.to_datetime(journey["enrolled_at"], utc=True).reset_index(drop=True)
    zones = people["time_zone"].where(people["time_zone"] != "", campaign.time_zone)
    for step in campaign.steps:
        due = enrolled_at + pd.Timedelta(step.delay)
        due.index = people.index
        timing = None
        if step.optimise is not None:
            due, timing = choose_send_times(
                campaign.id, step.id, people.assign(zone=zones), due, step.optimise, engagement or Engagement.none()
            )
        parts.append(_with_timing(_frame_for(people, campaign, step, due, campaign.time_zone), timing))
    emails = pd.concat(parts, ignore_index=True)
    emails = emails[emails["due_at"] <= pd.Timestamp(horizon)]
    return _finish(ctx, plan, emails, ledger_keys, history, defer_cap=True)


def _exit_reason(campaign: Campaign, by_id: pd.DataFrame, contact_id: int) -> str | None:
    if contact_id not in by_id.index:
        return "erased"
    contact = by_id.loc[contact_id]
    if isinstance(contact["suppressed"], str):
        return str(contact["suppressed"])
    if contact["status"] == "pending" or not bool(contact["marketing_consent"]):
        return "consent withdrawn"
    attributes = attributes_of(contact["attributes"])
    for rule in campaign.exits:
        if rule.event:
            continue  # `_event_exit`
        value = attributes.get(rule.field, contact[rule.field] if rule.field in contact.index else None)
        if value is not None and str(value).lower() == rule.equals:
            return f"{rule.field} = {rule.equals}"
    return None


def _utc(moment: object) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _event_times(events: pd.DataFrame | None) -> dict[str, dict[int, list[pd.Timestamp]]]:
    """type -> contact_id -> when each of their events of that type occurred."""
    times: dict[str, dict[int, list[pd.Timestamp]]] = {}
    if events is None or events.empty:
        return times
    for contact_id, kind, occurred_at in events[["contact_id", "type", "occurred_at"]].itertuples(index=False):
        times.setdefault(str(kind), {}).setdefault(int(contact_id), []).append(_utc(occurred_at))
    return times


def _event_exit(
    campaign: Campaign, happened: dict[str, dict[int, list[pd.Timestamp]]], contact_id: int, start: pd.Timestamp
) -> str | None:
    for rule in campaign.exits:
        if rule.event and any(t >= start for t in happened.get(rule.event, {}).get(contact_id, ())):
            return f"event {rule.event}"
    return None


def load_events(conn: Connection, types: tuple[str, ...]) -> pd.DataFrame:
    """The contact events of `types` that belong to a known contact (linked when stored, or by the address
    hash when the person arrived later): contact_id, type, occurred_at."""
    columns = ["contact_id", "type", "occurred_at"]
    if not types:
        return pd.DataFrame(columns=columns)
    owner = func.coalesce(contact_events.c.contact_id, contacts.c.id)
    rows = conn.execute(
        select(owner, contact_events.c.type, contact_events.c.occurred_at)
        .select_from(contact_events.outerjoin(contacts, contacts.c.email_hash == contact_events.c.email_hash))
        .where(contact_events.c.type.in_(types), owner.is_not(None))
    ).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


@dataclass(frozen=True)
class LedgerKeys:
    """The people a campaign's ledger already has a row for, per step: `by_step` maps a step's id to the
    contact ids (an int64 array), `capped_by_step` to those of them whose row was skipped for the frequency
    cap. `holds` tests a plan's emails against them all at once (a Python set of 200,000 pairs,
    filled row by row and tested row by row, took most of a plan's time during a send)."""

    by_step: Mapping[str, np.ndarray] = field(default_factory=dict)
    capped_by_step: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(len(ids) for ids in self.by_step.values())

    def holds(self, steps: pd.Series, contacts: pd.Series) -> np.ndarray:
        """Per email (a step and a contact id, aligned), whether the ledger already has that pair."""
        found = np.zeros(len(steps), dtype=bool)
        ids = contacts.to_numpy(dtype="int64")
        for step, known in self.by_step.items():
            if len(known):
                at = (steps == step).to_numpy()
                found[at] = np.isin(ids[at], known)
        return found

    def holds_step(self, step_id: str, contacts: np.ndarray) -> np.ndarray:
        """Per contact id of `contacts`, whether the ledger already has a row for it at `step_id`."""
        return np.isin(contacts, self.by_step.get(step_id, _NONE))

    def capped_step(self, step_id: str, contacts: np.ndarray) -> np.ndarray:
        """Per contact id of `contacts`, whether its row at `step_id` was skipped for the frequency cap."""
        return np.isin(contacts, self.capped_by_step.get(step_id, _NONE))


_NONE = np.zeros(0, dtype=np.int64)


@dataclass
class LedgerView:
    """What the rules need from the store about one campaign (read by the planner and the preview)."""

    enrolled: pd.DataFrame  # contact_id, enrolled_at, exited_at
    keys: LedgerKeys  # (step_id, contact_id) already in the ledger
    history: pd.DataFrame  # contact_id, at: other campaigns' emails that count towards the cap
    started_at: datetime | None
    events: pd.DataFrame | None = None  # contact_id, type, occurred_at: the event types the campaign names


COUNTED = ("queued", "sending", "sent", "unknown")


def cap_history(conn: Connection, campaign_id: str, now: datetime) -> pd.DataFrame:
    """contact_id, at: the other campaigns' emails of the last 8 days that count towards the frequency cap."""
    rows = other_campaigns_emails(conn, campaign_id, now - timedelta(days=8), COUNTED)
    history = pd.DataFrame(rows, columns=["contact_id", "at"])
    history["at"] = pd.to_datetime(history["at"], utc=True)
    return history


def load_ledger_view(
    conn: Connection,
    campaign_id: str,
    now: datetime,
    *,
    with_keys: bool = True,
    event_types: tuple[str, ...] = (),
) -> LedgerView:
    enrolled = pd.DataFrame(
        conn.execute(
            select(enrolments.c.contact_id, enrolments.c.enrolled_at, enrolments.c.exited_at).where(
                enrolments.c.campaign_id == campaign_id
            )
        ).all(),
        columns=["contact_id", "enrolled_at", "exited_at"],
    )
    keys = LedgerKeys()
    if with_keys:  # one row per step, not per email: see `store.ledger_people`
        people = ledger_people(conn, campaign_id, CAPPED)
        keys = LedgerKeys({s: p.contacts for s, p in people.items()}, {s: p.skipped for s, p in people.items()})
    history = cap_history(conn, campaign_id, now)
    started = conn.execute(
        select(campaign_state.c.started_at).where(campaign_state.c.campaign_id == campaign_id)
    ).scalar()
    return LedgerView(enrolled, keys, history, started, load_events(conn, event_types))
