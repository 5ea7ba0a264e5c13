"""The dispatcher: next batch -> re-check -> requests -> backend -> record (DESIGN.md invariants 1 and 2).

It speaks to two interfaces only: a delivery store (`store.delivery.DeliveryStore`) and a backend
(`delivery.base.Backend`).

Contract:
- Only rows the store hands out (claimed, `sending`) are ever given to the backend.
- Suppression, consent and erasure are re-checked for every claimed row just before it is handed to the
  backend; a row that fails the check is recorded as skipped with its reason, never dropped silently.
- A step renders once per (variant, arm); up to 1000 recipients go in one request.
- Each request's intent is written just before it first goes out (`campaign.intents`).
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
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, Protocol

from sqlalchemy import Connection

from needlecast import ledger
from needlecast.audience.recipient_changes import is_paused
from needlecast.audience.segments import attributes_of
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.gate import ensure_sendable
from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.send.intents import IntentWriter
from needlecast.campaign.send.rendering import RenderKey, render_variant
from needlecast.campaign.send.report import RunReport
from needlecast.campaign.send.state import ACTIVE, ensure_state, get_state, record_batch_result
from needlecast.config import Workspace, signing_secret
from needlecast.delivery.base import DEFERRED, FAILED, SENT, Backend, Batch, Outcome, RateLimiter, Recipient
from needlecast.errors import SenderFenced
from needlecast.fleet.heartbeat import Heartbeat
from needlecast.store import fleet
from needlecast.store.delivery import DeliveryStore
from needlecast.store.helpers import utcnow
from needlecast.store.ratelimit import FleetRateLimiter
from needlecast.templating.recipient import RecipientValues
from needlecast.templating.render import RenderedEmail

log = logging.getLogger("needlecast.runner")
_DELIVERY_ID, _OUTCOME_KIND = itemgetter(0), itemgetter(1, 2, 3, 4)  # of an Outcome: delivery id; the rest


class Guard(Protocol):
    """The deliverability guard and the warm-up (`guardrails.DispatchGuard`), handed in by whoever makes the
    dispatcher, which imports neither."""

    def after_record(self, conn: Connection, campaign_id: str, recorded: list[int], failed: bool) -> str:
        """After outcomes are recorded (in their transaction): why the campaign paused itself, or ''."""
        ...

    def admit(self, ids: list[int], now: datetime) -> set[int]:
        """The claimed rows that may go now; the others are back in the queue for a later window."""
        ...


class Dispatcher:
    def __init__(
        self,
        workspace: Workspace,
        store: DeliveryStore,
        backend: Backend,
        *,
        clock: Callable[[], datetime] = utcnow,
        stop: threading.Event | None = None,
        claim_size: int | None = None,
        parent_pid: int | None = None,
        more_coming: Callable[[], bool] = lambda: False,
        on_recorded: Callable[[str, str, int], None] | None = None,
        prerendered: dict[str, dict[RenderKey, RenderedEmail]] | None = None,
        guard: Guard | None = None,
    ) -> None:
        """`parent_pid`: set in helper processes, which stop when their parent is gone; `more_coming()`: True
        while rows may still be enqueued (an empty queue is then waited on, not the end). `on_recorded(
        campaign, status, count)` is called as outcomes are recorded (metrics). `prerendered`: renderings made
        before enqueueing, by campaign (others are rendered when first needed). `guard`: the deliverability
        guard and warm-up (`guardrails.DispatchGuard`; None: neither)."""
        self.workspace = workspace
        self.store = store
        self.backend = backend
        self.clock = clock
        self.stop = stop or threading.Event()
        self.parent_pid = parent_pid
        self.more_coming = more_coming
        self.on_recorded = on_recorded
        self.prerendered = prerendered if prerendered is not None else {}
        self.guard = guard
        # One round of requests per claim: a crash leaves at most a few rounds to recover (the one being
        # handed over, those in flight, and accepted ones waiting for the next claim to record them).
        delivery = workspace.settings.delivery
        self.claim_size = claim_size or max(1, min(delivery.batch_size, 1000)) * max(1, delivery.max_in_flight)
        self.secret = signing_secret(required=backend.name == "sendgrid")
        if isinstance(backend.limiter, RateLimiter):  # limits hold for the whole fleet: kept in the database
            backend.limiter = FleetRateLimiter(store.engine, delivery.requests_per_second, delivery.emails_per_hour)

    def may_send(self, ctx: CampaignContext, campaign: Campaign, report: RunReport) -> bool:
        """Whether the campaign may send now (not a draft, active, past the claims gate, a working backend);
        why not in `report.inactive`. Raises `CampaignBlocked` or `ConfigurationError`."""
        if campaign.draft:
            report.inactive = "a draft (remove 'draft: true' from its file to send it)"
            return False
        with self.store.engine.begin() as conn:
            state = ensure_state(conn, campaign.id, campaign.digest, self.clock())
        if state["status"] != ACTIVE:
            report.inactive = f"{state['status']}: {state['note']}".strip(": ")
            log.info("campaign %s is %s; nothing sent", campaign.id, state["status"])
            return False
        ensure_sendable(ctx, campaign)
        self.backend.check()
        return True

    def dispatch(
        self, ctx: CampaignContext, campaign: Campaign, report: RunReport, sender: Heartbeat | None = None
    ) -> None:
        """Claim, check, render, send and mark due rows until none are left (or stop / pause), as `sender`
        (without one, a sender registered for this dispatch alone).

        Claiming is lazy: the backend pulls batches, and the next round is claimed only when the previous
        round's batches have all been handed over. Building one round overlaps sending the last, and only
        the rounds in flight are ever `sending`. Rows claimed but never handed to the backend (a stop, a
        pause, a refused API key) go back to `queued` at the end.
        """
        if sender is not None:
            self._dispatch(ctx, campaign, report, sender)
            return
        lease = self.workspace.settings.delivery.lease_seconds
        with Heartbeat(self.store.engine, "send", lease, on_fenced=self.stop.set) as own:
            self._dispatch(ctx, campaign, report, own)

    def _dispatch(self, ctx: CampaignContext, campaign: Campaign, report: RunReport, sender: Heartbeat) -> None:
        token = fleet.claim_token(sender.id)
        renders: dict[RenderKey, RenderedEmail] = {}
        marks = _Marks(
            campaign, report, self.workspace.settings.schedule.max_consecutive_failures, self._record_at_once
        )
        try:
            with IntentWriter(self.store, campaign.id, sender.id, token) as intents:
                self.backend.before_post = intents.write
                self.backend.send_all(self._feed(ctx, campaign, token, renders, marks), marks.add)
        except SenderFenced:
            log.error("campaign %s: this sender was declared dead; it stops sending", campaign.id)
            self.stop.set()
        finally:
            self.backend.before_post = None
            # Outcomes not yet recorded first, in the same transaction: a row the provider accepted must
            # never be released to the queue (and sent again) because its mark was still waiting.
            with self.store.writing() as conn:
                self._record(conn, marks)
                released = ledger.release_claim(
                    conn, token, "not sent: the run stopped before this batch", store=self.store
                )
                fleet.finish_claim(conn, token)
            if released:
                log.info("campaign %s: %d claimed emails returned to the queue", campaign.id, released)

    def _feed(
        self,
        ctx: CampaignContext,
        campaign: Campaign,
        token: str,
        renders: dict[RenderKey, RenderedEmail],
        marks: _Marks,
    ) -> Iterator[Batch]:
        """Claim a round, check and batch it, hand the batches over one by one; stop at SIGTERM or a pause.

        The outcomes of the batches sent so far are recorded in the transaction that claims the next round
        (one write turn per round, not one per batch); an unsuccessful batch is recorded at once (`_Marks`).
        """
        report = marks.report
        while not self._should_stop(report):
            with self.store.writing() as conn:
                self._record(conn, marks)
                if report.paused or get_state(conn, campaign.id)["status"] != ACTIVE:  # by hand, or by a sender
                    return
                claimed = self.store.claim(conn, campaign.id, self.clock(), self.claim_size, token)
            if not claimed:
                if self.more_coming():  # the rows are still being enqueued: the next slice is on the way
                    time.sleep(0.02)
                    continue
                return
            for batch in self._batches(ctx, campaign, claimed, renders, report):
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
        renders: dict[RenderKey, RenderedEmail],
        report: RunReport,
    ) -> list[Batch]:
        """Check every claimed row (`store.delivery.CLAIMED_FIELDS`) and group the sendable ones into batches
        of one step, variant and arm; record the others as skipped, with their reason."""
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
            with self.store.writing() as conn:
                ledger.mark_skipped(conn, skipped, store=self.store)
            report.skipped.update(skipped.values())
        if self.guard is not None:
            groups = self._warm_up(self.guard, groups, now)
        batches = []
        size = max(1, min(settings.delivery.batch_size, 1000))
        for (step_id, variant, arm), recipients in groups.items():
            key = (step_id, variant, arm)
            if key not in renders:
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

    def _warm_up(
        self, guard: Guard, groups: dict[tuple[str, str, str], list[Recipient]], now: datetime
    ) -> dict[Any, list[Recipient]]:
        """The recipients that fit the warm-up's caps now (`warmup.admit`, fleet-wide); the others were put
        back in the queue for the next window, in the ledger."""
        ids = [int(r.delivery_id) for group in groups.values() for r in group]
        admitted = guard.admit(ids, now)
        if len(admitted) == len(ids):
            return groups
        kept = {key: [r for r in group if int(r.delivery_id) in admitted] for key, group in groups.items()}
        return {key: group for key, group in kept.items() if group}

    def _render(self, ctx: CampaignContext, campaign: Campaign, step_id: str, variant: str, arm: str) -> RenderedEmail:
        """The step's rendering for this variant and arm (made before anything was enqueued, or now for a
        dispatch that did not plan), with its links spelled out up to the person's token (each recipient's
        values then carry the token alone: `RecipientValues.for_request`)."""
        rendered = self.prerendered.get(campaign.id, {}).get((step_id, variant, arm))
        if rendered is None:
            rendered = render_variant(ctx, campaign, campaign.step(step_id), variant, arm)
        return RecipientValues(self.workspace.settings, self.secret, campaign.id).with_links(rendered)

    def _record_at_once(self, marks: _Marks) -> None:
        with self.store.writing() as conn:
            self._record(conn, marks)

    def _record(self, conn: Connection, marks: _Marks) -> None:
        """Record the outcomes `marks` holds, in the order the batches ended; then it holds none."""
        last_ok: bool | None = None
        failed = False
        taken = marks.take()
        for batch, outcomes in taken:
            ok = self._record_outcomes(conn, marks.campaign, batch, outcomes, marks.report)
            if ok and last_ok:
                continue  # the failure streak is already 0
            last_ok = ok
            reason = "" if ok else (outcomes[0].error or outcomes[0].status)
            if record_batch_result(conn, marks.campaign.id, ok, marks.max_failures, reason):
                marks.report.paused = reason
                log.warning("campaign %s paused after repeated failures", marks.campaign.id)
                last_ok = None
            failed = failed or not ok
        if taken and self.guard is not None and not marks.report.paused:
            # The deliverability guard: refused sends, and sent emails whose bounces or complaints came
            # before this mark, may pause the campaign (in this transaction).
            marks.report.paused = self.guard.after_record(conn, marks.campaign.id, _delivery_ids(taken), failed)

    def _record_outcomes(
        self, conn: Connection, campaign: Campaign, batch: Batch, outcomes: list[Outcome], report: RunReport
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
                count = ledger.mark_sent(conn, ids, detail, now, store=self.store)
                report.sent += count
            elif status == FAILED:
                count = ledger.mark_failed(conn, ids, detail, store=self.store)
                report.failed += count
            elif status == DEFERRED and ambiguous:
                count = ledger.mark_unknown(conn, ids, detail, batch.request_id, store=self.store)
                report.unknown += count
                status = ledger.UNKNOWN
            else:
                count = ledger.release(conn, ids, detail, store=self.store)
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

    Successes wait for the next claim's transaction (`Dispatcher._feed`) or the end of the dispatch; an
    unsuccessful batch is recorded at once, with those before it, so that a failure streak pauses the
    campaign as soon as it reaches the limit. Until they are recorded the rows stay `sending`: a crash
    leaves them `unknown` (their intents were written), settled from the provider's events, never sent
    again by themselves.
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


def _delivery_ids(taken: list[tuple[Batch, list[Outcome]]]) -> list[int]:
    return [int(outcome.delivery_id) for _, outcomes in taken for outcome in outcomes]


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
