"""What a send will do and what it did, said in the clinic's words (issue 25, items 1 and 12): the
confirmation counts after every rule, the campaign page and `campaign status` show skipped emails by reason,
the "sending" banner ends with the send, and the console's campaign form saves drafts that only Schedule makes
live. Over real HTTP on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from needlecast.accounts.audit import entries
from needlecast.campaign.definition.model import BROADCAST, Campaign
from needlecast.campaign.outcome import reach_of
from needlecast.campaign.plan.rules import DEFERRED_QUIET, EXCLUDED_CAPPED, PLAN_COLUMNS, Plan
from needlecast.campaign.send.runner import Runner
from needlecast.config import open_workspace
from needlecast.delivery import backend_factory
from needlecast.delivery.outbox import read_outbox
from needlecast.schedule import desired_jobs, run_scheduler_in_background
from needlecast.store.delivery import delivery_store
from tests.cli_runner import run
from tests.console_site import ConsoleSite, csrf_of, site

CAPPED_WORDS = "had another email from the clinic within 24 hours"
FOR_GOOD = "skips them for good"


@pytest.fixture()
def console(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, store_url) as running:
        yield running


def _second_broadcast(console: ConsoleSite) -> str:
    """A signed-off broadcast to the same segment as spring-guide, once spring-guide has gone to everyone:
    the frequency cap (one email a day) holds back every member. Returns its id."""
    Runner(console.workspace, console.engine, backend_factory(console.workspace)).send("spring-guide", send_now=True)
    source = (console.workspace.campaigns_dir / "spring-guide.yaml").read_text()
    text = source.replace("id: spring-guide", "id: autumn-news").replace('date: "2027-03-02"', 'date: "2030-10-01"')
    (console.workspace.campaigns_dir / "autumn-news.yaml").write_text(text)
    return "autumn-news"


def test_a_send_now_that_the_frequency_cap_holds_back_says_so_before_during_and_after(console: ConsoleSite) -> None:
    campaign_id = _second_broadcast(console)
    with console.engine.connect() as conn:
        members = delivery_store(conn).counts(conn, "spring-guide")["sent"]
    assert members > 0
    marketer = console.login("marketer")

    confirm = marketer.get(f"/console/campaigns/{campaign_id}/confirm/send-now")
    reach = re.search(r'<p class="notice" id="reach">(.*?)</p>', confirm.text, re.DOTALL)
    assert reach, confirm.text
    said = reach.group(1)
    assert said.startswith("This sends 0 email(s) to 0 person(s) now.")  # after the cap, not the segment's size
    assert f"Not sent: {members} had another email from the clinic too recently" in said and FOR_GOOD in said
    assert "have not agreed to marketing email" in said  # consent, counted and named too

    console.senders.finished.clear()
    done = marketer.post(f"/console/campaigns/{campaign_id}/send-now", data={"csrf": csrf_of(confirm.text)})
    assert done.status_code == 303
    assert "flash=" not in done.headers["location"] and "send=started" in done.headers["location"]
    assert console.senders.finished.wait(120), "the send to end"

    page = marketer.get(done.headers["location"].removeprefix(console.url))
    banner = re.search(r'id="send-banner">(.*?)</p>', page.text, re.DOTALL)
    assert banner, page.text
    assert "The send has ended" in banner.group(1) and "0 sent" in banner.group(1)
    assert f"{members} not sent: {members} {CAPPED_WORDS}" in banner.group(1)
    assert "send-progress.js" not in page.text  # the page stops following the send when it ends
    skipped = re.search(r'<ul id="skipped"[^>]*>(.*?)</ul>', page.text, re.DOTALL)
    assert skipped and f"<strong>{members}</strong> {CAPPED_WORDS}" in skipped.group(1)
    plan = page.text[page.text.index('id="plan"') :]
    assert "already have this email" not in plan  # the cap held them back: they never had it
    assert f"{members} were held back by the frequency cap when it was sent" in plan and FOR_GOOD in plan

    listing = marketer.get("/console/campaigns")
    heads = re.findall(r'<th scope="col"[^>]*>([^<]+)</th>', listing.text)
    row = re.search(rf'<tr id="row-{campaign_id}"[^>]*>(.*?)</tr>', listing.text, re.DOTALL)
    assert row, listing.text
    cells = re.findall(r'<td class="num"[^>]*>(\d+)</td>', row.group(1))
    numeric = heads[-len(cells) :]
    assert dict(zip(numeric, cells, strict=True))["Skipped"] == str(members)


def test_the_sending_banner_shows_while_the_send_runs_and_the_page_follows_it_until_it_ends(
    console: ConsoleSite,
) -> None:
    marketer = console.login("marketer")
    page = marketer.get("/console/campaigns/spring-guide")
    with console.senders._lock:  # a send of this process, running: what `send_now` records until it ends
        console.senders._busy.add("spring-guide")
    running = marketer.get("/console/campaigns/spring-guide", params={"send": "started"})
    assert "Sending now." in running.text and "send-progress.js" in running.text
    assert 'http-equiv="refresh"' not in running.text  # a script follows the send, not a reload loop
    status = marketer.get("/console/campaigns/spring-guide/status").json()
    assert status["sending"] is True and "sent" in status["counts"]
    with console.senders._lock:
        console.senders._busy.discard("spring-guide")
    ended = marketer.get("/console/campaigns/spring-guide", params={"send": "started"})
    assert "The send has ended" in ended.text and "send-progress.js" not in ended.text
    assert marketer.get("/console/campaigns/spring-guide/status").json()["sending"] is False
    assert 'id="send-banner"' not in page.text  # no send asked for, none running: no banner


def test_with_the_scheduler_in_the_web_app_the_banner_lasts_until_its_send_now_job_ends(
    workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    scheduler, stop = run_scheduler_in_background(open_workspace(workspace_dir))  # as `needlecast serve`
    try:
        with site(workspace_dir, store_url, scheduler=scheduler) as console:
            marketer = console.login("marketer")
            confirm = marketer.get("/console/campaigns/spring-guide/confirm/send-now")
            scheduler.pause()  # the job waits in the scheduler: the send has not ended
            done = marketer.post("/console/campaigns/spring-guide/send-now", data={"csrf": csrf_of(confirm.text)})
            assert done.status_code == 303
            page = done.headers["location"].removeprefix(console.url)
            waiting = marketer.get(page)
            assert "Sending now." in waiting.text and "send-progress.js" in waiting.text
            console.senders.finished.clear()
            scheduler.resume()
            assert console.senders.finished.wait(120), "the scheduler's send-now job to end"
            with console.engine.connect() as conn:
                sent = delivery_store(conn).counts(conn, "spring-guide")["sent"]
            ended = marketer.get(page)
            assert sent > 0 and f"The send has ended.</strong> {sent} sent" in ended.text
            assert "send-progress.js" not in ended.text
    finally:
        stop()


def test_campaign_status_and_plan_say_what_the_cap_did_and_does(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = _second_broadcast(console)
    Runner(console.workspace, console.engine, backend_factory(console.workspace)).send(campaign_id, send_now=True)
    with console.engine.connect() as conn:
        skipped = delivery_store(conn).counts(conn, campaign_id)["skipped"]
    assert skipped > 0
    url = str(console.engine.url.render_as_string(hide_password=False))
    root = console.workspace.root
    status = run(monkeypatch, root, "campaign", "status", campaign_id, NEEDLECAST_DATABASE_URL=url)
    assert status.code == 0, status.stderr
    text = " ".join(status.stdout.split())
    assert "skipped emails by reason" in text and CAPPED_WORDS in text and FOR_GOOD in text
    assert f"{skipped} not sent" in text
    planned = run(monkeypatch, root, "plan", campaign_id, NEEDLECAST_DATABASE_URL=url, NEEDLECAST_QUIET_HOURS="off")
    said = " ".join(planned.stdout.split())
    assert "already has this email" not in said and "already have this email" not in said
    assert f"{skipped} were held back by the frequency cap when it was sent" in said
    assert "does not send it later" in said


def test_the_confirmation_names_the_emails_quiet_hours_move_later() -> None:
    now = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)
    morning = pd.Timestamp("2026-12-07 08:00", tz="UTC")
    emails = pd.DataFrame(
        [[1, "", "c", "s", "all", "general", "", morning, "Europe/London", "queued", "", ""]], columns=PLAN_COLUMNS
    )
    plan = Plan(
        Campaign(id="c", name="c", kind=BROADCAST, segment="all", time_zone="Europe/London", steps=(), path=Path()),
        emails,
        excluded=Counter({EXCLUDED_CAPPED: 2}),
        deferred=Counter({DEFERRED_QUIET: 1}),
    )
    said = reach_of(plan, now, send_now=True).sentence("Europe/London", send_now=True)
    assert said.startswith("This sends 0 email(s) to 0 person(s) now.")
    assert "Later, from 2026-12-07 08:00 (Europe/London): 1 fall in quiet hours" in said
    assert "Not sent: 2 had another email from the clinic too recently" in said


def _form(console: ConsoleSite, client: object, path: str, **changes: str) -> dict[str, str]:
    page = client.get(path)  # type: ignore[attr-defined]
    data = {
        "csrf": csrf_of(page.text),
        "id": "spring-guide",
        "name": "Spring skin guide",
        "kind": "broadcast",
        "segment": "all-leads",
        "time_zone": "Europe/London",
        "schedule_mode": "local",
        "local_time": "09:00",
        "date": "2027-03-02",
        "steps-0-id": "guide",
        "steps-0-template": "emails/broadcast",
    }
    return {**data, **changes}


def test_the_campaign_form_refuses_a_broadcast_dated_in_the_past_beside_its_field(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    path = console.workspace.campaigns_dir / "spring-guide.yaml"
    before = path.read_text()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    refused = marketer.post(
        "/console/campaigns/spring-guide/edit",
        data=_form(console, marketer, "/console/campaigns/spring-guide/edit", date=yesterday),
    )
    assert refused.status_code == 422
    error = re.search(r'id="error-date" role="alert">(.*?)</p>', refused.text, re.DOTALL)
    assert error and "has already passed" in error.group(1) and "choose a moment in the future" in error.group(1)
    assert "needlecast send" not in refused.text  # no command on a page
    assert path.read_text() == before
    moment = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    new = marketer.post(
        "/console/campaigns/new",
        data=_form(console, marketer, "/console/campaigns/new", id="late", schedule_mode="send_at", send_at=moment),
    )
    assert new.status_code == 422 and 'id="error-send_at"' in new.text
    assert not (console.workspace.campaigns_dir / "late.yaml").exists()


def test_a_campaign_saved_in_the_form_stays_a_draft_until_schedule_is_pressed(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    saved = marketer.post(
        "/console/campaigns/spring-guide/edit", data=_form(console, marketer, "/console/campaigns/spring-guide/edit")
    )
    assert saved.status_code == 303, saved.text
    written = yaml.safe_load((console.workspace.campaigns_dir / "spring-guide.yaml").read_text())
    assert written["draft"] is True and written["signoff"]  # signed off, and still a draft

    def jobs() -> list[str]:
        with console.engine.begin() as conn:
            specs, _broken = desired_jobs(open_workspace(console.workspace.root), conn, datetime.now(UTC))
        return [spec.id for spec in specs if spec.id.startswith("broadcast:spring-guide:")]

    assert jobs() == []  # the scheduler's next re-read (within a minute) gives it no job
    page = marketer.get(saved.headers["location"].removeprefix(console.url))
    assert '<span class="badge draft" id="state">draft</span>' in page.text
    assert "as a draft: nothing is sent until you press Schedule" in page.text
    assert re.search(r'href="[^"]*/campaigns/spring-guide/confirm/schedule"', page.text)  # Schedule is offered
    with console.engine.connect() as conn:
        assert not [e for e in entries(conn) if e["action"] == "campaign.scheduled"]

    confirm = marketer.get("/console/campaigns/spring-guide/confirm/schedule")
    assert "This is a draft: it becomes live now." in confirm.text
    done = marketer.post("/console/campaigns/spring-guide/schedule", data={"csrf": csrf_of(confirm.text)})
    assert done.status_code == 303 and "Scheduled" in done.headers["location"]
    assert "draft" not in yaml.safe_load((console.workspace.campaigns_dir / "spring-guide.yaml").read_text())
    assert jobs() != []
    with console.engine.connect() as conn:
        scheduled = [e for e in entries(conn) if e["action"] == "campaign.scheduled"]
    assert len(scheduled) == 1 and scheduled[0]["target"] == "campaign:spring-guide"


def test_schedule_refuses_a_draft_whose_moment_has_passed_and_leaves_it_a_draft(console: ConsoleSite) -> None:
    path = console.workspace.campaigns_dir / "spring-guide.yaml"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    path.write_text(
        path.read_text().replace("kind: broadcast", "kind: broadcast\ndraft: true").replace("2027-03-02", yesterday)
    )
    marketer = console.login("marketer")
    confirm = marketer.get("/console/campaigns/spring-guide/confirm/schedule")
    refused = marketer.post("/console/campaigns/spring-guide/schedule", data={"csrf": csrf_of(confirm.text)})
    page = marketer.get(refused.headers["location"].removeprefix(console.url))
    flash = re.search(r'<p class="notice bad" role="status">(.*?)</p>', page.text, re.DOTALL)
    assert flash and "has already passed" in flash.group(1) and "choose a later moment" in flash.group(1)
    assert "needlecast send" not in flash.group(1)  # the page's fix, not a command
    assert yaml.safe_load(path.read_text())["draft"] is True
    with console.engine.connect() as conn:
        assert not [e for e in entries(conn) if e["action"] == "campaign.scheduled"]


def test_test_recipients_edited_in_the_settings_are_used_without_a_restart(console: ConsoleSite) -> None:
    config = console.workspace.root / "needlecast.toml"
    config.write_text(config.read_text().replace("qa.seed@clinic.example", "new.seed@clinic.example"))
    marketer = console.login("marketer")
    page = marketer.get("/console/campaigns/spring-guide")
    assert "new.seed@clinic.example" in page.text and "qa.seed@clinic.example" not in page.text
    done = marketer.post(
        "/console/campaigns/spring-guide/test-send", data={"csrf": csrf_of(page.text), "step": "guide"}
    )
    assert done.status_code == 303 and "Test+sent" in done.headers["location"]
    sent_to = {
        p["to"][0]["email"] for e in read_outbox(console.workspace.outbox_dir) for p in e["request"]["personalizations"]
    }
    assert sent_to == {"new.seed@clinic.example"}


def test_the_resume_confirmation_counts_the_queued_emails_the_sender_would_now_refuse(console: ConsoleSite) -> None:
    """Queued emails of a paused campaign whose person unsubscribed meanwhile are said before resuming."""
    from sqlalchemy import select

    from needlecast.audience.suppression import suppress
    from needlecast.store.schema import contacts, deliveries

    Runner(console.workspace, console.engine, backend_factory(console.workspace)).send("spring-guide")
    with console.engine.connect() as conn:
        queued = delivery_store(conn).counts(conn, "spring-guide")["queued"]  # its date is ahead: all wait
        address = conn.execute(
            select(contacts.c.email).join(deliveries, deliveries.c.contact_id == contacts.c.id).limit(1)
        ).scalar_one()
    assert queued > 1
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/campaigns/spring-guide").text)
    assert marketer.post("/console/campaigns/spring-guide/pause", data={"csrf": token}).status_code == 303
    asked = marketer.get("/console/campaigns/spring-guide/confirm/resume").text
    assert f"Resuming sends the {queued} queued email(s) as they fall due." in asked and "Not sent" not in asked
    with console.engine.begin() as conn:
        suppress(conn, address, "unsubscribed")
    asked = marketer.get("/console/campaigns/spring-guide/confirm/resume").text
    assert f"Resuming sends the {queued - 1} queued email(s) as they fall due. Not sent: 1 unsubscribed." in asked
    with console.engine.connect() as conn:
        assert delivery_store(conn).counts(conn, "spring-guide")["queued"] == queued  # asking changes nothing
