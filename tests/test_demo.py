"""`needlecast demo` end to end in a fresh workspace, and the plan command."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from needlecast.accounts.audit import entries
from needlecast.accounts.roles import cli_actor
from needlecast.config import open_workspace
from needlecast.delivery.outbox import read_outbox
from needlecast.store.engine import open_store
from needlecast.store.schema import events
from tests.cli_runner import Result, run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """The `needlecast` command in this process (`tests.cli_runner`), without NEEDLECAST_ settings."""

    def invoke(root: Path, *args: str) -> Result:
        return run(monkeypatch, root, *args)

    return invoke


def test_demo_sends_broadcast_and_day_zero_then_nothing_new(workspace_dir: Path, cli: Callable[..., Result]) -> None:
    first = cli(workspace_dir, "demo")
    assert first.code == 0, first.stdout + first.stderr
    assert "5. Campaigns" in first.stdout and "request(s) written to" in first.stdout
    requests = [e["request"] for e in read_outbox(workspace_dir / "outbox")]
    steps = {(r["custom_args"]["campaign"], r["custom_args"]["step"]) for r in requests}
    assert steps == {("spring-guide", "guide"), ("new-lead-nurture", "welcome")}
    assert "skipped at send time: capped" in first.stdout  # the cap across campaigns, reported
    store = open_store(open_workspace(workspace_dir).database_url)
    with store.connect() as conn:  # the sample import is the command line's change, audited as its user
        imported = [(e["actor_kind"], e["actor"], e["detail"]["file"]) for e in entries(conn, action="audience.")]
    store.dispose()
    assert imported == [("cli", cli_actor().name, "sample.csv")]
    second = cli(workspace_dir, "demo")
    assert second.code == 0, second.stdout + second.stderr
    assert "nothing new was sent" in second.stdout
    assert len(list(read_outbox(workspace_dir / "outbox"))) == len(requests)


def test_demo_with_events_posts_through_the_signed_webhook_and_reports(
    workspace_dir: Path, cli: Callable[..., Result]
) -> None:
    result = cli(workspace_dir, "demo", "--with-events")
    assert result.code == 0, result.stdout + result.stderr
    # what the demo set in the environment while it ran (quiet hours off, its webhook key) is gone after it:
    # it runs in the caller's process, whose later work must see the clinic's own settings
    assert "NEEDLECAST_QUIET_HOURS" not in os.environ and "SENDGRID_WEBHOOK_PUBLIC_KEY" not in os.environ
    assert "6. Events and report" in result.stdout and "events posted" in result.stdout
    assert "send report" in result.stdout and "health spring-guide" in result.stdout
    posted = re.search(r"(\d+) simulated bookings posted to the API, (\d+) new", result.stdout)
    assert posted and int(posted.group(1)) > 0 and posted.group(1) == posted.group(2)
    credited = re.search(r"bookings: (\d+), credited by last click (\d+), by last delivered (\d+)", result.stdout)
    assert credited and int(credited.group(1)) == int(posted.group(1))
    assert int(credited.group(2)) > 0 and int(credited.group(3)) > 0  # both rules at work
    again = cli(workspace_dir, "demo", "--with-events")
    assert ", 0 new (the rest were already stored)" in again.stdout  # stored once per event id
    assert f"{posted.group(1)} simulated bookings posted to the API, 0 new" in again.stdout
    store = open_store(f"sqlite:///{workspace_dir / '.needlecast' / 'needlecast.db'}")
    with store.connect() as conn:
        latest = conn.execute(select(func.max(events.c.occurred_at))).scalar_one()
    assert latest <= datetime.now(UTC)  # the demo's simulated events are never dated in the future


def test_plan_lists_every_planned_email_without_sending(
    workspace_dir: Path, tmp_path: Path, cli: Callable[..., Result]
) -> None:
    assert cli(workspace_dir, "audience", "import", str(workspace_dir / "audiences" / "sample.csv")).code == 0
    out = tmp_path / "plan.csv"
    result = cli(workspace_dir, "plan", "--days", "400", "--csv", str(out))
    assert result.code == 0, result.stderr
    assert "excluded: no marketing consent: 22" in result.stdout
    rows = list(csv.DictReader(out.open()))
    broadcast = [r for r in rows if r["campaign_id"] == "spring-guide"]
    assert len(broadcast) == 257 and {r["arm"] for r in broadcast} == {"A", "B"}
    assert {r["variant"] for r in broadcast} == {"acne", "ageing", "pigmentation", "general"}
    assert not (workspace_dir / "outbox").exists()  # nothing sent


def test_scheduler_py_is_the_scheduler_command() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scheduler.py"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Run the scheduler" in result.stdout
