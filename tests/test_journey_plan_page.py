"""The console's campaign page shows a sequence's plan as the journey engine's forecast: emails expected per
day and step, in the clinic's zone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.console_site import ConsoleSite, sqlite_site


@pytest.fixture()
def console(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    with sqlite_site(workspace_dir, tmp_path, monkeypatch, quiet_hours_off=False) as running:
        yield running


def test_a_sequences_campaign_page_shows_the_expected_emails_per_day_and_step(console: ConsoleSite) -> None:
    before = datetime.now(UTC).astimezone(ZoneInfo("Europe/London")).date()
    page = console.login("marketer").get("/console/campaigns/new-lead-nurture").text
    after = datetime.now(UTC).astimezone(ZoneInfo("Europe/London")).date()
    table = page[page.index('id="plan-forecast"') : page.index("</table>", page.index('id="plan-forecast"'))]
    rows = re.findall(r"<tr><td>([\d-]+)</td><td>([\w-]+)</td><td class=\"num\">(\d+)</td></tr>", table)
    steps = [step for _, step, _ in rows]
    assert steps[:1] == ["welcome"] and set(steps) == {"welcome", "deep-dive", "consultation"}
    assert rows[0][0] in {str(before), str(after)}  # the people it would enrol now: welcome today
    assert len({count for _, _, count in rows}) == 1 and int(rows[0][2]) > 0  # the same people walk each step
    assert "would enrol" in page.lower()
