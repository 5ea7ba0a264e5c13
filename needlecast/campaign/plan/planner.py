"""The planner's side of a run: segment -> plan -> enqueue (the rules it applies: `plan.rules`).

Contract:
- A broadcast is segmented and planned part by part (contact id ranges of AUDIENCE_PART contacts), and each
  part's emails are enqueued in committed slices of ENQUEUE_SLICE: the first rows can be sent while the
  rest of the audience is still being planned. Every contact is judged on its own, so the parts add up to
  what the whole would give.
- Enqueueing is idempotent (the store's ON CONFLICT): a crash between slices loses nothing, and the job's
  next run adds only what is missing.
- A sequence's sweep is a journey's (`campaign.journeys.sweeper`, its steps a straight line): new enrolments
  and exits recorded, then the steps that fell due enqueued.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

import pandas as pd
from sqlalchemy import func, select

from needlecast import ledger
from needlecast.audience.membership import evaluate, load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.journeys.sweeper import END_OF_JOURNEY, sweep_journey
from needlecast.campaign.plan.rules import LedgerKeys, Plan, load_ledger_view, plan_broadcast
from needlecast.campaign.plan.send_time import engagement_for
from needlecast.campaign.plan.warmup_days import engagement_scores, spread
from needlecast.campaign.plan.winner import Decision, load_decisions
from needlecast.campaign.send.report import RunReport
from needlecast.config import Workspace
from needlecast.store.bulk import Column
from needlecast.store.delivery import DeliveryStore
from needlecast.store.schema import contacts

log = logging.getLogger("needlecast.runner")
ENQUEUE_SLICE = 50_000
AUDIENCE_PART = 200_000  # contacts segmented and planned at a time by a broadcast


class Planner:
    def __init__(self, workspace: Workspace, store: DeliveryStore) -> None:
        self.workspace = workspace
        self.store = store
        self.engine = store.engine

    def plan_broadcast(
        self,
        ctx: CampaignContext,
        campaign: Campaign,
        report: RunReport,
        now: datetime,
        *,
        send_now: bool,
        on_slice: Callable[[], None] | None = None,
    ) -> int:
        """Segment, plan and enqueue the broadcast as of `now` (A/B decisions already made); how many members
        its segment has. `on_slice` is called after each committed slice of rows."""
        with self.engine.connect() as conn:
            view = load_ledger_view(conn, campaign.id, now, with_keys=False)  # ON CONFLICT: idempotent
            fresh = not self.store.has_rows(conn, campaign.id)
            decisions: Mapping[str, Decision] = load_decisions(conn, campaign.id)
            engagement = engagement_for(conn, campaign, now) if not send_now else None
            warm = self.workspace.settings.deliverability.warmup
            scores = engagement_scores(conn, now) if warm is not None else None
        segment = ctx.segments[campaign.segment]
        members = placed = 0
        for ids in self._audience_parts():
            with self.engine.connect() as conn:
                frame = load_frame(conn, segment, ids=ids)
            result = evaluate(segment, frame, now)
            plan = plan_broadcast(
                ctx,
                campaign,
                frame,
                LedgerKeys(),  # the ledger's unique key skips them at enqueue (ON CONFLICT)
                view.history,
                now,
                send_now=send_now,
                members=result,
                decisions=decisions,
                engagement=engagement,
            )
            members += result.size
            del frame, result
            plan.emails, placed = spread(plan.emails, warm, scores, placed)  # a new sender's warm-up days
            self.enqueue(plan, report, fresh=fresh, on_slice=on_slice)
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

    def audience_size(self) -> int:
        """How many contacts there are: what a broadcast's segment can be at most."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(contacts)).scalar_one())

    def advance_sequence(
        self, ctx: CampaignContext, campaign: Campaign, frame: pd.DataFrame, now: datetime, report: RunReport
    ) -> None:
        """One sweep of the sequence through the journey engine (one engine: a sequence is a straight line of
        waits and sends, `campaign.journeys.straight`): enrol whoever its rule admits, record exits, and
        enqueue the steps now due, held back by quiet hours and the cap as always."""
        swept = sweep_journey(self.engine, ctx, campaign, now, frame=frame)
        if swept.blocked:
            log.info("sequence %s not swept: %s", campaign.id, swept.blocked)
        exits = {reason: n for reason, n in swept.left.items() if reason != END_OF_JOURNEY}
        report.enrolled += swept.entered
        report.exited += sum(exits.values())
        report.excluded.update({f"exited: {reason}": n for reason, n in exits.items()})
        report.deferred.update(swept.deferred)
        report.enqueued += swept.enqueued

    def enqueue(
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
        total = len(emails)
        for start in range(0, total, ENQUEUE_SLICE):
            part = {
                name: value[start : start + ENQUEUE_SLICE] if isinstance(value, list) else value
                for name, value in columns.items()
            }
            with self.store.writing() as conn:
                report.enqueued += ledger.enqueue_columns(self.store, conn, part, fresh=fresh)
            if on_slice is not None:
                on_slice()
        log.info("campaign %s: %d new ledger rows", plan.campaign.id, report.enqueued)
