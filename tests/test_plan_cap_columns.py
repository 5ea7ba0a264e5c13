"""The frequency cap counted column-wise (`plan.rules.apply_cap`) decides exactly as the row-by-row rule it
replaced: the same emails skipped with the same reasons, the same emails moved to the same moments; and the
ledger's people tested all at once (`plan.rules.LedgerKeys`) as the set of pairs it replaced."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from needlecast.campaign.plan.rules import (
    DEFERRED_CAP,
    EXCLUDED_CAPPED,
    SKIPPED_CAP_DAY,
    SKIPPED_CAP_WEEK,
    LedgerKeys,
    apply_cap,
)
from needlecast.config import ScheduleSettings

START = datetime(2026, 11, 1, tzinfo=UTC)


def _row_by_row(
    emails: pd.DataFrame, history: pd.DataFrame, schedule: ScheduleSettings, defer: bool
) -> tuple[pd.DataFrame, Counter[str], Counter[str]]:
    """The rule as it was written before: one email at a time."""
    excluded: Counter[str] = Counter()
    deferred: Counter[str] = Counter()
    by_contact = history.groupby("contact_id")["at"].apply(list).to_dict()
    emails = emails.copy()
    for index, row in emails.iterrows():
        moments = by_contact.get(row["contact_id"])
        if not moments:
            continue
        due = row["due_at"]
        for _ in range(8):
            near = sum(1 for m in moments if abs(m - due) < pd.Timedelta(hours=24))
            week = sum(1 for m in moments if due - pd.Timedelta(days=7) <= m <= due)
            over = (schedule.max_per_day > 0 and near >= schedule.max_per_day) or (
                schedule.max_per_week > 0 and week >= schedule.max_per_week
            )
            if not over:
                break
            if not defer:
                emails.at[index, "status"] = "skipped"
                daily = schedule.max_per_day > 0 and near >= schedule.max_per_day
                emails.at[index, "reason"] = SKIPPED_CAP_DAY if daily else SKIPPED_CAP_WEEK.format(week)
                excluded[EXCLUDED_CAPPED] += 1
                break
            due = max(m for m in moments if abs(m - due) < pd.Timedelta(days=7)) + pd.Timedelta(hours=24)
        if defer and due != row["due_at"]:
            emails.at[index, "due_at"] = due
            deferred[DEFERRED_CAP] += 1
    return emails, excluded, deferred


def _moment(rng: random.Random) -> datetime:
    return START + timedelta(minutes=rng.randrange(0, 21 * 24 * 60))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("defer", [False, True])
def test_the_cap_counted_by_columns_decides_as_row_by_row(seed: int, defer: bool) -> None:
    rng = random.Random(seed)
    schedule = ScheduleSettings(max_per_day=rng.choice([0, 1, 2]), max_per_week=rng.choice([0, 2, 3]))
    people = 300
    emails = pd.DataFrame(
        {
            "contact_id": [rng.randrange(people) for _ in range(400)],
            "due_at": pd.to_datetime([_moment(rng) for _ in range(400)], utc=True),
            "status": "queued",
            "reason": "",
        }
    )
    history = pd.DataFrame(
        {
            "contact_id": [rng.randrange(people) for _ in range(900)],
            "at": pd.to_datetime([_moment(rng) for _ in range(900)], utc=True),
        }
    )
    expected, expected_excluded, expected_deferred = _row_by_row(emails, history, schedule, defer)
    excluded: Counter[str] = Counter()
    deferred: Counter[str] = Counter()
    found = apply_cap(emails, history, schedule, defer=defer, excluded=excluded, deferred=deferred)
    pd.testing.assert_frame_equal(found, expected)
    assert (excluded, deferred) == (expected_excluded, expected_deferred)
    assert emails["status"].eq("queued").all()  # the frame given is not changed in place


@pytest.mark.parametrize("seed", range(5))
def test_the_ledgers_people_tested_at_once_are_the_pairs_a_set_holds(seed: int) -> None:
    """`LedgerKeys.holds` (the plan's "already in the ledger", tested all at once per step) gives, for every
    email, what the set of (step, contact) pairs it replaced gives: the same step with another contact, the
    same contact in another step, steps the ledger does not have."""
    rng = random.Random(seed)
    known = {(rng.choice(["guide", "reminder"]), rng.randrange(60)) for _ in range(rng.randrange(1, 80))}
    keys = LedgerKeys(
        {step: np.array(sorted(c for s, c in known if s == step), dtype="int64") for step in {s for s, _ in known}}
    )
    steps = pd.Series([rng.choice(["guide", "reminder", "other"]) for _ in range(200)])
    contacts = pd.Series([rng.randrange(60) for _ in range(200)], dtype="int64")
    wanted = [(s, int(c)) in known for s, c in zip(steps, contacts, strict=True)]
    assert keys.holds(steps, contacts).tolist() == wanted
    assert bool(keys) and not LedgerKeys() and not LedgerKeys({"guide": np.array([], dtype="int64")})
