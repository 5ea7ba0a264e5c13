"""A/B winner tests: a slice of a broadcast's audience tests the arms, then the rest gets the winner.

Contract:
- `in_test_slice(campaign, step, contact_ids, fraction)`: whether each contact is in the step's test slice,
  from a stable hash of (campaign, step, contact): the same contacts on every run, about `fraction` of them,
  independent of the arm hash (so the slice is split between the arms as the step's `split` says).
- `decision_due_at(conn, campaign, step)`: `decide_after` after the last due time of the step's test rows in
  the ledger (None before any is enqueued).
- `decide_due(engine, ctx, campaign, now)` takes the decision of every winner-test step whose time has come
  and that has none yet: per arm, the test rows delivered and the successes of the step's `metric` (human
  opens: machine opens never count, see `statistics.engagement.human_opened`; unique clickers; deliveries credited
  with a conversion by the workspace's attribution rules); the arm with the best rate wins when the
  two-sided two-proportion z-test against the runner-up has p < 1 - `confidence`; otherwise `fallback`
  (arm A, or the better rate, ties to the earlier arm). The decision is written once (`ab_decisions`, keyed
  by campaign and step): a concurrent or repeated decision reads the first one back, so a crash or a second
  scheduler around the decision time can never pick another winner.
- `load_decisions(conn, campaign_id)` reads them back for the planner, `campaign status`, `plan` and the report.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import Campaign, Step, WinnerTest
from needlecast.statistics.attribution import attribute
from needlecast.statistics.engagement import conversion_events, delivery_flags, human_opened, ledger_and_events
from needlecast.statistics.significance import z_test
from needlecast.store.helpers import insert_new
from needlecast.store.schema import ab_decisions, deliveries

SIGNIFICANT = "significant"
FALLBACK_A = "fallback: arm A"
FALLBACK_BETTER = "fallback: the better rate"
NO_DATA = "no deliveries to compare"


@dataclass(frozen=True)
class ArmFigures:
    delivered: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.delivered if self.delivered else float("nan")


@dataclass(frozen=True)
class Decision:
    step_id: str
    winner: str
    rule: str
    metric: str
    figures: dict[str, Any]  # {"arms": {arm: {"delivered", "successes", "rate"}}, "p_value": float | None}
    decided_at: datetime

    def describe(self) -> str:
        arms = self.figures.get("arms", {})
        rates = ", ".join(
            f"{arm} {v['successes']}/{v['delivered']} ({_percent(v.get('rate'))})" for arm, v in sorted(arms.items())
        )
        p_value = self.figures.get("p_value")
        shown_p = f", p = {p_value:.3f}" if isinstance(p_value, float) and not math.isnan(p_value) else ""
        return f"step {self.step_id}: arm {self.winner} won on {self.metric} ({self.rule}{shown_p}; {rates})"


def _percent(rate: object) -> str:
    return f"{rate:.1%}" if isinstance(rate, float) and not math.isnan(rate) else "n/a"


def in_test_slice(campaign_id: str, step_id: str, contact_ids: Iterable[int], fraction: float) -> list[bool]:
    edge = int(fraction * 2**32)
    return [
        int(hashlib.sha256(f"{campaign_id}|{step_id}|{c}|test".encode()).hexdigest()[:8], 16) < edge
        for c in contact_ids
    ]


def winner_steps(campaign: Campaign) -> list[tuple[Step, WinnerTest]]:
    return [(step, step.winner_test) for step in campaign.steps if step.winner_test is not None]


def load_decisions(conn: Connection, campaign_id: str) -> dict[str, Decision]:
    rows = conn.execute(select(ab_decisions).where(ab_decisions.c.campaign_id == campaign_id)).mappings()
    return {
        row["step_id"]: Decision(
            row["step_id"], row["winner"], row["rule"], row["metric"], json.loads(row["figures"]), row["decided_at"]
        )
        for row in rows
    }


def decision_due_at(conn: Connection, campaign: Campaign, step: Step) -> datetime | None:
    assert step.winner_test is not None
    last = conn.execute(
        select(func.max(deliveries.c.due_at)).where(
            deliveries.c.campaign_id == campaign.id, deliveries.c.step_id == step.id
        )
    ).scalar_one_or_none()
    if last is None:
        return None
    return pd.Timestamp(last).tz_convert("UTC").to_pydatetime() + step.winner_test.decide_after


def arm_figures(ctx: CampaignContext, engine: Engine, campaign: Campaign, step: Step) -> dict[str, ArmFigures]:
    """Per arm of the step's rows now in the ledger (the test slice, before a decision): delivered, and the
    successes of the step's metric."""
    assert step.winner_test is not None
    ledger, stored = ledger_and_events(engine, campaign.id, None)
    ledger = ledger[(ledger["step_id"] == step.id) & (ledger["arm"] != "")]
    flags = delivery_flags(ledger, stored)
    metric = step.winner_test.metric
    if metric == "opens":
        success = flags["id"].isin(human_opened(ledger, stored))
    elif metric == "clicks":
        success = flags["clicked"]
    else:
        rules = ctx.workspace.settings.attribution
        credited = attribute(flags, stored, conversion_events(engine, rules.conversions, None), rules.window_days)
        converted = set(credited["delivery_id"].dropna().astype("int64")) if not credited.empty else set()
        success = flags["id"].isin(converted)
    flags = flags.assign(_success=success & flags["delivered"])
    figures = {}
    for arm in step.arm_names:
        part = flags[flags["arm"] == arm]
        figures[arm] = ArmFigures(int(part["delivered"].sum()), int(part["_success"].sum()))
    return figures


def choose_winner(figures: dict[str, ArmFigures], test: WinnerTest) -> tuple[str, str, float]:
    """(winner, rule, p value) for the arms' figures (see the module contract)."""
    arms = sorted(figures)
    measured = [a for a in arms if figures[a].delivered > 0]
    if len(measured) < 2:
        return arms[0], NO_DATA, float("nan")
    ranked = sorted(measured, key=lambda a: (-figures[a].rate, a))
    best, second = figures[ranked[0]], figures[ranked[1]]
    p_value = z_test(second.successes, second.delivered, best.successes, best.delivered)
    if not math.isnan(p_value) and p_value < 1 - test.confidence and best.rate > second.rate:
        return ranked[0], SIGNIFICANT, p_value
    if test.fallback == "better":
        return ranked[0], FALLBACK_BETTER, p_value
    return arms[0], FALLBACK_A, p_value


def decide_due(ctx: CampaignContext, engine: Engine, campaign: Campaign, now: datetime) -> list[Decision]:
    """Decide every winner-test step whose time has come (see the module contract); the decisions taken now."""
    taken: list[Decision] = []
    with engine.connect() as conn:
        decided = load_decisions(conn, campaign.id)
        due = {step.id: decision_due_at(conn, campaign, step) for step, _ in winner_steps(campaign)}
    for step, test in winner_steps(campaign):
        moment = due[step.id]
        if step.id in decided or moment is None or now < moment:
            continue
        figures = arm_figures(ctx, engine, campaign, step)
        winner, rule, p_value = choose_winner(figures, test)
        shown = {
            "arms": {
                arm: {"delivered": f.delivered, "successes": f.successes, "rate": f.rate} for arm, f in figures.items()
            },
            "p_value": p_value,
            "confidence": test.confidence,
        }
        with engine.begin() as conn:
            decided_now = insert_new(
                conn,
                ab_decisions,
                {
                    "campaign_id": campaign.id,
                    "step_id": step.id,
                    "winner": winner,
                    "rule": rule,
                    "metric": test.metric,
                    "figures": json.dumps(shown, allow_nan=True),
                    "decided_at": now,
                },
                ab_decisions.c.campaign_id,
            )
        if decided_now is None:
            continue  # another process decided first: its decision stands
        taken.append(Decision(step.id, winner, rule, test.metric, shown, now))
    return taken
