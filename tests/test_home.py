"""The console's home (`readmodels.home`, `/console/`): the last 30 days' figures against counts made by hand
from a fixed ledger, the campaigns needing attention, the calendar's week and month with a new sender's
warm-up days, the first run's checklist, and the page in a browser at desktop and phone width."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import Engine, insert, select, update

from needlecast.accounts.roles import cli_actor
from needlecast.actions import campaigns as campaign_actions
from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.importer import import_file
from needlecast.audience.sources import source_group, source_words
from needlecast.config import Workspace, open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import InvalidRequest
from needlecast.readmodels import home
from needlecast.readmodels.plans import plan_preview
from needlecast.scaffold import init_workspace
from needlecast.store.schema import campaign_state, consent_events, contacts, deliveries, events
from tests.browser import accessibility_problems, axe_script, chromium_path, save_doc_screenshot, screenshot
from tests.console_site import ConsoleSite, email_of, site
from tests.test_compare import LEDGER
from tests.test_report_figures import store

pytestmark = pytest.mark.database_independent

WARMUP = '\n[deliverability]\nwarmup = {start = "2027-03-02", first_day = 30, growth = 1.5, hours = 3}\n'
BEFORE_THE_SEND = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)  # a Monday; spring-guide sends on 2 March 2027


def test_the_last_30_days_are_the_reports_figures_counted_by_hand(engine: Engine, workspace: Workspace) -> None:
    store(engine, LEDGER, set(), random.Random(0))
    # Today 7 April 2026: the period is 9 March to 7 April (emails 2, 3, 4), the one before 7 Feb to 8 March
    # (emails 0, 1); email 5 is still queued and counts nowhere.
    period = home.last_30_days(engine, workspace, date(2026, 4, 7))
    assert (period.start, period.end) == (date(2026, 3, 9), date(2026, 4, 7))
    assert (period.previous_start, period.previous_end) == (date(2026, 2, 7), date(2026, 3, 8))
    shown = {f.key: (f.value, f.previous) for f in period.figures}
    assert shown["sent"] == (3, 2)
    assert shown["delivery_rate"] == pytest.approx((2 / 3, 2 / 2))  # email 3 bounced
    assert shown["opened_rate"] == pytest.approx((1 / 2, 1 / 2))  # of delivered: email 2; before, email 0
    assert shown["clicked_rate"] == pytest.approx((0 / 2, 1 / 2))  # before: email 0's click
    assert shown["conversion_rate"] == pytest.approx((1 / 2, 1 / 2))  # email 4's booking; before, email 0's
    changes = {f.key: f.change for f in period.figures}
    assert changes["sent"] == 1 and changes["clicked_rate"] == pytest.approx(-0.5)
    assert changes["delivery_rate"] == pytest.approx(-1 / 3)
    assert period.delivered == 2
    empty = home.last_30_days(engine, workspace, date(2030, 1, 1))
    assert {f.key: f.value for f in empty.figures} == {
        "sent": 0,
        "delivery_rate": None,
        "opened_rate": None,
        "clicked_rate": None,
        "conversion_rate": None,
    }


@pytest.fixture()
def scheduled(workspace_dir: Path, engine: Engine) -> Workspace:
    """The demo clinic with a new sender warming up from 2 March 2027 and spring-guide scheduled."""
    config = workspace_dir / "needlecast.toml"
    config.write_text(config.read_text() + WARMUP)
    workspace = open_workspace(workspace_dir)
    import_file(engine, workspace_dir / "audiences" / "sample.csv", load_vocabulary_for(workspace))
    with mock.patch.object(campaign_actions, "utcnow", lambda: BEFORE_THE_SEND):
        campaign_actions.schedule(engine, workspace, cli_actor(), "spring-guide")
    return workspace


def test_the_calendar_shows_a_broadcasts_warm_up_days_in_week_and_month(engine: Engine, scheduled: Workspace) -> None:
    week = home.calendar(engine, scheduled, "week", None, BEFORE_THE_SEND)
    assert (week.start, week.end, week.title) == (date(2027, 3, 1), date(2027, 3, 7), "Week of 1 March 2027")
    assert [len(w) for w in week.weeks] == [7] and week.weeks[0][0].today
    planned = plan_preview(engine, scheduled, "spring-guide", 7, now=BEFORE_THE_SEND).campaigns[0]
    by_day: dict[str, int] = {}
    for row in planned.emails:
        by_day[row["day"]] = by_day.get(row["day"], 0) + int(row["recipients"])  # UTC days = London's in March
    sends = {d.day.isoformat(): e.emails for d in week.weeks[0] for e in d.entries if e.kind == "broadcast"}
    assert sends == by_day and len(sends) >= 3  # the warm-up spreads the one broadcast over several days
    assert week.planned == planned.total
    caps = {d.day.isoformat(): e.emails for d in week.weeks[0] for e in d.entries if e.kind == "warmup"}
    # first_day 30, growth 1.5: 30, 45, 68 (rounded), ...; only on warm-up days (from 2 March) with emails.
    assert caps["2027-03-02"] == 30 and caps["2027-03-03"] == 45 and caps["2027-03-04"] == 68
    assert "2027-03-01" not in caps and set(caps) <= set(sends)
    assert all(sends[day] <= cap for day, cap in caps.items())
    first = next(e for d in week.weeks[0] for e in d.entries if d.day == date(2027, 3, 2) and e.kind == "broadcast")
    assert first.campaign_id == "spring-guide" and first.at == datetime(2027, 3, 2, 9, 0, tzinfo=UTC)

    month = home.calendar(engine, scheduled, "month", date(2027, 3, 20), BEFORE_THE_SEND)
    assert month.title == "March 2027" and (month.start, month.end) == (date(2027, 3, 1), date(2027, 4, 4))
    assert [len(w) for w in month.weeks] == [7] * 5
    assert [d.in_range for d in month.weeks[-1]] == [True] * 3 + [False] * 4  # 29-31 March, then April
    assert month.planned == week.planned  # the whole send falls in its first week
    assert (month.previous, month.following) == (date(2027, 2, 28), date(2027, 4, 1))
    past = home.calendar(engine, scheduled, "week", date(2027, 2, 1), BEFORE_THE_SEND)
    assert past.planned == 0 and all(not d.entries for w in past.weeks for d in w)
    with pytest.raises(InvalidRequest, match="view"):
        home.calendar(engine, scheduled, "year", None, BEFORE_THE_SEND)


def _attention_store(engine: Engine, workspace: Workspace) -> None:
    """spring-guide: a bounce in 2 emails (health) and paused by the guard; new-lead-nurture: a failed and an
    unknown email and a sign-off a template change made stale; a draft untouched for 8 days, one of today."""
    store(engine, LEDGER, set(), random.Random(0))
    with engine.begin() as conn:
        for old, new in (("autumn", "spring-guide"), ("spring", "new-lead-nurture")):
            conn.execute(update(deliveries).where(deliveries.c.campaign_id == old).values(campaign_id=new))
            conn.execute(update(events).where(events.c.campaign_id == old).values(campaign_id=new))
        for contact, status in ((1, "failed"), (2, "unknown")):
            moment = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
            conn.execute(
                insert(deliveries).values(
                    campaign_id="new-lead-nurture",
                    step_id="welcome",
                    contact_id=contact,
                    segment="everyone",
                    variant="general",
                    arm="",
                    status=status,
                    due_at=moment,
                    claim_token="",
                    message_id="",
                    error="",
                    attempts=1,
                    created_at=moment,
                    updated_at=moment,
                    outcome="",
                    timing="",
                    request_id="",
                )
            )
        conn.execute(
            insert(campaign_state).values(
                campaign_id="spring-guide",
                status="paused",
                started_at=datetime(2026, 3, 2, tzinfo=UTC),
                digest="",
                consecutive_failures=0,
                note="Paused by itself: bounces over the limit",
                updated_at=datetime(2026, 3, 2, tzinfo=UTC),
                guard_threshold="bounce_rate",
                guard_figures="{}",
            )
        )
    campaign_actions.record_signoff(engine, workspace, cli_actor(), "new-lead-nurture", "read it all")
    welcome = workspace.templates_dir / "emails" / "welcome.html"
    welcome.write_text(welcome.read_text() + "\n<!-- a change after the sign-off -->\n")
    spring = (workspace.campaigns_dir / "spring-guide.yaml").read_text()
    for name, age in (("old-draft", 8), ("new-draft", 0)):
        path = workspace.campaigns_dir / f"{name}.yaml"
        path.write_text(spring.replace("id: spring-guide", f"id: {name}") + "draft: true\n")
        moment = time.time() - age * 86400
        os.utime(path, (moment, moment))


def test_the_web_apps_calendar_is_planned_once_and_again_when_a_campaign_changes(
    engine: Engine, scheduled: Workspace
) -> None:
    frames = FrameCache(engine)
    with mock.patch.object(home, "build_plans", wraps=home.build_plans) as planner:
        first = home.calendar(engine, scheduled, "week", None, BEFORE_THE_SEND, frames=frames)
        assert planner.call_count == 1  # only the live campaign (spring-guide) is planned
        again = home.calendar(engine, scheduled, "week", None, BEFORE_THE_SEND, frames=frames)
        assert again == first and planner.call_count == 1  # kept: the audience and the campaigns are unchanged
        campaign_actions.set_campaign_status(engine, scheduled, cli_actor(), "spring-guide", "paused")
        paused = home.calendar(engine, scheduled, "week", None, BEFORE_THE_SEND, frames=frames)
    assert first.planned > 0 and paused.planned == 0  # the change is shown at once, not a minute later
    assert planner.call_count == 1  # a paused campaign is not planned at all


def test_the_campaigns_needing_attention_say_why(engine: Engine, workspace: Workspace) -> None:
    _attention_store(engine, workspace)
    (workspace.campaigns_dir / "typo.yaml").write_text("id: typo\nkind: broadcast\nsegmnt: all-leads\n")
    found = {a.campaign_id: a for a in home.attention(engine, workspace, datetime.now(UTC))}
    assert set(found) == {"spring-guide", "new-lead-nurture", "old-draft", "typo"}  # not new-draft
    spring = " | ".join(found["spring-guide"].reasons)
    assert "health: bounces over 2 %" in spring and "paused itself" in spring
    nurture = " | ".join(found["new-lead-nurture"].reasons)
    assert "1 email(s) failed" in nurture and "1 email(s) may or may not have reached" in nurture
    assert "sign-off predates a change to 1 file(s)" in nurture and "paused itself" not in nurture
    assert found["old-draft"].reasons == ["a draft nobody changed for 8 days"]
    broken = next(a for a in found.values() if not a.linkable)
    assert broken.reasons == ["its file has a mistake, so it cannot send"] and broken.name == "typo.yaml"


def test_the_audience_growth_counts_new_leads_by_source_and_unsubscribes_per_week(
    engine: Engine, workspace: Workspace
) -> None:
    import_file(engine, workspace.root / "audiences" / "sample.csv", load_vocabulary_for(workspace))
    today = datetime.now(UTC).date()
    grown = home.growth(engine, workspace, today)
    assert len(grown.weeks) == 8 and grown.weeks[-1] == today - timedelta(days=today.weekday())
    imported = sum(grown.total(w) for w in grown.weeks)
    assert imported > 0 and sum(grown.unsubscribed.values()) == 0


def test_lead_sources_are_said_in_the_clinics_words() -> None:
    said = source_group
    assert said("import:sample.csv") == "Imported from sample.csv"
    assert said("signup:3f2a") == said("form:default") == "Website signup form"
    assert said("api") == said("api:tests") == said("api (tests)") == "Added through the API"
    assert said("unknown") == said("") == "Source not recorded"
    assert said("phone call") == "Phone call"  # an API client's own words, as written
    # with its detail, as a contact's page and the contact list say it
    assert source_words("form:spring") == "Signup form “spring”" and source_words("unknown") == "Source not recorded"
    assert source_words("api:crm sync") == "Added through the API (crm sync)"


def test_the_growth_table_counts_each_source_in_words_by_week_in_sql(engine: Engine, workspace: Workspace) -> None:
    import_file(engine, workspace.root / "audiences" / "sample.csv", load_vocabulary_for(workspace))
    today = datetime.now(UTC).date()
    with engine.begin() as conn:
        ids = list(conn.execute(select(contacts.c.id).order_by(contacts.c.id)).scalars())
        conn.execute(update(contacts).values(signed_up_at=datetime.now(UTC) - timedelta(minutes=1)))  # this week
        # an older consent of another source recorded for the first contact: its first consent decides
        conn.execute(
            insert(consent_events).values(
                contact_id=ids[0],
                purpose="marketing",
                action="granted",
                source="form:default",
                recorded_at=datetime.now(UTC) - timedelta(days=400),
            )
        )
    grown = home.growth(engine, workspace, today)
    this_week = grown.leads[grown.weeks[-1]]
    with engine.connect() as conn:
        consented = set(conn.execute(select(consent_events.c.contact_id)).scalars())
    unrecorded = len(set(ids) - consented)  # the sample's rows without a consent: no source to show
    assert unrecorded > 0 and ids[0] in consented
    expected = {"Imported from sample.csv": len(ids) - unrecorded - 1, "Website signup form": 1}
    assert this_week == {**expected, "Source not recorded": unrecorded}
    assert grown.sources == ["Imported from sample.csv", "Source not recorded", "Website signup form"]


@pytest.fixture()
def console(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    url = f"sqlite:///{tmp_path / 'home.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, url, settings=WARMUP) as running:
        for campaign in ("new-lead-nurture", "spring-guide"):
            campaign_actions.schedule(running.engine, running.workspace, cli_actor(), campaign)
        yield running


def test_the_home_page_shows_the_dashboard_with_links_and_switches_the_calendar(console: ConsoleSite) -> None:
    (console.workspace.campaigns_dir / "typo.yaml").write_text("id: typo\nkind: broadcast\nsegmnt: all-leads\n")
    marketer = console.login("marketer")
    page = marketer.get("/console/")
    assert page.status_code == 200 and 'id="figures"' in page.text and 'id="checklist"' not in page.text
    attention = page.text[page.text.index('<ul class="attention"') :]
    assert 'id="attention-typo"' in attention and "typo.yaml" in attention and "cannot send" in attention
    today = home.clinic_today(console.workspace)
    start = today - timedelta(days=29)
    assert f'href="/console/reports?from={start.isoformat()}&amp;to={today.isoformat()}"' in page.text
    assert 'id="calendar"' in page.text and 'class="calendar week"' in page.text
    assert 'href="/console/campaigns/new-lead-nurture"' in page.text  # its expected daily emails
    month = marketer.get("/console/?view=month")
    assert 'class="calendar month"' in month.text
    assert marketer.get("/console/?view=year").status_code == 400
    assert marketer.get("/console/?at=tomorrow").status_code == 400
    assert 'id="row-spring-guide"' in marketer.get("/console/campaigns").text
    growth = page.text[page.text.index("New leads per week by source") :]
    assert "Imported from sample.csv" in growth and "import:" not in growth


def test_a_first_run_shows_the_checklist_with_a_link_for_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "new-clinic"
    init_workspace(root)
    url = f"sqlite:///{tmp_path / 'first.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    with site(root, url, import_sample=False) as running:
        page = running.login("admin").get("/console/").text
    assert 'id="checklist"' in page and 'id="figures"' not in page
    steps = re.findall(r'<li class="step ?([a-z]*)" id="step-([a-z]+)">', page)
    assert [key for _, key in steps] == ["clinic", "sender", "leads", "campaign", "review", "schedule"]
    assert all(done == "" for done, _ in steps[:3])  # nothing set yet
    for path in ("/console/audiences", "/console/campaigns/new"):
        assert f'href="{path}"' in page
    for words in ("needlecast.toml", "--", "needlecast init", "Traceback"):
        assert words not in page[page.index("<main") :]


@pytest.mark.skipif(chromium_path() is None or axe_script() is None, reason="needs Chromium and axe-core")
@pytest.mark.parametrize("width", [1280, 390])
def test_the_home_page_in_a_browser_at_desktop_and_phone_width(browser: Any, console: ConsoleSite, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{console.url}/console/")
    page.get_by_label("Email address").fill(email_of("marketer"))
    page.get_by_label("Password").fill("a long enough test password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r".*/console/$"))
    for view in ("week", "month", "week&at=2027-03-01"):
        page.goto(f"{console.url}/console/?view={view}")
        assert accessibility_problems(page) == [], view
        scroll = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert scroll <= 0, f"the page scrolls sideways by {scroll}px at {width}px"
        main = page.locator("main").inner_text()
        for words in (str(console.workspace.root), "needlecast ", "--", "Traceback", "UTC"):
            assert words not in main, words
        screenshot(page, f"console-home-{view.replace('&at=', '-')}-{width}")
        if width == 1280 and view == "week":
            save_doc_screenshot(page, "home")
    assert "Warm-up: up to 30 emails" in main and "Spring skin guide" in main and "09:00 GMT" in main
    page.get_by_role("link", name="Open rate").click()
    page.wait_for_url(re.compile(r".*/reports\?from=.*"))
    context.close()


@pytest.mark.skipif(chromium_path() is None or axe_script() is None, reason="needs Chromium and axe-core")
def test_the_first_run_checklist_in_a_browser(browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "new-clinic"
    init_workspace(root)
    url = f"sqlite:///{tmp_path / 'first.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    with site(root, url, import_sample=False) as running:
        for width in (1280, 390):
            context = browser.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            page.goto(f"{running.url}/console/")
            page.get_by_label("Email address").fill(email_of("admin"))
            page.get_by_label("Password").fill("a long enough test password")
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url(re.compile(r".*/console/$"))
            assert accessibility_problems(page) == []
            main = page.locator("main").inner_text()
            assert "Import or connect your leads" in main and str(root) not in main and "--" not in main
            screenshot(page, f"console-home-first-run-{width}")
            if width == 1280:
                save_doc_screenshot(page, "first-run")
            page.get_by_role("link", name="Import or connect your leads").click()
            page.wait_for_url(re.compile(r".*/audiences$"))
            context.close()
