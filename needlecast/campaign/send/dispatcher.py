"""The dispatcher: next batch -> re-check -> requests -> backend -> record (DESIGN.md invariants 1 and 2).

It has one door to storage, the delivery store (`store.delivery.DeliveryStore`: the ledger, its queue,
campaign state, claim tokens, request intents and the fleet's rate limits), and builds its backends
(`delivery.base.BackendFactory`) with their limiter and before-post hook. It reads a campaign only as a
`rendering.Sending` (ids, addresses, renderings, recipients' values) and applies the ledger's rules
(`needlecast.ledger`). It imports nothing else of needlecast: no campaign files, no settings, no fleet.

Contract:
- Only rows the store hands out (claimed, `sending`) are ever given to the backend.
- Suppression, consent, erasure and a person's pause are re-checked for every claimed row just before it
  is handed to the backend (`ledger.unsendable_reason`); a row that fails the check is recorded as skipped
  with its reason, never dropped silently.
- A step renders once per (variant, arm); up to 1000 recipients go in one request.
- Each request's intent is written just before it first goes out: the backend of a dispatch is built with
  the dispatch's intent writer as its before-post hook, and with the fleet's rate limiter (kept in the
  database, so that the limits hold for every sender together).
- Successes are recorded in the transaction of the next claim (or at the end); an unsuccessful batch at once.
- After `max_failures` failed or deferred batches in a row the campaign pauses.
- A rejected API key releases the claimed rows (nothing was sent) and raises `ProviderAuthError`.
- `stop` (SIGTERM) is checked between batches: the batches in flight finish and are marked, the rest of
  the claimed rows go back to `queued`. A sender declared dead (fenced) stops the same way.
Logs carry ids and counts only: no addresses, names or concerns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Protocol

from sqlalchemy import Connection

from needlecast import ledger
from needlecast.campaign.send.rendering import Sending
from needlecast.delivery.base import DEFERRED, FAILED, SENT, Backend, BackendFactory, Batch, Outcome, Recipient
from needlecast.errors import SenderFenced
from needlecast.store.delivery import CAMPAIGN_ACTIVE, DeliveryStore

log = logging.getLogger("needlecast.runner")
_DELIVERY_ID, _OUTCOME_KIND = itemgetter(0), itemgetter(1, 2, 3, 4)  # of an Outcome: delivery id; the rest


@dataclass(frozen=True)
class DispatchSettings:
    """What a dispatch is paced by (from `[delivery]` and `[schedule]`, `runner.dispatch_settings`)."""

    batch_size: int = 1000  # recipients per request (at most 1000)
    max_in_flight: int = 4  # requests in flight at once
    max_failures: int = 5  # failed or deferred batches in a row that pause the campaign (0: never)
    requests_per_second: float = 0.0  # the fleet's limits (0: none)
    emails_per_hour: int = 0

    @property
    def request_size(self) -> int:
        return max(1, min(self.batch_size, 1000))


class Sender(Protocol):
    """The sending process a dispatch claims as (its heartbeat: `fleet.heartbeat.Heartbeat`)."""

    id: str


class Tally(Protocol):
    """What a dispatch counts (`report.RunReport`)."""

    sent: int
    failed: int
    released: int
    unknown: int
    paused: str
    inactive: str
    skipped: Counter[str]
    sent_by: Counter[tuple[str, str, str, str]]


class Guard(Protocol):
    """The deliverability guard and the warm-up (`guardrails.DispatchGuard`), handed in by whoever makes the
    dispatcher (`wiring.dispatcher_for`), which imports neither."""

    def after_record(self, conn: Connection, campaign_id: str, recorded: list[int], failed: bool) -> str:
        """After outcomes are recorded (in their transaction): why the campaign paused itself, or ''."""
        ...

    def admit(self, ids: list[int], now: datetime, zone: str) -> set[int]:
        """The claimed rows that may go now; the others are back in the queue for a later window (outside
        quiet hours in their recipient's zone, else `zone`: the campaign's)."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _never_post(batch: Batch) -> None:
    raise SenderFenced("a backend built to be checked never posts")


class Dispatcher:
    def __init__(
        self,
        store: DeliveryStore,
        make_backend: BackendFactory,
        settings: DispatchSettings,
        *,
        clock: Callable[[], datetime] = _utcnow,
        stop: threading.Event | None = None,
        claim_size: int | None = None,
        parent_pid: int | None = None,
        more_coming: Callable[[], bool] = lambda: False,
        on_recorded: Callable[[str, str, int], None] | None = None,
        on_rate_wait: Callable[[float], None] | None = None,
        guard: Guard | None = None,
    ) -> None:
        """`make_backend`: builds each dispatch's backend (with the fleet's limiter and the dispatch's intent
        writer). `parent_pid`: set in helper processes, which stop when their parent is gone; `more_coming()`:
        True while rows may still be enqueued (an empty queue is then waited on, not the end).
        `on_recorded(campaign, status, count)` is called as outcomes are recorded, `on_rate_wait(seconds)` at
        every wait for the fleet's rate limit (metrics). `guard`: the deliverability guard and the warm-up
        (`guardrails.DispatchGuard`; None: neither)."""
        self.store = store
        self.guard = guard
        self.make_backend = make_backend
        self.settings = settings
        self.clock = clock
        self.stop = stop or threading.Event()
        self.parent_pid = parent_pid
        self.more_coming = more_coming
        self.on_recorded = on_recorded
        # One round of requests per claim: a crash leaves at most a few rounds to recover (the one being
        # handed over, those in flight, and accepted ones waiting for the next claim to record them).
        self.claim_size = claim_size or settings.request_size * max(1, settings.max_in_flight)
        self.limiter = store.rate_limiter(settings.requests_per_second, settings.emails_per_hour, on_rate_wait)
        self._probe = make_backend(limiter=self.limiter, before_post=_never_post)  # `check` and `name` only
        self.backend_name = self._probe.name
        self.prepare_seconds = 0.0  # the backends' request building, for the caller's stage timings

    def check_backend(self) -> None:
        """Raise `ConfigurationError` when the backend cannot send (before anything is claimed)."""
        self._probe.check()

    def campaign_active(self, campaign_id: str, digest: str, report: Tally) -> bool:
        """Whether the campaign's state lets it send (its state made, active, the first time it is seen);
        why not in `report.inactive`."""
        with self.store.writing() as conn:
            state = self.store.ensure_campaign_state(conn, campaign_id, digest, self.clock())
        if state["status"] != CAMPAIGN_ACTIVE:
            report.inactive = f"{state['status']}: {state['note']}".strip(": ")
            log.info("campaign %s is %s; nothing sent", campaign_id, state["status"])
            return False
        return True

    def dispatch(self, sending: Sending, report: Tally, sender: Sender) -> None:
        """Claim, check, render, send and mark due rows until none are left (or stop / pause), as `sender`.

        Claiming is lazy: the backend pulls batches, and the next round is claimed only when the previous
        round's batches have all been handed over. Building one round overlaps sending the last, and only
        the rounds in flight are ever `sending`. Rows claimed but never handed to the backend (a stop, a
        pause, a refused API key) go back to `queued` at the end.
        """
        store = self.store
        token = store.claim_token(sender.id)
        marks = _Marks(sending, report, self.settings.max_failures, self._record_at_once)
        backend: Backend | None = None
        try:
            with store.intent_writer(sending.campaign_id, sender.id, token) as intents:
                backend = self.make_backend(limiter=self.limiter, before_post=intents.write)
                backend.send_all(self._feed(sending, token, marks), marks.add)
        except SenderFenced:
            log.error("campaign %s: this sender was declared dead; it stops sending", sending.campaign_id)
            self.stop.set()
        finally:
            if backend is not None:
                self.prepare_seconds += backend.prepare_seconds
            # Outcomes not yet recorded first, in the same transaction: a row the provider accepted must
            # never be released to the queue (and sent again) because its mark was still waiting.
            with store.writing() as conn:
                self._record(conn, marks)
                released = store.release_claim(conn, token, "not sent: the run stopped before this batch")
                store.finish_claim(conn, token)
            if released:
                log.info("campaign %s: %d claimed emails returned to the queue", sending.campaign_id, released)

    def _feed(self, sending: Sending, token: str, marks: _Marks) -> Iterator[Batch]:
        """Claim a round, check and batch it, hand the batches over one by one; stop at SIGTERM or a pause.

        The outcomes of the batches sent so far are recorded in the transaction that claims the next round
        (one write turn per round, not one per batch); an unsuccessful batch is recorded at once (`_Marks`).
        """
        report = marks.report
        store = self.store
        while not self._should_stop(report):
            with store.writing() as conn:
                self._record(conn, marks)
                state = store.campaign_state(conn, sending.campaign_id)
                if report.paused or state is None or state["status"] != CAMPAIGN_ACTIVE:  # by hand, or a sender
                    return
                claimed = store.claim(conn, sending.campaign_id, self.clock(), self.claim_size, token)
            if not claimed:
                if self.more_coming():  # the rows are still being enqueued: the next slice is on the way
                    time.sleep(0.02)
                    continue
                return
            for batch in self._batches(sending, claimed, report):
                if self._should_stop(report):
                    return
                yield batch

    def _should_stop(self, report: Tally) -> bool:
        orphaned = self.parent_pid is not None and os.getppid() != self.parent_pid
        return self.stop.is_set() or bool(report.paused) or orphaned

    def _batches(self, sending: Sending, claimed: list[Sequence[Any]], report: Tally) -> list[Batch]:
        """Check every claimed row (`store.delivery.CLAIMED_FIELDS`) and group the sendable ones into batches
        of one step, variant and arm; record the others as skipped, with their reason."""
        values_for = sending.values
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
            reason = ledger.unsendable_reason(email, status, consent, attributes, suppressed, now)
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
                self.store.mark_skipped(conn, skipped)
            report.skipped.update(skipped.values())
        if self.guard is not None:
            # the sendable rows' ids as the claim returned them (ints), not parsed back from the recipients
            sendable = [row[0] for row in claimed if row[0] not in skipped] if skipped else [row[0] for row in claimed]
            groups = _warm_up(self.guard, groups, sendable, now, sending.time_zone)
        batches = []
        size = self.settings.request_size
        for (step_id, variant, arm), recipients in groups.items():
            rendered = sending.rendering(step_id, variant, arm)
            for start in range(0, len(recipients), size):
                batches.append(
                    Batch(
                        sending.campaign_id,
                        step_id,
                        variant,
                        rendered,
                        sending.sender_email,
                        sending.sender_name,
                        tuple(recipients[start : start + size]),
                        reply_to=sending.reply_to,
                        arm=arm,
                        request_id=uuid.uuid4().hex,
                    )
                )
        return batches

    def _record_at_once(self, marks: _Marks) -> None:
        with self.store.writing() as conn:
            self._record(conn, marks)

    def _record(self, conn: Connection, marks: _Marks) -> None:
        """Record the outcomes `marks` holds, in the order the batches ended; then it holds none."""
        last_ok: bool | None = None
        failed = False
        campaign_id = marks.sending.campaign_id
        taken = marks.take()
        recorded: list[int] = []  # every id recorded, for the guard
        for batch, outcomes in taken:
            ok = self._record_outcomes(conn, marks.sending, batch, outcomes, marks.report, recorded)
            failed = failed or not ok
            if ok and last_ok:
                continue  # the failure streak is already 0
            last_ok = ok
            reason = "" if ok else (outcomes[0].error or outcomes[0].status)
            if self.store.record_batch_result(conn, campaign_id, ok, marks.max_failures, reason):
                marks.report.paused = reason
                log.warning("campaign %s paused after repeated failures", campaign_id)
                last_ok = None
        if taken and self.guard is not None and not marks.report.paused:
            # The deliverability guard: refused sends, and sent emails whose bounces or complaints came
            # before this mark, may pause the campaign (in this transaction).
            marks.report.paused = self.guard.after_record(conn, campaign_id, recorded, failed)

    def _record_outcomes(
        self,
        conn: Connection,
        sending: Sending,
        batch: Batch,
        outcomes: list[Outcome],
        report: Tally,
        recorded: list[int],
    ) -> bool:
        """Mark one batch's rows by their outcomes (their ids added to `recorded`); True when all were sent.
        (The request's intent stays until the dispatch ends, `finish_claim`: a recovery finds its rows no
        longer `sending` and passes over it; rows that may have arrived take the request's id, `mark_unknown`.)"""
        ids_by: dict[tuple[str, str, str, bool], list[int]] = {}
        kinds = set(map(_OUTCOME_KIND, outcomes))
        if len(kinds) == 1:  # the usual case: a batch's recipients share their request's fate
            ids_by[kinds.pop()] = list(map(int, map(_DELIVERY_ID, outcomes)))
        else:
            for outcome in outcomes:
                ids_by.setdefault(_OUTCOME_KIND(outcome), []).append(int(outcome.delivery_id))
        now = self.clock()
        store = self.store
        for (status, message_id, error, ambiguous), ids in ids_by.items():
            recorded.extend(ids)
            detail = message_id or error
            if status == SENT:
                count = store.mark_sent(conn, ids, detail, now)
                report.sent += count
            elif status == FAILED:
                count = store.mark_failed(conn, ids, detail)
                report.failed += count
            elif status == DEFERRED and ambiguous:
                count = store.mark_unknown(conn, ids, detail, batch.request_id)
                report.unknown += count
                status = ledger.UNKNOWN
            else:
                count = store.release(conn, ids, detail)
                report.released += count
                status = "deferred"
            if self.on_recorded is not None:
                self.on_recorded(sending.campaign_id, status, count)
        ok = all(status == SENT for status, *_ in ids_by)
        if ok:
            report.sent_by[(batch.step_id, sending.segment, batch.variant, batch.arm)] += len(outcomes)
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
        self, sending: Sending, report: Tally, max_failures: int, record_at_once: Callable[[_Marks], None]
    ) -> None:
        self.sending = sending
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


def _warm_up(
    guard: Guard,
    groups: dict[tuple[str, str, str], list[Recipient]],
    ids: list[int],
    now: datetime,
    zone: str,
) -> dict[tuple[str, str, str], list[Recipient]]:
    """The recipients (`ids`: theirs) that fit the warm-up's caps now (`warmup.admit`, fleet-wide), a deferred
    one's next window outside the quiet hours of `zone`; the others were put back in the queue for that
    window, in the ledger."""
    admitted = guard.admit(ids, now, zone)
    if len(admitted) == len(ids):
        return groups
    kept = {key: [r for r in group if int(r.delivery_id) in admitted] for key, group in groups.items()}
    return {key: group for key, group in kept.items() if group}
