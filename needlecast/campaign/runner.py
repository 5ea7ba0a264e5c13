"""The runner: enqueue what is due into the ledger, then claim, render, send and mark, batch by batch.

Contract (DESIGN.md invariants):
- Every email goes through the ledger: `enqueue` (idempotent) -> `claim` -> backend -> `mark_*`.
- Suppression, consent and erasure are re-checked for every claimed row just before it is handed to the
  backend; a row that fails the check is recorded as skipped with its reason, never dropped silently.
- A step renders once per (variant, arm); 1000 recipients go in one request.
- Successes are recorded in the transaction of the next claim (or at the end); an unsuccessful batch at once.
- After `max_consecutive_failures` failed or deferred batches in a row the campaign pauses.
- A rejected API key releases the claimed rows (nothing was sent) and raises `ProviderAuthError`.
- `stop` (SIGTERM) is checked between batches: the batches in flight finish and are marked, the rest of
  the claimed rows go back to `queued`.
Logs carry ids and counts only: no addresses, names or concerns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, func, insert, select, update

from needlecast import ledger
from needlecast.audience.segments import attributes_of, evaluate, load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.gate import ensure_sendable
from needlecast.campaign.helpers import SenderHelpers
from needlecast.campaign.intents import IntentWriter
from needlecast.campaign.model import BROADCAST, SEQUENCE, Campaign
from needlecast.campaign.planner import LedgerView, Plan, load_ledger_view, plan_broadcast, plan_sequence
from needlecast.campaign.rendering import RenderKey, render_campaign, render_variant
from needlecast.campaign.scheduling import audience_zones, schedule_campaign
from needlecast.campaign.send_time import Engagement, engagement_for
from needlecast.campaign.state import ACTIVE, ensure_state, get_state, record_batch_result
from needlecast.campaign.winner import Decision, decide_due, decision_due_at, load_decisions, winner_steps
from needlecast.config import Workspace, signing_secret
from needlecast.delivery.base import DEFERRED, FAILED, SENT, Backend, Batch, Outcome, RateLimiter, Recipient
from needlecast.errors import CampaignBlocked, CampaignFileError, InvalidRequest, SenderFenced
from needlecast.heartbeat import Heartbeat
from needlecast.pacing import collect_seldom
from needlecast.store import fleet
from needlecast.store.bulk import Column
from needlecast.store.claims import CLAIM_CONTACT_JOIN, claim_contact_columns
from needlecast.store.helpers import utcnow
from needlecast.store.ratelimit import FleetRateLimiter
from needlecast.store.schema import contacts, enrolments
from needlecast.store.turns import write_turn
from needlecast.templating.recipient import RecipientValues
from needlecast.templating.render import RenderedEmail
from needlecast.tracking.actions import is_paused

log = logging.getLogger("needlecast.runner")
_DELIVERY_ID, _OUTCOME_KIND = itemgetter(0), itemgetter(1, 2, 3, 4)  # of an Outcome: delivery id; the rest
ENQUEUE_SLICE = 50_000
AUDIENCE_PART = 200_000  # contacts segmented and planned at a time by a broadcast
COUNTED = (ledger.QUEUED, ledger.SENDING, ledger.SENT, ledger.UNKNOWN)


@dataclass
class RunReport:
    campaign_id: str
    enqueued: int = 0
    sent: int = 0
    failed: int = 0
    released: int = 0
    unknown: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    excluded: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    sent_by: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)  # (step, segment, variant, arm)
    enrolled: int = 0
    exited: int = 0
    helpers: int = 0  # helper sender processes that dispatched alongside this one and reported their counts
    paused: str = ""
    blocked: str = ""
    inactive: str = ""
    decisions: list[Decision] = field(default_factory=list)  # A/B winners decided by this run
    # Seconds by stage, this process's part: segment, enqueue, dispatch; within dispatch claim, prepare
    # (check and batch), render, body (request bodies), mark, turn (waiting to write); helpers_* for helpers.
    timings: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))


class Runner:
    def __init__(
        self,
        workspace: Workspace,
        engine: Engine,
        backend: Backend,
        *,
        clock: Callable[[], datetime] = utcnow,
        stop: threading.Event | None = None,
        claim_size: int | None = None,
        parent_pid: int | None = None,
        more_coming: Callable[[], bool] = lambda: False,
        sender: Heartbeat | None = None,
        defer_to_workers: bool = False,
        on_recorded: Callable[[str, str, int], None] | None = None,
        use_helpers: bool = True,
    ) -> None:
        """`sender`: this process's heartbeat (without one, each dispatch registers its own sender for its
        duration). `defer_to_workers`: the scheduler's runner, which plans but leaves the sending to workers
        while any is alive. `on_recorded(campaign, status, count)`: called as outcomes are recorded (metrics).
        `use_helpers`: False in a worker, which is itself one of many senders (no helper processes)."""
        self.use_helpers = use_helpers
        self.sender = sender
        self.defer_to_workers = defer_to_workers
        self.on_recorded = on_recorded
        self.parent_pid = parent_pid  # set in helper processes: they stop when their parent is gone
        self.more_coming = more_coming  # in helpers: True while the parent may still enqueue rows
        self.workspace = workspace
        self.engine = engine
        self.backend = backend
        self.clock = clock
        self.stop = stop or threading.Event()
        # One round of requests per claim: a crash leaves at most a few rounds `unknown` (the one being
        # handed over, those in flight, and accepted ones waiting for the next claim to record them).
        delivery = workspace.settings.delivery
        self.claim_size = claim_size or max(1, min(delivery.batch_size, 1000)) * max(1, delivery.max_in_flight)
        self.secret = signing_secret(required=backend.name == "sendgrid")
        if isinstance(backend.limiter, RateLimiter):  # limits hold for the whole fleet: kept in the database
            backend.limiter = FleetRateLimiter(engine, delivery.requests_per_second, delivery.emails_per_hour)
        self._renders: dict[str, dict[RenderKey, RenderedEmail]] = {}  # by campaign, made before enqueueing

    # -- entry points (what scheduler jobs call) ----------------------------------------------------------

    def send(self, campaign_id: str, *, send_now: bool = False) -> RunReport:
        """`needlecast send`: a broadcast (`run_broadcast`), or one sweep of a sequence (`run_sequence`)."""
        ctx = CampaignContext.load(self.workspace)
        campaign = ctx.campaign(campaign_id)
        if campaign.kind == BROADCAST:
            return self.run_broadcast(campaign_id, send_now=send_now, ctx=ctx)
        return self.run_sequence(campaign_id, ctx=ctx)

    def run_broadcast(
        self, campaign_id: str, *, send_now: bool = False, ctx: CampaignContext | None = None
    ) -> RunReport:
        """Schedule (a past schedule is refused unless `send_now`), render every step, enqueue (idempotent)
        and send what is due. Nothing is enqueued when a step does not render."""
        ctx = ctx or CampaignContext.load(self.workspace)
        campaign = ctx.campaign(campaign_id)
        report = RunReport(campaign.id)
        if campaign.kind != BROADCAST:
            raise InvalidRequest(
                f"campaign '{campaign.id}' is a {campaign.kind}, not a broadcast: send it with "
                f"`needlecast send {campaign.id} --now` (enrols and sends what is due)"
            )
        with self.engine.begin() as conn:
            schedule_campaign(conn, campaign, audience_zones(conn), self.clock(), send_now=send_now)
        if not self.may_send(ctx, campaign, report):
            return report
        self._renders[campaign.id] = render_campaign(ctx, campaign)
        now = self.clock()
        parallel_from = self.workspace.settings.delivery.parallel_from
        # A large audience: start the helper senders first, so that their start-up overlaps segmenting
        # and planning (on the other core). They are let go once `parallel_from` rows are in the ledger,
        # and dismissed if the segment turns out smaller.
        helpers = self._helpers(campaign, self._audience_size())

        def on_slice() -> None:
            if report.enqueued >= parallel_from:
                helpers.release()

        try:
            report.decisions = decide_due(ctx, self.engine, campaign, now)  # before planning: the rest needs it
            with self.engine.connect() as conn:
                view = load_ledger_view(conn, campaign.id, now, with_keys=False)  # ON CONFLICT: idempotent
                fresh = not ledger.has_rows(conn, campaign.id)
                decisions = load_decisions(conn, campaign.id)
                engagement = engagement_for(conn, campaign, now) if not send_now else None
            with collect_seldom():
                members = self._plan_broadcast(
                    ctx, campaign, report, view, now, send_now, fresh, on_slice, decisions, engagement
                )
            if helpers and not helpers.released and members < parallel_from:
                helpers.cancel()
                helpers = self._helpers(campaign, 0)
        except BaseException:
            helpers.cancel()
            raise
        with _timed(report, "dispatch"):
            self.dispatch(ctx, campaign, report, helpers=helpers)
        return report

    def run_sequence(self, campaign_id: str, *, ctx: CampaignContext | None = None) -> RunReport:
        """One sweep of one sequence, now: schedule it, enrol whoever its rule admits, send what is due."""
        ctx = ctx or CampaignContext.load(self.workspace)
        campaign = ctx.campaign(campaign_id)
        if campaign.kind != SEQUENCE:
            raise InvalidRequest(f"campaign '{campaign.id}' is a {campaign.kind}, not a sequence")
        with self.engine.begin() as conn:
            schedule_campaign(conn, campaign, (), self.clock())
            frame = load_frame(conn)
        report = RunReport(campaign.id)
        self._sweep_one(ctx, campaign, frame, self.clock(), report)
        return report

    def _plan_broadcast(
        self,
        ctx: CampaignContext,
        campaign: Campaign,
        report: RunReport,
        view: LedgerView,
        now: datetime,
        send_now: bool,
        fresh: bool,
        on_slice: Callable[[], None],
        decisions: Mapping[str, Decision],
        engagement: Engagement | None,
    ) -> int:
        """Segment, plan and enqueue the broadcast (`fresh`: the ledger had none of its rows when the run
        began); how many members the segment has."""
        segment = ctx.segments[campaign.segment]
        members = 0
        # Part by part (contact id ranges): the first rows are in the ledger, and being sent, while the
        # rest of the audience is still being segmented. Every contact is judged on its own, so the parts
        # add up to what the whole would give.
        for ids in self._audience_parts():
            with _timed(report, "segment"):
                with self.engine.connect() as conn:
                    frame = load_frame(conn, segment, ids=ids)
                result = evaluate(segment, frame, now)
            with _timed(report, "enqueue"):
                plan = plan_broadcast(
                    ctx,
                    campaign,
                    frame,
                    set(),
                    view.history,
                    now,
                    send_now=send_now,
                    members=result,
                    decisions=decisions,
                    engagement=engagement,
                )
                members += result.size
                del frame, result
                self._enqueue(plan, report, fresh=fresh, on_slice=on_slice)
                del plan
        return members

    def _audience_parts(self) -> Iterator[tuple[int, int]]:
        """Contact id ranges [low, high) of about AUDIENCE_PART contacts each, covering every contact."""
        with self.engine.connect() as conn:
            low, high = conn.execute(select(func.min(contacts.c.id), func.max(contacts.c.id))).one()
        if low is None:
            return
        for start in range(int(low), int(high) + 1, AUDIENCE_PART):
            yield start, start + AUDIENCE_PART

    def sweep(self) -> list[RunReport]:
        """Enrol and advance every sequence, then send whatever is due for every active campaign. A
        campaign that cannot send (blocked, a step that does not render) is reported and the others go on;
        a campaign file that does not load is logged (ids and the file's problem only)."""
        ctx = CampaignContext.load(self.workspace)
        for problem in ctx.problems:
            log.error("campaign file not loaded: %s", problem)
        reports = []
        now = self.clock()
        with self.engine.connect() as conn:
            frame = load_frame(conn)
        for campaign in ctx.campaigns.values():
            report = RunReport(campaign.id)
            reports.append(report)
            try:
                if campaign.kind == BROADCAST and self._winner_due(campaign, now):
                    reports[-1] = self.run_broadcast(campaign.id, ctx=ctx)  # decide, then plan and send the rest
                    continue
                if campaign.kind == BROADCAST and not self._has_queued(campaign.id):
                    continue
                self._sweep_one(ctx, campaign, frame, now, report)
            except (CampaignBlocked, CampaignFileError) as err:
                report.blocked = str(err)
                log.error("campaign %s not sent: %s", campaign.id, err)
        return reports

    def _sweep_one(
        self, ctx: CampaignContext, campaign: Campaign, frame: pd.DataFrame, now: datetime, report: RunReport
    ) -> None:
        if not self.may_send(ctx, campaign, report):
            return
        self._renders[campaign.id] = render_campaign(ctx, campaign)
        if campaign.kind == SEQUENCE:
            self._advance_sequence(ctx, campaign, frame, now, report)
        self.dispatch(ctx, campaign, report)

    # -- planning into the ledger ---------------------------------------------------------------------------

    def may_send(self, ctx: CampaignContext, campaign: Campaign, report: RunReport) -> bool:
        """Whether the campaign may send now (not a draft, active, past the claims gate, a working backend);
        why not in `report.inactive`. Raises `CampaignBlocked` or `ConfigurationError`."""
        if campaign.draft:
            report.inactive = "a draft (remove 'draft: true' from its file to send it)"
            return False
        with self.engine.begin() as conn:
            state = ensure_state(conn, campaign.id, campaign.digest, self.clock())
        if state["status"] != ACTIVE:
            report.inactive = f"{state['status']}: {state['note']}".strip(": ")
            log.info("campaign %s is %s; nothing sent", campaign.id, state["status"])
            return False
        ensure_sendable(ctx, campaign)
        self.backend.check()
        return True

    @contextmanager
    def _writing(self, report: RunReport | None = None) -> Iterator[Connection]:
        """A write transaction of the send's hot path, taken in turn with other sender processes (the wait
        for the turn is timed as the stage "turn")."""
        started = time.perf_counter()
        with write_turn(self.engine):
            if report is not None:
                report.timings["turn"] += time.perf_counter() - started
            with self.engine.begin() as conn:
                yield conn

    def _winner_due(self, campaign: Campaign, now: datetime) -> bool:
        """Whether a winner test of the broadcast waits for a decision whose time has come."""
        steps = winner_steps(campaign)
        if not steps or campaign.draft:
            return False
        with self.engine.connect() as conn:
            decided = load_decisions(conn, campaign.id)
            for step, _test in steps:
                due = decision_due_at(conn, campaign, step)
                if step.id not in decided and due is not None and due <= now:
                    return True
        return False

    def _has_queued(self, campaign_id: str) -> bool:
        with self.engine.connect() as conn:
            return ledger.queued_count(conn, campaign_id) > 0

    def _enqueue(
        self, plan: Plan, report: RunReport, *, fresh: bool, on_slice: Callable[[], None] | None = None
    ) -> None:
        """Put the plan's emails into the ledger; `on_slice` is called after each committed slice. `fresh`:
        none of them can be there yet (see `ledger.enqueue_columns`)."""
        report.excluded.update(plan.excluded)
        report.deferred.update(plan.deferred)
        if plan.emails.empty:
            return
        emails = plan.emails.assign(
            status=plan.emails["status"].map({"skipped": ledger.SKIPPED}).fillna(ledger.QUEUED),
            error=plan.emails["reason"],
        )
        columns: dict[str, Column] = {}
        for name in (*ledger.ENQUEUE_COLUMNS, *ledger.OPTIONAL_COLUMNS):
            values = emails[name]
            codes, distinct = pd.factorize(values, use_na_sentinel=False)  # a few distinct values over a million emails
            plain = [v.to_pydatetime() for v in distinct] if name == "due_at" else distinct.tolist()
            if name == "contact_id":
                columns[name] = [int(c) for c in values.tolist()]
            elif len(plain) == 1:
                columns[name] = plain[0]  # the same for every email: bound once
            else:
                columns[name] = [plain[c] for c in codes.tolist()]
        # In slices, each committed: helper senders may start on the first while the rest goes in. A crash
        # in between leaves some rows enqueued; the job's next run adds the others (ON CONFLICT keeps it
        # idempotent), so nothing is lost or doubled.
        total = len(emails)
        for start in range(0, total, ENQUEUE_SLICE):
            part = {
                name: value[start : start + ENQUEUE_SLICE] if isinstance(value, list) else value
                for name, value in columns.items()
            }
            with self._writing(report) as conn:
                report.enqueued += ledger.enqueue_columns(conn, part, fresh=fresh)
            if on_slice is not None:
                on_slice()
        log.info("campaign %s: %d new ledger rows", plan.campaign.id, report.enqueued)

    def _advance_sequence(
        self, ctx: CampaignContext, campaign: Campaign, frame: pd.DataFrame, now: datetime, report: RunReport
    ) -> None:
        with self.engine.begin() as conn:
            view = load_ledger_view(conn, campaign.id, now, event_types=campaign.event_types)
            plan = plan_sequence(
                ctx,
                campaign,
                frame,
                view.enrolled,
                view.keys,
                view.history,
                now,
                view.started_at or now,
                now,
                view.events,
                engagement_for(conn, campaign, now),
            )
            if plan.new_enrolments:
                conn.execute(
                    insert(enrolments),
                    [
                        {
                            "campaign_id": campaign.id,
                            "contact_id": c,
                            "enrolled_at": now,
                            "exited_at": None,
                            "exit_reason": "",
                        }
                        for c in plan.new_enrolments
                    ],
                )
            for contact_id, reason in plan.exits.items():
                conn.execute(
                    update(enrolments)
                    .where(
                        enrolments.c.campaign_id == campaign.id,
                        enrolments.c.contact_id == contact_id,
                        enrolments.c.exited_at.is_(None),
                    )
                    .values(exited_at=now, exit_reason=reason[:64])
                )
        report.enrolled += len(plan.new_enrolments)
        report.exited += len(plan.exits)
        self._enqueue(plan, report, fresh=True)  # the plan leaves out every key already in the ledger

    # -- dispatch ---------------------------------------------------------------------------------------------

    def dispatch(
        self, ctx: CampaignContext, campaign: Campaign, report: RunReport, *, helpers: SenderHelpers | None = None
    ) -> None:
        """Claim, check, render, send and mark due rows until none are left (or stop / pause).

        Claiming is lazy: the backend pulls batches, and the next round is claimed only when the previous
        round's batches have all been handed over. Building one round overlaps sending the last, and only
        the rounds in flight are ever `sending`. Rows claimed but never handed to the backend (a stop, a
        pause, a refused API key) go back to `queued` at the end. A large send is shared with helper
        processes (`helpers`, started early by the caller, or here when enough rows are due).
        """
        if self.defer_to_workers and self._workers_alive():
            if helpers is not None:
                helpers.cancel()
            log.info("campaign %s: workers are alive; the sending is theirs", campaign.id)
            return
        with collect_seldom():
            if self.sender is not None:
                self._dispatch(ctx, campaign, report, helpers, self.sender)
                return
            lease = self.workspace.settings.delivery.lease_seconds
            with Heartbeat(self.engine, "send", lease, on_fenced=self.stop.set) as sender:
                self._dispatch(ctx, campaign, report, helpers, sender)

    def _workers_alive(self) -> int:
        lease = self.workspace.settings.delivery.lease_seconds
        with self.engine.connect() as conn:
            return len(fleet.live(conn, fleet.cutoff(conn, lease), kind="worker"))

    def _dispatch(
        self,
        ctx: CampaignContext,
        campaign: Campaign,
        report: RunReport,
        helpers: SenderHelpers | None,
        sender: Heartbeat,
    ) -> None:
        token = fleet.claim_token(sender.id)
        renders: dict[tuple[str, str, str], RenderedEmail] = {}
        marks = _Marks(
            campaign, report, self.workspace.settings.schedule.max_consecutive_failures, self._record_at_once
        )
        if helpers is None:
            helpers = self._helpers(campaign, None)
        helpers.release(enqueued=True)
        building = self.backend.prepare_seconds
        try:
            # Each request's intent is written just before it first goes out (`campaign.intents`).
            with IntentWriter(self.engine, campaign.id, sender.id, token) as intents:
                self.backend.before_post = intents.write
                try:
                    self.backend.send_all(self._feed(ctx, campaign, token, renders, marks), marks.add)
                finally:
                    report.timings["turn"] += intents.waited
        except SenderFenced:
            log.error("campaign %s: this sender was declared dead; it stops sending", campaign.id)
            self.stop.set()
        finally:
            self.backend.before_post = None
            report.timings["body"] += self.backend.prepare_seconds - building
            # Outcomes not yet recorded first, in the same transaction: a row the provider accepted must
            # never be released to the queue (and sent again) because its mark was still waiting.
            with self._writing(report) as conn:
                self._record(conn, marks)
                released = ledger.release_claim(conn, token, "not sent: the run stopped before this batch")
                fleet.finish_claim(conn, token)
            if released:
                log.info("campaign %s: %d claimed emails returned to the queue", campaign.id, released)
            for counts in helpers.join(stop=self.stop.is_set()):
                _add_counts(report, counts)

    def _helpers(self, campaign: Campaign, size: int | None) -> SenderHelpers:
        """Helper sender processes for a send of up to `size` emails (None: as many as are due now), when
        `[delivery] sender_processes` allows them and the send reaches `parallel_from`."""
        delivery = self.workspace.settings.delivery
        count = 0
        if (
            delivery.sender_processes > 1
            and self.parent_pid is None
            and self.use_helpers
            and not (self.defer_to_workers and self._workers_alive())
        ):
            size = self._due_count(campaign) if size is None else size
            count = delivery.sender_processes - 1 if size >= delivery.parallel_from else 0
        helpers = SenderHelpers(self.workspace.root, campaign.id, count)
        if helpers:
            log.info(
                "campaign %s: up to %d emails; %d helper sender process(es) started", campaign.id, size, len(helpers)
            )
        return helpers

    def _audience_size(self) -> int:
        """How many contacts there are: what a broadcast's segment can be at most."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(contacts)).scalar_one())

    def _due_count(self, campaign: Campaign) -> int:
        with self.engine.connect() as conn:
            return ledger.queued_count(conn, campaign.id, self.clock())

    def _feed(
        self,
        ctx: CampaignContext,
        campaign: Campaign,
        token: str,
        renders: dict[tuple[str, str, str], RenderedEmail],
        marks: _Marks,
    ) -> Iterator[Batch]:
        """Claim a round, check and batch it, hand the batches over one by one; stop at SIGTERM or a pause.

        The outcomes of the batches sent so far are recorded in the transaction that claims the next round
        (one write turn per round, not one per batch); an unsuccessful batch is recorded at once (`_Marks`).
        """
        report = marks.report
        while not self._should_stop(report):
            with self._writing(report) as conn:
                self._record(conn, marks)
                if report.paused or get_state(conn, campaign.id)["status"] != ACTIVE:  # by hand, or by a sender
                    return
                with _timed(report, "claim"):
                    claimed = ledger.claim_rows(
                        conn,
                        campaign.id,
                        self.clock(),
                        self.claim_size,
                        token,
                        also=claim_contact_columns(conn),
                        join=CLAIM_CONTACT_JOIN,
                    )
            if not claimed:
                if self.more_coming():  # the parent is still enqueueing: its next slice is on the way
                    time.sleep(0.02)
                    continue
                return
            with _timed(report, "prepare"):
                batches = self._batches(ctx, campaign, claimed, renders, report)
            for batch in batches:
                if self._should_stop(report):
                    return
                yield batch

    def _should_stop(self, report: RunReport) -> bool:
        orphaned = self.parent_pid is not None and os.getppid() != self.parent_pid
        return self.stop.is_set() or bool(report.paused) or orphaned

    def _batches(
        self,
        ctx: CampaignContext,
        campaign: Campaign,
        claimed: list[Sequence[Any]],
        renders: dict[tuple[str, str, str], RenderedEmail],
        report: RunReport,
    ) -> list[Batch]:
        """Check every claimed row (`ledger.CLAIM_COLUMNS` + `store.claims.claim_contact_columns`) and group
        the sendable ones into batches of one step, variant and arm; record the others as skipped, with their
        reason."""
        settings = self.workspace.settings
        values_for = RecipientValues(settings, self.secret, campaign.id)
        now = self.clock()
        skipped: dict[int, str] = {}
        groups: dict[tuple[str, str, str], list[Recipient]] = {}
        for (
            row_id,
            contact_id,
            step_id,
            variant,
            arm,
            email,
            first_name,
            status,
            consent,
            attributes,
            suppressed,
        ) in claimed:
            reason = _dispatch_check(email, status, consent, attributes, suppressed, now)
            if reason:
                skipped[row_id] = reason
                continue
            values, unsubscribe_url = values_for.for_request(contact_id, first_name)
            key = (step_id, variant, arm)
            group = groups.get(key)
            if group is None:
                group = groups[key] = []
            group.append(Recipient(str(row_id), email, values, unsubscribe_url))
        if skipped:
            with self._writing(report) as conn:
                ledger.mark_skipped(conn, skipped)
            report.skipped.update(skipped.values())
        batches = []
        size = max(1, min(settings.delivery.batch_size, 1000))
        for (step_id, variant, arm), recipients in groups.items():
            key = (step_id, variant, arm)
            if key not in renders:
                with _timed(report, "render"):
                    renders[key] = self._render(ctx, campaign, step_id, variant, arm)
            for start in range(0, len(recipients), size):
                batches.append(
                    Batch(
                        campaign.id,
                        step_id,
                        variant,
                        renders[key],
                        campaign.sender_email or settings.clinic.sender_email,
                        campaign.sender_name or settings.clinic.sender_name,
                        tuple(recipients[start : start + size]),
                        reply_to=campaign.reply_to or settings.clinic.reply_to,
                        arm=arm,
                        request_id=uuid.uuid4().hex,
                    )
                )
        return batches

    def _render(self, ctx: CampaignContext, campaign: Campaign, step_id: str, variant: str, arm: str) -> RenderedEmail:
        """The step's rendering for this variant and arm (rendered before anything was enqueued, or now for
        a dispatch that did not plan), with its links spelled out up to the person's token (each
        recipient's values then carry the token alone: `RecipientValues.for_request`)."""
        rendered = self._renders.get(campaign.id, {}).get((step_id, variant, arm))
        if rendered is None:
            rendered = render_variant(ctx, campaign, campaign.step(step_id), variant, arm)
        return RecipientValues(self.workspace.settings, self.secret, campaign.id).with_links(rendered)

    def _record_at_once(self, marks: _Marks) -> None:
        with self._writing(marks.report) as conn:
            self._record(conn, marks)

    def _record(self, conn: Connection, marks: _Marks) -> None:
        """Record the outcomes `marks` holds, in the order the batches ended; then it holds none."""
        with _timed(marks.report, "mark"):
            last_ok: bool | None = None
            for batch, outcomes in marks.take():
                ok = self._record_outcomes(conn, marks.campaign, batch, outcomes, marks.report)
                if ok and last_ok:
                    continue  # the failure streak is already 0
                last_ok = ok
                reason = "" if ok else (outcomes[0].error or outcomes[0].status)
                if record_batch_result(conn, marks.campaign.id, ok, marks.max_failures, reason):
                    marks.report.paused = reason
                    log.warning("campaign %s paused after repeated failures", marks.campaign.id)
                    last_ok = None

    def _record_outcomes(
        self,
        conn: Connection,
        campaign: Campaign,
        batch: Batch,
        outcomes: list[Outcome],
        report: RunReport,
    ) -> bool:
        """Mark one batch's rows by their outcomes; True when all were sent. (The request's intent stays
        until the dispatch ends, `fleet.finish_claim`: a recovery finds its rows no longer `sending` and
        passes over it; rows that may have arrived take the request's id, `ledger.mark_unknown`.)"""
        ids_by: dict[tuple[str, str, str, bool], list[int]] = {}
        kinds = set(map(_OUTCOME_KIND, outcomes))
        if len(kinds) == 1:  # the usual case: a batch's recipients share their request's fate
            ids_by[kinds.pop()] = list(map(int, map(_DELIVERY_ID, outcomes)))
        else:
            for outcome in outcomes:
                ids_by.setdefault(_OUTCOME_KIND(outcome), []).append(int(outcome.delivery_id))
        now = self.clock()
        for (status, message_id, error, ambiguous), ids in ids_by.items():
            detail = message_id or error
            if status == SENT:
                count = ledger.mark_sent(conn, ids, detail, now)
                report.sent += count
            elif status == FAILED:
                count = ledger.mark_failed(conn, ids, detail)
                report.failed += count
            elif status == DEFERRED and ambiguous:
                count = ledger.mark_unknown(conn, ids, detail, batch.request_id)
                report.unknown += count
                status = ledger.UNKNOWN
            else:
                count = ledger.release(conn, ids, detail)
                report.released += count
                status = "deferred"
            if self.on_recorded is not None:
                self.on_recorded(campaign.id, status, count)
        ok = all(status == SENT for status, *_ in ids_by)
        if ok:
            report.sent_by[(batch.step_id, campaign.segment, batch.variant, batch.arm)] += len(outcomes)
        return ok


class _Marks:
    """The outcomes of one dispatch's batches that are not yet recorded in the ledger.

    Successes wait for the next claim's transaction (`Runner._feed`) or the end of the dispatch; an
    unsuccessful batch is recorded at once, with those before it, so that a failure streak pauses the
    campaign as soon as it reaches the limit. Until they are recorded the rows stay `sending`: a crash
    leaves them `unknown`, to be settled from the provider's events, never sent again by themselves.
    """

    def __init__(
        self, campaign: Campaign, report: RunReport, max_failures: int, record_at_once: Callable[[_Marks], None]
    ) -> None:
        self.campaign = campaign
        self.report = report
        self.max_failures = max_failures
        self._record_at_once = record_at_once
        self._waiting: list[tuple[Batch, list[Outcome]]] = []

    def add(self, batch: Batch, outcomes: list[Outcome]) -> None:
        """`Backend.send_all`'s callback, in the dispatching thread."""
        self._waiting.append((batch, outcomes))
        if any(outcome.status != SENT for outcome in outcomes):
            self._record_at_once(self)

    def take(self) -> list[tuple[Batch, list[Outcome]]]:
        waiting, self._waiting = self._waiting, []
        return waiting


def _dispatch_check(
    email: str | None, status: str, consent: Any, attributes: str | None, suppressed: str | None, now: datetime
) -> str:
    """Why a claimed row must not be sent now ('' when it may be)."""
    if email is None:
        return "erased: the contact no longer exists"
    if suppressed is not None:
        return f"suppressed: {suppressed}"
    if status == "pending" or not consent:
        return "no marketing consent"
    if attributes and "paused_until" in attributes and is_paused(attributes_of(attributes), now):
        return "paused by the person"
    return ""


@contextmanager
def _timed(report: RunReport, stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        report.timings[stage] += time.perf_counter() - started


def _add_counts(report: RunReport, counts: dict[str, Any]) -> None:
    """Add a helper process's counts (`_counts_of`; empty when it was sent home unused) to the parent's report."""
    if counts:
        report.helpers += 1
    for name in ("sent", "failed", "released", "unknown"):
        setattr(report, name, getattr(report, name) + counts.get(name, 0))
    report.skipped.update(counts.get("skipped", {}))
    report.sent_by.update({tuple(k): v for k, v in counts.get("sent_by", [])})
    for stage, seconds in counts.get("timings", {}).items():  # summed over the helpers
        report.timings[f"helpers_{stage}"] += seconds
    if counts.get("paused") and not report.paused:
        report.paused = counts["paused"]


def _counts_of(report: RunReport) -> dict[str, Any]:
    return {
        "sent": report.sent,
        "failed": report.failed,
        "released": report.released,
        "unknown": report.unknown,
        "skipped": dict(report.skipped),
        "sent_by": [[list(k), v] for k, v in report.sent_by.items()],
        "paused": report.paused,
        "timings": dict(report.timings),
    }


def helper_dispatch(
    root: Path, campaign_id: str, parent_pid: int, stop: threading.Event, more_coming: Callable[[], bool]
) -> Callable[[], dict[str, Any]]:
    """What a helper sender process runs (`campaign.helpers`): set up now (workspace, store, backend and
    campaign files, read afresh), and return the call that dispatches the campaign and returns its counts.

    Setting up is done while the helper waits for the parent's go. The dispatch stops when `stop` is set or
    its parent is gone, and does not stop at an empty queue while `more_coming()` says the parent is still
    enqueueing.
    """
    from needlecast.config import open_workspace
    from needlecast.delivery import get_backend
    from needlecast.store.engine import open_store

    workspace = open_workspace(root)
    engine = open_store(workspace.database_url)
    runner = Runner(
        workspace, engine, get_backend(workspace), stop=stop, parent_pid=parent_pid, more_coming=more_coming
    )
    ctx = CampaignContext.load(workspace)
    campaign = ctx.campaign(campaign_id)

    def dispatch() -> dict[str, Any]:
        report = RunReport(campaign_id)
        runner.dispatch(ctx, campaign, report)
        return _counts_of(report)

    return dispatch
