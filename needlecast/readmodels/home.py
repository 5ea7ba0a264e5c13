"""The console's home: how the clinic's email is doing, what sends next, what needs a person, how the audience
grows, or (on a first run) the steps to a first send. Reads only.

Contract:
- `last_30_days(engine, workspace, today)` is the headline figures (`Figure`) of the emails sent in the 30
  days ending `today` (days of sending on the clinic's clock, both ends included, as the Reports page's
  period filter counts them), each with the same figure for the 30 days before and the change. The figures
  are the report's own (`reports.compare`: the flags of `reports.metrics`, summed by `funnel`, divided with
  `RATES`), over every campaign, with rates shown from one email on. `sent_emails` reads those emails once
  for a page that also asks `attention` (both take it; without it each reads them).
- `calendar(engine, workspace, view, anchor, now)` is the week (Monday to Sunday) or month (its weeks,
  Monday first) around `anchor` on the clinic's clock, each day with what is planned to send on it from
  `now` on: an active broadcast's emails and the time of its first one, a sequence's (or journey's) expected
  emails that day, both as the planner plans them (`campaign.plan.preview.build_plans`, a new sender's
  warm-up spread included), and on a warm-up's days with emails planned, the emails that day's cap allows
  (`campaign.send.warmup.caps_on`: the plan spreads a broadcast over those days). Days before today show
  nothing. Only live campaigns are planned. With the web app's `frames`, the plans are kept
  (`readmodels.kept`) and never waited for: planned again off the request when the audience, a campaign's,
  segment's or settings file, the ledger's newest row or a campaign's state changes, or when they are a
  minute old, the kept ones shown meanwhile (`Calendar.planned_at`, `updating`); none yet: `ready` False.
- The web app's pages read the kept figures without waiting (`sent_emails_shown`, `growth_shown`: a `Shown`,
  with no figure while the first is worked out), or waiting only for a first one (`campaigns_ready`,
  `sent_emails_ready`, which the web app warms as it starts: `readmodels.warm`).
- `attention(engine, workspace, now)` is each campaign that needs a person, with the reasons in words:
  failed or unknown emails, a health flag (complaints or bounces over the providers' limits, as the report
  flags them), a sign-off older than a change to what it covers (`signoff.stale_files`), a draft whose file
  nobody changed for 7 days, a campaign the deliverability guard paused, a file that does not load.
- `growth(engine, workspace, today)` is the last 8 weeks (Monday first, clinic's clock): new leads by source
  (as `reports.cohorts.load_leads` has it: the source of a lead's first consent), the source in the clinic's
  words (`audience.sources.source_group`: "Imported from sample.csv", "Website signup form", "Added through
  the API"), and
  unsubscribes (suppressions for an unsubscribe recorded that week); counted in SQL.
- `first_run(engine, workspace)` is the checklist (`Step`) a new clinic follows and whether the console
  should show it instead of the dashboard: until the clinic's details are set, there are contacts and a
  campaign has gone live (scheduled, or emails sent).
Counts, ids and times only: no personal data.
"""

from __future__ import annotations

import calendar as months
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import ColumnElement, Engine, case, func, select

from needlecast.audience.frame_cache import FrameCache, fingerprint
from needlecast.audience.sources import source_group
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import BROADCAST, JOURNEY
from needlecast.campaign.definition.signoff import stale_files
from needlecast.campaign.overview import BROKEN, DRAFT, Overview, campaign_overviews
from needlecast.campaign.plan.preview import build_plans
from needlecast.campaign.plan.rules import Plan
from needlecast.campaign.send import guardrails
from needlecast.campaign.send.warmup import caps_on
from needlecast.config import ClinicSettings, Workspace
from needlecast.errors import InvalidRequest
from needlecast.readmodels.elsewhere import Where, opened
from needlecast.readmodels.kept import KEPT, Remote, Shown
from needlecast.readmodels.plans import kept_context, ledger_marks, plan_inputs, workspace_marks
from needlecast.reports.compare import Catalogue, Filters, annotate, chosen, totals_row
from needlecast.reports.data import health
from needlecast.reports.groups import email_groups
from needlecast.store.schema import appointments, consent_events, contacts, deliveries, events, suppressions

PERIOD_DAYS = 30
GROWTH_WEEKS = 8
STALE_DRAFT = timedelta(days=7)
VIEWS = ("week", "month")
LIVE = ("active", "paused")  # a campaign that has gone live (scheduled, sending, or paused while it sends)
UNSET = ClinicSettings()  # `needlecast init`'s placeholders: a detail equal to its default is not set yet


@dataclass(frozen=True)
class Figure:
    """One headline figure: this period's value, the period before's, and the change (a rate's change is in
    percentage points as a fraction: 0.02 is two points). None where there is nothing to divide by."""

    key: str  # the report's column: sent, delivery_rate, opened_rate, clicked_rate, conversion_rate
    name: str
    value: float | None
    previous: float | None
    rate: bool  # a rate (shown as a percentage) or a count

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


@dataclass(frozen=True)
class Period:
    start: date
    end: date  # included
    previous_start: date
    previous_end: date
    figures: list[Figure]
    delivered: int  # the emails delivered this period (the rates after the delivery rate are against it)


FIGURES = (
    ("sent", "Sent", False),
    ("delivery_rate", "Delivered", True),
    ("opened_rate", "Open rate", True),
    ("clicked_rate", "Click rate", True),
    ("conversion_rate", "Booking rate", True),
)


def _number(value: object) -> float | None:
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number


@dataclass(frozen=True)
class Campaigns:
    """The workspace's campaigns (their files, loaded once) and their overviews at `now`: what a page's parts
    (`first_run`, `calendar`, `attention`) share, so one view loads and counts them once."""

    ctx: CampaignContext
    overviews: list[Overview]


def load_campaigns(
    engine: Engine, workspace: Workspace, now: datetime, *, frames: FrameCache | None = None
) -> Campaigns:
    """The campaigns and their overviews, read now (see `Campaigns`); with the web app's `frames`, kept
    (`readmodels.kept`) and read again at once when a workspace file, the ledger's newest row or a campaign's
    state changes, and within a minute, off the request, for emails changing status during a send."""
    if frames is None:
        return _campaigns_now(engine, workspace, now)
    shown = campaigns_ready(engine, workspace, now)
    assert shown.figure is not None
    return shown.figure


def campaigns_ready(engine: Engine, workspace: Workspace, now: datetime) -> Shown[Campaigns]:
    """`load_campaigns` as the web app keeps it (`kept.Kept.ready`: waited for only when none was ever read;
    after a change the kept ones are shown, `updating`, while they are read again off the request)."""
    with engine.connect() as conn:
        inputs = (workspace_marks(workspace), ledger_marks(conn))
    name = ("campaigns", str(workspace.root), str(engine.url))
    # The files as kept until one changes (`plans.kept_context`): during a send the overviews are read again
    # after every change to the ledger, and parsing every article each time held the pages' interpreter.
    return KEPT.ready(
        name, inputs, lambda: _campaigns_now(engine, workspace, max(now, datetime.now(UTC)), kept_context(workspace))
    )


def _campaigns_now(
    engine: Engine, workspace: Workspace, now: datetime, ctx: CampaignContext | None = None
) -> Campaigns:
    ctx = ctx or CampaignContext.load(workspace)
    with engine.connect() as conn:
        return Campaigns(ctx, campaign_overviews(ctx, conn, now))


def clinic_today(workspace: Workspace, now: datetime | None = None) -> date:
    """Today on the clinic's clock."""
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(workspace.settings.clinic.time_zone)).date()


def sent_emails(engine: Engine, workspace: Workspace, *, frames: FrameCache | None = None) -> pd.DataFrame:
    """Every sent email with its report flags, counted in the database by group and day on the clinic's clock
    (`reports.groups.email_groups`, as the Reports page counts them), read once for a page's parts. With the
    web app's `frames`, kept (`readmodels.kept`): counted again at once when the ledger gains a row, an event
    or a booking arrives, a file changes or the clinic's day turns, and within a minute, off the request, for
    emails changing status during a send. Shared: read-only."""
    if frames is None:
        return _sent_now(engine, workspace)
    name, inputs, compute, remote = _kept_sent(engine, workspace)
    return KEPT.get(name, inputs, compute, remote=remote)[0]


def sent_emails_shown(engine: Engine, workspace: Workspace) -> Shown[pd.DataFrame]:
    """`sent_emails` as the web app's pages show it (`kept.Kept.look`): never waited for; the kept figures
    (`updating` while they are counted again after a change), or none yet (`ready` False)."""
    name, inputs, compute, remote = _kept_sent(engine, workspace)
    return KEPT.look(name, inputs, compute, remote=remote)


def sent_emails_ready(engine: Engine, workspace: Workspace) -> Shown[pd.DataFrame]:
    """`sent_emails` as the web app keeps it, waited for only when none was ever counted (`kept.Kept.ready`):
    the Reports page, which the web app warms as it starts."""
    name, inputs, compute, remote = _kept_sent(engine, workspace)
    return KEPT.ready(name, inputs, compute, remote=remote)


def _kept_sent(
    engine: Engine, workspace: Workspace
) -> tuple[tuple[str, ...], tuple[object, ...], Callable[[], pd.DataFrame], Remote | None]:
    """(name, inputs, compute, remote) of the kept sent emails. Counted in the kept figures' process while
    there is one (`sent_elsewhere`): during a send the ledger changes all the time, and reading the counts
    into pandas after each change held the pages' interpreter."""
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(deliveries.c.id))).scalar()
        heard = conn.execute(select(func.max(events.c.id))).scalar()
        booked = conn.execute(select(func.count()).select_from(appointments)).scalar()
    inputs = (workspace_marks(workspace), clinic_today(workspace), newest, heard, booked)
    where = Where.of(engine, workspace)
    remote = Remote(sent_elsewhere, (where,)) if where is not None else None
    name = ("sent emails", str(workspace.root), str(engine.url))
    return name, inputs, lambda: _sent_now(engine, workspace), remote


def sent_elsewhere(where: Where) -> pd.DataFrame:
    """The sent emails' counts (`_sent_now`), in the kept figures' process (`kept.Remote`), from its own engine."""
    engine, workspace, _ = opened(where)
    return _sent_now(engine, workspace)


def _sent_now(engine: Engine, workspace: Workspace) -> pd.DataFrame:
    return email_groups(engine, workspace.settings.attribution, workspace.settings.clinic.time_zone)


def kept_last_30_days(engine: Engine, workspace: Workspace, today: date, emails: Shown[pd.DataFrame]) -> Period:
    """`last_30_days` of the kept `emails` (`sent_emails_shown`, ready), kept while they are the same ones."""
    name = ("last 30 days", str(workspace.root), str(engine.url), today)
    shown = KEPT.ready(name, emails.computed_at, lambda: last_30_days(engine, workspace, today, emails.figure))
    assert shown.figure is not None
    return shown.figure


def last_30_days(engine: Engine, workspace: Workspace, today: date, emails: pd.DataFrame | None = None) -> Period:
    """The headline figures of the 30 days ending `today` against the 30 before (see the module contract);
    `emails`: `sent_emails` already read (default: read now)."""
    zone = workspace.settings.clinic.time_zone
    sent = sent_emails(engine, workspace) if emails is None else emails
    emails = annotate(sent, Catalogue(), zone)
    current = Filters(start=today - timedelta(days=PERIOD_DAYS - 1), end=today)
    earlier = current.previous()
    assert earlier is not None and earlier.start and earlier.end and current.start
    now_row = totals_row(chosen(emails, current), min_group=1).iloc[0]
    before_row = totals_row(chosen(emails, earlier), min_group=1).iloc[0]
    figures = [Figure(key, name, _number(now_row[key]), _number(before_row[key]), rate) for key, name, rate in FIGURES]
    return Period(current.start, today, earlier.start, earlier.end, figures, int(now_row["delivered"]))


@dataclass(frozen=True)
class Entry:
    """One thing on a calendar day."""

    kind: str  # broadcast, sequence, journey, warmup
    emails: int  # planned emails; for a warm-up, the emails the day's cap allows
    campaign_id: str = ""
    name: str = ""
    at: datetime | None = None  # a broadcast's first email that day (UTC; pages show it on the clinic's clock)


@dataclass(frozen=True)
class Day:
    day: date
    in_range: bool  # False for a month view's days of the weeks around the month
    today: bool
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True)
class Calendar:
    view: str
    start: date
    end: date  # included
    title: str  # "1–7 December 2026", "December 2026"
    previous: date  # an anchor in the period before, and after
    following: date
    weeks: list[list[Day]]
    planned: int  # emails planned in the period (warm-up caps not counted)
    problems: int  # campaign files that did not load (the attention list names them)
    ready: bool = True  # False while the web app works its first plans out (the days are shown empty)
    planned_at: datetime | None = None  # when the web app's kept plans were planned (UTC)
    updating: bool = False  # the plans shown predate a change or are a minute old: planned again meanwhile


def _bounds(view: str, anchor: date) -> tuple[date, date, date, date, str]:
    """(first day shown, last day shown, previous anchor, next anchor, title) of `view` around `anchor`."""
    if view == "week":
        start = anchor - timedelta(days=anchor.weekday())
        end = start + timedelta(days=6)
        title = f"Week of {start.day} {start:%B %Y}"
        return start, end, start - timedelta(days=7), start + timedelta(days=7), title
    first = anchor.replace(day=1)
    last = first.replace(day=months.monthrange(first.year, first.month)[1])
    start = first - timedelta(days=first.weekday())
    end = last + timedelta(days=6 - last.weekday())
    return start, end, first - timedelta(days=1), last + timedelta(days=1), f"{first:%B %Y}"


def _planned(
    engine: Engine,
    workspace: Workspace,
    first: date,
    last: date,
    now: datetime,
    frames: FrameCache | None,
    campaigns: Campaigns,
) -> tuple[dict[date, list[Entry]], int]:
    """What each day from `first` to `last` (clinic's clock, none before today) has planned, and how many
    campaign files did not load."""
    zone = ZoneInfo(workspace.settings.clinic.time_zone)
    today = now.astimezone(zone).date()
    first = max(first, today)
    days: dict[date, list[Entry]] = {}
    if last < first:
        return days, 0
    horizon = datetime.combine(last + timedelta(days=1), time(), zone).astimezone(UTC)
    live = sorted(o.id for o in campaigns.overviews if o.state == "active")
    days_ahead = max(1, math.ceil((horizon - now).total_seconds() / 86400))
    found: list[Plan] = []
    for campaign_id in live:  # only what is live is planned: a draft's or a paused campaign's plan shows nowhere
        one = build_plans(workspace, engine, campaign_id, days_ahead, now, audience=frames, context=campaigns.ctx)
        found += one.plans
    for plan in found:
        campaign = plan.campaign
        if plan.forecast is not None:
            _forecast_days(days, plan, zone, first, last)
            continue
        if plan.emails.empty:
            continue
        queued = plan.emails[plan.emails["status"] == "queued"]
        due = pd.to_datetime(queued["due_at"], utc=True)
        local = due.dt.tz_convert(zone)
        for day, moments in due.groupby(local.dt.date):
            if first <= day <= last:
                kind = (
                    BROADCAST if campaign.kind == BROADCAST else (JOURNEY if campaign.kind == JOURNEY else "sequence")
                )
                at = moments.min().to_pydatetime() if kind == BROADCAST else None
                days.setdefault(day, []).append(Entry(kind, len(moments), campaign.id, campaign.name, at))
    warm = workspace.settings.deliverability.warmup
    for day, entries in days.items():
        caps = caps_on(warm, day) if warm is not None and day >= warm.start else None
        if caps is not None:
            entries.append(Entry("warmup", caps.day))
    return days, len(campaigns.ctx.problems)


def _kept_plans(
    engine: Engine,
    workspace: Workspace,
    first: date,
    last: date,
    now: datetime,
    frames: FrameCache | None,
    campaigns: Campaigns,
) -> Shown[tuple[dict[date, list[Entry]], int]]:
    """`_planned`, kept for the web app (`frames` given) in `readmodels.kept.KEPT` and never waited for: planned
    off the request when what a plan depends on changes (`plans.plan_inputs`: the files by content, the
    audience, the ledger's newest row, the campaigns' states) or the kept plans are `KEPT.max_age` seconds old,
    the kept ones shown meanwhile (none the first time: `ready` False). Without `frames` (the command line,
    tests), planned every time."""
    if frames is None:
        return Shown(_planned(engine, workspace, first, last, now, frames, campaigns), now, False)
    states = tuple(sorted((o.id, o.state) for o in campaigns.overviews))
    name = ("calendar", str(workspace.root), str(engine.url), first, last, clinic_today(workspace, now))
    inputs = (plan_inputs(engine, workspace), states)

    def plan_now() -> tuple[dict[date, list[Entry]], int]:
        # Planned from the moment it runs (off the request, it may run a little later than `now`).
        return _planned(engine, workspace, first, last, max(now, datetime.now(UTC)), frames, campaigns)

    where = Where.of(engine, workspace)
    remote = Remote(calendar_elsewhere, (where, first, last, now)) if where is not None else None
    return KEPT.look(name, inputs, plan_now, remote=remote)


def calendar_elsewhere(where: Where, first: date, last: date, now: datetime) -> tuple[dict[date, list[Entry]], int]:
    """The calendar's plans (`_kept_plans`), worked out in the kept figures' process (`kept.Remote`) from its
    own engine, workspace and audience cache, with the campaigns read there (kept there: `load_campaigns`)."""
    engine, workspace, frames = opened(where)
    moment = max(now, datetime.now(UTC))
    campaigns = load_campaigns(engine, workspace, moment, frames=frames)
    return _planned(engine, workspace, first, last, moment, frames, campaigns)


def calendar(
    engine: Engine,
    workspace: Workspace,
    view: str,
    anchor: date | None,
    now: datetime,
    *,
    frames: FrameCache | None = None,
    campaigns: Campaigns | None = None,
) -> Calendar:
    """The week or month around `anchor` (default: today) with what is planned (see the module contract);
    `InvalidRequest` for a view that is neither. `frames`: the web app's audience cache (default: read now);
    `campaigns`: `load_campaigns` already read for this page (default: read now)."""
    if view not in VIEWS:
        raise InvalidRequest(f"view: '{view}' is not a calendar view; choose week or month")
    today = clinic_today(workspace, now)
    anchor = anchor or today
    start, end, previous, following, title = _bounds(view, anchor)
    shared = campaigns or load_campaigns(engine, workspace, now)
    kept = _kept_plans(engine, workspace, start, end, now, frames, shared)
    planned, problems = kept.figure if kept.figure is not None else ({}, len(shared.ctx.problems))
    shown = (anchor.replace(day=1), anchor.replace(day=months.monthrange(anchor.year, anchor.month)[1]))
    weeks: list[list[Day]] = []
    day = start
    while day <= end:
        if day.weekday() == 0:
            weeks.append([])
        in_range = view == "week" or shown[0] <= day <= shown[1]
        weeks[-1].append(Day(day, in_range, day == today, planned.get(day, [])))
        day += timedelta(days=1)
    total = sum(e.emails for entries in planned.values() for e in entries if e.kind != "warmup")
    at = kept.computed_at if frames is not None else None
    return Calendar(view, start, end, title, previous, following, weeks, total, problems, kept.ready, at, kept.updating)


@dataclass(frozen=True)
class Attention:
    campaign_id: str
    name: str
    reasons: list[str]
    linkable: bool = True  # False for a file that does not load (it has no page)


def _reasons(overview: Overview, flag: str, stale: list[str], paused: str, idle: timedelta | None) -> list[str]:
    reasons = []
    if overview.state == BROKEN:
        reasons.append("its file has a mistake, so it cannot send")
    failed, unknown = overview.counts.get("failed", 0), overview.counts.get("unknown", 0)
    if failed:
        reasons.append(f"{failed:,} email(s) failed")
    if unknown:
        reasons.append(f"{unknown:,} email(s) may or may not have reached the provider")
    if flag and flag != "ok":
        reasons.append(f"health: {flag}")
    if stale:
        reasons.append(f"its sign-off predates a change to {len(stale)} file(s): it needs a new review")
    if idle is not None and idle >= STALE_DRAFT:
        reasons.append(f"a draft nobody changed for {idle.days} days")
    if paused:
        reasons.append("it paused itself: the deliverability guard stopped it")
    return reasons


def attention(
    engine: Engine,
    workspace: Workspace,
    now: datetime,
    emails: pd.DataFrame | None = None,
    campaigns: Campaigns | None = None,
) -> list[Attention]:
    """Each campaign that needs a person and why (see the module contract), by id; `emails`: `sent_emails`
    already read, `campaigns`: `load_campaigns` already read (default: each read now)."""
    shared = campaigns or load_campaigns(engine, workspace, now)
    ctx, overviews = shared.ctx, shared.overviews
    flags = health(sent_emails(engine, workspace) if emails is None else emails)
    flag_of = dict(zip(flags["campaign_id"], flags["flag"], strict=True))
    found = []
    with engine.connect() as conn:
        paused = {o.id: guardrails.paused_figures(conn, o.id) for o in overviews}
    for overview in overviews:
        campaign = ctx.campaigns.get(overview.id)
        idle = None
        if campaign is not None and overview.state == DRAFT:
            changed = datetime.fromtimestamp(campaign.path.stat().st_mtime, UTC)
            idle = now - changed
        stale = stale_files(ctx, campaign) if campaign is not None else []
        reasons = _reasons(overview, str(flag_of.get(overview.id, "")), stale, paused[overview.id], idle)
        if reasons:
            broken = overview.state == BROKEN  # named by its file: it has no page of its own
            name = overview.file if broken else overview.name or overview.id
            found.append(Attention(overview.id, name, reasons, not broken))
    return found


@dataclass(frozen=True)
class Growth:
    weeks: list[date]  # Mondays, oldest first
    sources: list[str]  # the lead sources seen in these weeks, in words (`audience.sources.source_group`), by name
    leads: dict[date, dict[str, int]]  # week -> source in words -> new leads
    unsubscribed: dict[date, int]

    def total(self, week: date) -> int:
        return sum(self.leads.get(week, {}).values())


def _week_starts(today: date, zone: str) -> tuple[list[date], list[datetime]]:
    """The last `GROWTH_WEEKS` Mondays (oldest first) and each one's start on the clinic's clock, in UTC, plus
    the start of the week after the last (the bounds a row's week is found between, in SQL)."""
    monday = today - timedelta(days=today.weekday())
    weeks = [monday - timedelta(weeks=n) for n in range(GROWTH_WEEKS - 1, -1, -1)]
    tz = ZoneInfo(zone)
    bounds = [datetime.combine(w, time(), tz).astimezone(UTC) for w in [*weeks, monday + timedelta(weeks=1)]]
    return weeks, bounds


def _week_index(column: ColumnElement[datetime], bounds: list[datetime]) -> ColumnElement[int]:
    """The week (0 = oldest) a moment falls in, as one portable CASE: the week starts are the clinic's Mondays
    (daylight saving included), which no database's own date functions know."""
    return case(*((column < bound, n - 1) for n, bound in enumerate(bounds[1:], start=1)), else_=-1)


def growth(engine: Engine, workspace: Workspace, today: date, *, frames: FrameCache | None = None) -> Growth:
    """New leads per week by source and unsubscribes, the last 8 weeks (see the module contract). Counted in
    SQL (a lead's source is its first consent's, as `reports.cohorts.load_leads` has it): only the counts per
    week and source leave the database, however many contacts there are. With the web app's `frames`, kept
    (`readmodels.kept`) and counted again at once when the audience's fingerprint changes."""
    if frames is None:
        return _growth_now(engine, workspace, today)
    name, inputs, compute, remote = _kept_growth(engine, workspace, today)
    return KEPT.get(name, inputs, compute, remote=remote)[0]


def growth_shown(engine: Engine, workspace: Workspace, today: date) -> Shown[Growth]:
    """`growth` as the web app's pages show it (`kept.Kept.look`): never waited for (`ready` False the
    first time; `updating` while it is counted again after a change)."""
    name, inputs, compute, remote = _kept_growth(engine, workspace, today)
    return KEPT.look(name, inputs, compute, remote=remote)


def _kept_growth(
    engine: Engine, workspace: Workspace, today: date
) -> tuple[tuple[object, ...], tuple[object, ...], Callable[[], Growth], Remote | None]:
    """(name, inputs, compute, remote) of the kept growth, counted in the kept figures' process while there
    is one (`growth_elsewhere`)."""
    with engine.connect() as conn:
        inputs = (fingerprint(conn), workspace_marks(workspace))
    name = ("growth", str(workspace.root), str(engine.url), today)
    where = Where.of(engine, workspace)
    remote = Remote(growth_elsewhere, (where, today)) if where is not None else None
    return name, inputs, lambda: _growth_now(engine, workspace, today), remote


def growth_elsewhere(where: Where, today: date) -> Growth:
    """`_growth_now` in the kept figures' process (`kept.Remote`), from its own engine."""
    engine, workspace, _ = opened(where)
    return _growth_now(engine, workspace, today)


def _growth_now(engine: Engine, workspace: Workspace, today: date) -> Growth:
    weeks, bounds = _week_starts(today, workspace.settings.clinic.time_zone)
    in_window = contacts.c.signed_up_at >= bounds[0], contacts.c.signed_up_at < bounds[-1]
    # The first consent's source, looked up per new lead through the index on consent_events.contact_id.
    first = (
        select(consent_events.c.source)
        .where(consent_events.c.contact_id == contacts.c.id)
        .order_by(consent_events.c.recorded_at, consent_events.c.id)
        .limit(1)
        .scalar_subquery()
    )
    week = _week_index(contacts.c.signed_up_at, bounds).label("week")
    source = func.coalesce(first, "").label("source")
    new_leads = select(week, source).where(*in_window).subquery()
    leads = select(new_leads.c.week, new_leads.c.source, func.count().label("n")).group_by(
        new_leads.c.week, new_leads.c.source
    )
    gone = _week_index(suppressions.c.created_at, bounds).label("week")
    unsubscribes = (
        select(gone, func.count().label("n"))
        .where(suppressions.c.reason == "unsubscribed")
        .where(suppressions.c.created_at >= bounds[0], suppressions.c.created_at < bounds[-1])
        .group_by(gone)
    )
    counted: dict[date, dict[str, int]] = {}
    with engine.connect() as conn:
        for index, source, n in conn.execute(leads).all():
            per = counted.setdefault(weeks[int(index)], {})
            said = source_group(str(source))
            per[said] = per.get(said, 0) + int(n)
        by_week = {weeks[int(index)]: int(n) for index, n in conn.execute(unsubscribes).all()}
    sources = sorted({s for per in counted.values() for s in per})
    return Growth(weeks, sources, counted, {w: by_week.get(w, 0) for w in weeks})


@dataclass(frozen=True)
class Step:
    key: str  # clinic, sender, leads, campaign, review, schedule
    title: str
    done: bool
    path: str  # the console page where it is done ("" where no console page does it yet)
    detail: str


@dataclass(frozen=True)
class FirstRun:
    show: bool  # the clinic's details, contacts or a live campaign is missing: show the checklist
    steps: list[Step]


def _clinic_set(clinic: ClinicSettings) -> bool:
    return all(
        getattr(clinic, name) and getattr(clinic, name) != getattr(UNSET, name)
        for name in ("name", "postal_address", "website", "booking_url")
    )


def first_run(engine: Engine, workspace: Workspace, now: datetime, campaigns: Campaigns | None = None) -> FirstRun:
    """The first run's checklist and whether to show it (see the module contract); `campaigns`:
    `load_campaigns` already read for this page (default: read now)."""
    clinic = workspace.settings.clinic
    shared = campaigns or load_campaigns(engine, workspace, now)
    ctx, overviews = shared.ctx, shared.overviews
    details = _clinic_set(clinic)
    live = any(o.state in LIVE for o in overviews)
    with engine.connect() as conn:  # each answered by its first row: the dashboard's every view asks
        anyone = conn.execute(select(contacts.c.id).limit(1)).first() is not None
        if not live:
            live = (
                conn.execute(select(deliveries.c.id).where(deliveries.c.status == "sent").limit(1)).first() is not None
            )
        show = not (details and anyone and live)
        # counted only for the checklist, which says how many there are
        people = int(conn.execute(select(func.count()).select_from(contacts)).scalar_one()) if show and anyone else 0
    first = next((c for c in sorted(ctx.campaigns)), "")
    signed = any(c.signoff is not None and not stale_files(ctx, c) for c in ctx.campaigns.values())
    sender = bool(clinic.sender_email) and clinic.sender_email != UNSET.sender_email
    sender = sender and clinic.sender_name != UNSET.sender_name
    campaign_page = f"/campaigns/{first}" if first else "/campaigns/new"
    steps = [
        Step(
            "clinic",
            "Add the clinic's details and logo",
            details and bool(clinic.logo_url),
            "/settings#clinic",
            "The name, postal address, website, booking link and logo every email shows.",
        ),
        Step(
            "sender",
            "Choose who the emails come from",
            sender,
            "/settings#sender",
            "The sender's name and address people see in their inbox.",
        ),
        Step(
            "leads",
            "Import or connect your leads",
            anyone,
            "/audiences",
            f"{people:,} contacts so far."
            if people
            else ("Leads imported." if anyone else "Upload a spreadsheet of leads, or connect a signup form."),
        ),
        Step(
            "campaign",
            "Create your first campaign",
            bool(ctx.campaigns),
            "/campaigns/new",
            "Choose who gets it, the email and when it goes.",
        ),
        Step(
            "review",
            "Have it reviewed",
            signed,
            campaign_page,
            "A reviewer reads the email and signs it off before it can send.",
        ),
        Step("schedule", "Schedule it", live, campaign_page, "Pick the moment; the console sends it then."),
    ]
    return FirstRun(show, steps)


def _forecast_days(days: dict[date, list[Entry]], plan: Plan, zone: ZoneInfo, first: date, last: date) -> None:
    """A journey's or a sequence's expected emails per day (the journey engine's forecast): only the counts it
    is sure of (an upper bound after a wait-until or a branch would overstate the calendar)."""
    rows = plan.forecast
    if rows is None or rows.empty:
        return
    sure = rows[~rows["at_most"].astype(bool)]
    local = pd.to_datetime(sure["due_at"], utc=True).dt.tz_convert(zone).dt.date
    kind = JOURNEY if plan.campaign.kind == JOURNEY else "sequence"
    for day, count in sure["emails"].groupby(local).sum().items():
        if first <= day <= last and count:
            days.setdefault(day, []).append(Entry(kind, int(count), plan.campaign.id, plan.campaign.name, None))
