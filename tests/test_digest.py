"""The weekly digest: sent through the outbox at its time (a frozen clock), once per week, with the week's
figures against the week before counted here independently, and never a contact's address, name or concern;
its scheduler job and its settings."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from needlecast.config import open_workspace
from needlecast.delivery.outbox import read_outbox
from needlecast.errors import ConfigurationError
from needlecast.reports.compare import Catalogue, Filters, annotate, compare, email_flags
from needlecast.reports.digest import digest_trigger, weekly_digest
from needlecast.schedule import SchedulerRuntime, desired_jobs, run_digest_job
from needlecast.store.engine import open_store
from needlecast.store.schema import deliveries
from tests.test_report_figures import BASE, Email, fate, store

DIGEST = '\n[reports]\ndigest = { recipients = ["team@clinic.example", "owner@clinic.example"], day = "Monday" }\n'
FRIDAY = datetime(2026, 3, 13, 17, 0, tzinfo=UTC)  # BASE is Monday 2 March 2026, 09:00 UTC (GMT in London)
DUE = datetime(2026, 3, 16, 8, 0, tzinfo=UTC)  # the next Monday, 08:00 in London


def _emails() -> list[Email]:
    """Three emails in the week before (2 to 8 March), four in the week (9 to 15 March), one after it."""
    week_before = [
        Email("spring", "acne", True, [("delivered", 0, False), ("open", 600, False)], day=1),
        Email("spring", "general", True, [("delivered", 0, False)], day=2),
        Email("autumn", "acne", True, [("bounce", 30, False)], day=3),
    ]
    week = [
        Email("spring", "acne", True, [("delivered", 0, False), ("open", 600, True), ("click", 900, False)], [2], 8),
        Email("spring", "general", True, [("delivered", 0, False), ("open", 60, False)], day=9),
        Email("autumn", "acne", True, [("delivered", 0, False), ("spam", 600, False)], day=10),
        Email("autumn", "general", True, [("delivered", 0, False)], day=12),
    ]
    return [*week_before, *week, Email("spring", "acne", True, [("delivered", 0, False)], day=15)]


@pytest.fixture()
def digest_store(workspace_dir: Path, store_url: str) -> tuple[Path, str, list[dict[str, Any]]]:
    (workspace_dir / "needlecast.toml").write_text((workspace_dir / "needlecast.toml").read_text() + DIGEST)
    engine = open_store(store_url)
    rows = store(engine, _emails(), set(), random.Random(3))
    engine.dispose()
    return workspace_dir, store_url, rows


def _week(rows: list[dict[str, Any]], first: int, last: int) -> dict[str, float]:
    """The week's headline figures, counted here from the generated emails (days `first`..`last` after BASE)."""
    mine = [fate(r) for r in rows if first <= (r["sent_at"] - BASE).days <= last]
    delivered = sum(f["delivered"] for f in mine)
    return {
        "sent": len(mine),
        "delivered": delivered,
        "opened_rate": sum(f["opened"] for f in mine) / delivered,
        "clicked_rate": sum(f["clicked"] for f in mine) / delivered,
    }


def test_the_digest_is_sent_through_the_outbox_at_its_time_once_a_week(
    digest_store: tuple[Path, str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, url, rows = digest_store
    workspace = open_workspace(root)
    due = digest_trigger(workspace).get_next_fire_time(None, FRIDAY)
    assert due == DUE  # Monday 08:00 on the clinic's clock, from a frozen Friday
    engine = open_store(url)
    try:
        before = compare(annotate(email_flags(engine), Catalogue(), "Europe/London"), Filters()).totals
        monkeypatch.setattr("needlecast.schedule.utcnow", lambda: due)  # the clock at the job's time
        run_digest_job(str(root), runtime=SchedulerRuntime(engine))
        sent = [entry["request"] for entry in read_outbox(workspace.outbox_dir)]
        assert len(sent) == 1
        request = sent[0]
        assert [p["to"][0]["email"] for p in request["personalizations"]] == [
            "team@clinic.example",
            "owner@clinic.example",
        ]
        assert request["subject"].endswith("your week in email, 9 Mar to 15 Mar 2026")
        text = request["content"][0]["value"]
        week, previous = _week(rows, 7, 13), _week(rows, 0, 6)
        assert f"Emails sent: {week['sent']} (the week before: {previous['sent']}; change: +1)" in text
        assert f"Delivered: {week['delivered']} (the week before: {previous['delivered']}; change: +2)" in text
        assert "Open rate: – (the week before: –; change: –)" in text  # under 10 delivered: counts, no rates
        assert "Bookings received: 1 (the week before: 0), worth GBP 60.00." in text
        assert "Bookings credited to this week's emails: 1." in text
        assert "autumn: complaints over 0.3 % (critical)" in text  # the week's health flag (1 in 2 delivered)
        body = json.dumps(request)
        for person in range(len(rows)):  # never a contact's address; and no concern
            assert f"p{person}@example.com" not in body
        assert "acne" not in body
        with engine.connect() as conn:  # no campaign counts it: no ledger row
            assert conn.execute(select(func.count()).where(deliveries.c.campaign_id == "reports")).scalar() == 0
        after = compare(annotate(email_flags(engine), Catalogue(), "Europe/London"), Filters()).totals
        assert after.equals(before)
        run_digest_job(str(root), runtime=SchedulerRuntime(engine))  # again, or a second scheduler: not again
        monkeypatch.setattr("needlecast.schedule.utcnow", lambda: due + timedelta(days=2))  # late: the same week
        run_digest_job(str(root), runtime=SchedulerRuntime(engine))
        assert len(list(read_outbox(workspace.outbox_dir))) == 1
    finally:
        engine.dispose()


def test_the_weeks_rates_and_ranking_and_a_late_run_sums_up_the_same_week(
    digest_store: tuple[Path, str, list[dict[str, Any]]],
) -> None:
    root, url, rows = digest_store
    engine = open_store(url)
    try:
        on_time = weekly_digest(engine, open_workspace(root), DUE, min_group=0)
        figures = {name: (this, before, change) for name, this, before, change in on_time.figures}
        week, previous = _week(rows, 7, 13), _week(rows, 0, 6)
        for name, figure in (("Open rate", "opened_rate"), ("Click rate", "clicked_rate")):
            points = (week[figure] - previous[figure]) * 100
            wanted = (f"{week[figure] * 100:.1f} %", f"{previous[figure] * 100:.1f} %", f"{points:+.1f} points")
            assert figures[name] == wanted, name
        assert on_time.best.startswith("spring: conversion rate 50.0 %, click rate 50.0 %")
        assert on_time.worst.startswith("autumn: conversion rate 0.0 %")
        late = weekly_digest(engine, open_workspace(root), DUE + timedelta(days=3, hours=5), min_group=0)
        assert (late.start, late.end, late.figures) == (on_time.start, on_time.end, on_time.figures)
        assert weekly_digest(engine, open_workspace(root), DUE).best == ""  # under 10 delivered: not ranked
    finally:
        engine.dispose()


def test_the_digest_job_is_scheduled_only_when_recipients_are_set(workspace_dir: Path, store_url: str) -> None:
    engine = open_store(store_url)
    try:
        with engine.begin() as conn:
            plain = {job.id for job in desired_jobs(open_workspace(workspace_dir), conn, FRIDAY)[0]}
        assert not any(job.startswith("digest:") for job in plain)
        config = workspace_dir / "needlecast.toml"
        config.write_text(config.read_text() + DIGEST.replace('"Monday"', '"friday", time = "17:30"'))
        with engine.begin() as conn:
            jobs = {job.id: job for job in desired_jobs(open_workspace(workspace_dir), conn, FRIDAY)[0]}
        job = jobs["digest:friday:17:30:Europe/London"]
        assert job.func is run_digest_job and job.args == [str(workspace_dir)]
        assert job.trigger.get_next_fire_time(None, FRIDAY) == datetime(2026, 3, 13, 17, 30, tzinfo=UTC)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ('digest = { recipients = ["not an address"] }', "digest.recipients: entry 1 is not an address"),
        ('digest = { recipients = ["a@clinic.example"], day = "someday" }', "digest.day must be a weekday"),
        ('digest = { recipients = ["a@clinic.example"], time = "8am" }', "digest.time must be HH:MM"),
        ('digest = { recipients = ["a@clinic.example"], hour = 8 }', "unknown key 'hour'"),
        ("weekly = true", "[reports] takes one key"),
    ],
)
def test_digest_settings_that_cannot_work_are_refused_with_the_key(
    workspace_dir: Path, setting: str, problem: str
) -> None:
    config = workspace_dir / "needlecast.toml"
    config.write_text(config.read_text() + f"\n[reports]\n{setting}\n")
    with pytest.raises(ConfigurationError) as raised:
        open_workspace(workspace_dir)
    assert problem in str(raised.value)
