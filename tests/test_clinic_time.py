"""Pages show times on the clinic's clock (`[clinic] time_zone`), with the zone's name, never bare UTC."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from needlecast.web.common import clinic_clock
from tests.console_site import ConsoleSite, site


def test_an_instant_is_shown_on_the_clinics_clock_across_the_clock_change() -> None:
    london = clinic_clock("Europe/London")
    assert london(datetime(2027, 1, 15, 9, 0, tzinfo=UTC)) == "15 Jan 2027, 09:00 GMT"
    assert london(datetime(2027, 7, 15, 9, 0, tzinfo=UTC)) == "15 Jul 2027, 10:00 BST"
    assert london(datetime(2027, 7, 15, 9, 0)) == "15 Jul 2027, 10:00 BST"  # naive: UTC as the store keeps it
    assert london(datetime(2027, 7, 15, 23, 30, tzinfo=UTC), with_time=False) == "16 Jul 2027"
    assert clinic_clock("Asia/Kolkata")(datetime(2027, 1, 15, 9, 0, tzinfo=UTC)) == "15 Jan 2027, 14:30 IST"
    assert london(None) == "–"


@pytest.fixture()
def console(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    url = f"sqlite:///{tmp_path / 'console.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    config = workspace_dir / "needlecast.toml"
    config.write_text(config.read_text().replace('time_zone = "Europe/London"', 'time_zone = "America/New_York"', 1))
    with site(workspace_dir, url) as running:
        yield running


def test_campaign_pages_show_the_next_send_on_the_clinics_clock(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    for path in ("/console/", "/console/campaigns", "/console/audit", "/console/audiences"):
        page = marketer.get(path).text
        main = page[page.index("<main") :]
        assert "UTC" not in main, path
    campaign = marketer.get("/console/campaigns/spring-guide").text
    assert re.search(r"Next send: <strong>\d{1,2} \w{3} \d{4}, \d\d:\d\d E[SD]T</strong>", campaign), campaign[:3000]
