"""The console over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL: permissions per route,
CSRF, sessions, the log-in throttle, and every change in the audit log."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select, update

from needlecast.accounts.audit import entries
from needlecast.accounts.roles import ROLE_ACTIONS, ROLES
from needlecast.actions import audience as audience_actions
from needlecast.audience.contacts import get_contact
from needlecast.audience.events import store_events, validate_event
from needlecast.campaign.send.runner import Runner
from needlecast.campaign.send.state import find_state
from needlecast.delivery import backend_factory
from needlecast.delivery.outbox import read_outbox
from needlecast.store.delivery import delivery_store
from needlecast.store.schema import contacts, deliveries, sessions
from tests.console_site import (
    SEEDS,
    ConsoleSite,
    assert_anonymous_refused,
    assert_roles_refused,
    csrf_of,
    email_of,
    site,
    stripping_proxy,
)
from tests.waiting import wait_until

# Pages, forms, permissions and their answers: on SQLite only (conftest's rule).
pytestmark = pytest.mark.database_independent


@pytest.fixture()
def console(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, store_url) as running:
        yield running


# (method, path, the action it needs); {contact} is filled in with a real contact's id
ROUTES = [
    ("GET", "/console/", "campaigns.view"),
    ("GET", "/console/campaigns/spring-guide", "campaigns.view"),
    ("GET", "/console/campaigns/spring-guide/preview", "campaigns.view"),
    ("GET", "/console/campaigns/spring-guide/preview.html", "campaigns.view"),
    ("GET", "/console/journeys/new-lead-nurture", "campaigns.view"),
    ("GET", "/console/journeys/new-lead-nurture/nodes/welcome", "contacts.view"),
    ("GET", "/console/campaigns/new", "campaigns.edit"),
    ("POST", "/console/campaigns/new", "campaigns.edit"),
    ("GET", "/console/campaigns/spring-guide/edit", "campaigns.edit"),
    ("POST", "/console/campaigns/spring-guide/edit", "campaigns.edit"),
    ("GET", "/console/campaigns/spring-guide/confirm/pause", "campaigns.schedule"),
    ("POST", "/console/campaigns/spring-guide/schedule", "campaigns.schedule"),
    ("POST", "/console/campaigns/spring-guide/pause", "campaigns.schedule"),
    ("POST", "/console/campaigns/spring-guide/test-send", "campaigns.test_send"),
    ("POST", "/console/campaigns/spring-guide/signoff", "signoff.record"),
    ("GET", "/console/templates", "templates.edit"),
    ("GET", "/console/templates/emails/welcome", "templates.edit"),
    ("POST", "/console/templates/emails/welcome", "templates.edit"),
    ("GET", "/console/audiences", "audiences.view"),
    ("POST", "/console/audiences/import", "audiences.import"),
    ("GET", "/console/contacts", "contacts.view"),
    ("POST", "/console/contacts", "contacts.view"),
    ("POST", "/console/contacts/bulk/tag", "contacts.tag"),
    ("POST", "/console/contacts/bulk/suppress", "contacts.suppress"),
    ("POST", "/console/contacts/bulk/export", "contacts.view"),
    ("GET", "/console/contacts/{contact}", "contacts.view"),
    ("POST", "/console/contacts/{contact}/suppress", "contacts.suppress"),
    ("POST", "/console/contacts/{contact}/erase", "contacts.erase"),
    ("GET", "/console/reports", "reports.view"),
    ("GET", "/console/reports/spring-guide", "reports.view"),
    ("GET", "/console/reports/spring-guide/report.csv", "reports.view"),
    ("GET", "/console/content", "content.view"),
    ("POST", "/console/content/microneedling/safe-for-all-skin-types/tags", "content.tag"),
    ("GET", "/console/users", "users.manage"),
    ("POST", "/console/users", "users.manage"),
    ("POST", "/console/users/1/role", "users.manage"),
    ("GET", "/console/audit", "audit.view"),
]


def _path(console: ConsoleSite, path: str) -> str:
    if "{contact}" in path:
        with console.engine.connect() as conn:
            path = path.replace("{contact}", str(get_contact(conn, "quinn.1@example.org")["id"]))
    return path


def test_every_console_route_refuses_anonymous_requests_and_roles_without_its_action(console: ConsoleSite) -> None:
    routes = [(method, _path(console, raw), action) for method, raw, action in ROUTES]
    assert_anonymous_refused(console, routes, {})
    assert_roles_refused(console, routes, {})


def test_every_console_page_opens_for_every_role_that_may_see_it(console: ConsoleSite) -> None:
    for role in ROLES:
        client = console.login(role)
        for method, raw, action in ROUTES:
            if method == "GET" and action in ROLE_ACTIONS[role]:
                response = client.get(_path(console, raw))
                assert response.status_code == 200, (role, raw, response.text[:300])


def test_a_post_without_the_sessions_csrf_token_or_from_another_site_is_refused(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/").text)
    assert marketer.post("/console/campaigns/spring-guide/schedule", data={}).status_code == 403
    assert marketer.post("/console/campaigns/spring-guide/schedule", data={"csrf": "forged"}).status_code == 403
    cross = marketer.post(
        "/console/campaigns/spring-guide/schedule", data={"csrf": token}, headers={"Origin": "https://evil.example.net"}
    )
    assert cross.status_code == 403
    with console.engine.connect() as conn:
        assert not [e for e in entries(conn) if e["action"] == "campaign.scheduled"]
    ok = marketer.post("/console/campaigns/spring-guide/schedule", data={"csrf": token})
    assert ok.status_code == 303


def test_the_session_cookie_is_http_only_same_site_and_dies_at_log_out_and_when_idle(console: ConsoleSite) -> None:
    client = console.client()
    page = client.get("/console/login")
    done = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "email": email_of("analyst"), "password": "a long enough test password"},
    )
    cookie = next(v for k, v in done.headers.multi_items() if k == "set-cookie" and "needlecast_session" in v)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Secure" not in cookie
    session_id = client.cookies.get("needlecast_session")
    with console.engine.connect() as conn:
        stored = [row.id_hash for row in conn.execute(select(sessions.c.id_hash))]
    assert session_id not in stored and len(stored[0]) == 64  # only a hash of the id is stored
    assert client.get("/console/").status_code == 200
    with console.engine.begin() as conn:  # an hour and a minute without a request
        seen = conn.execute(select(sessions.c.last_seen_at)).scalar_one()
        conn.execute(update(sessions).values(last_seen_at=seen - timedelta(minutes=61)))
    assert client.get("/console/").status_code == 303
    again = console.login("analyst")
    token = csrf_of(again.get("/console/").text)
    assert again.post("/console/logout", data={"csrf": token}).status_code == 303
    assert again.get("/console/").status_code == 303


def test_repeated_failed_log_ins_are_refused_for_a_while_with_429(console: ConsoleSite) -> None:
    client = console.client()
    for attempt in range(11):
        page = client.get("/console/login")
        response = client.post(
            "/console/login",
            data={"csrf": csrf_of(page.text), "email": email_of("admin"), "password": f"wrong password {attempt}"},
        )
        if attempt < 10:
            assert response.status_code == 401 and "do not match an active account" in response.text
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
    assert "Too many failed log-ins from this network" in response.text
    page = client.get("/console/login")  # the right password is refused too, from this address, for now
    right = client.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "email": email_of("admin"), "password": "a long enough test password"},
    )
    assert right.status_code == 429


def test_a_campaign_form_error_names_the_field_beside_it_and_writes_nothing(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    form = marketer.get("/console/campaigns/new")
    data = {
        "csrf": csrf_of(form.text),
        "id": "autumn",
        "name": "Autumn",
        "kind": "broadcast",
        "segment": "all-leads",
        "time_zone": "Europe/London",
        "schedule_mode": "send_at",
        "send_at": "2030-10-01T09:00",
        "steps-0-id": "guide",
        "steps-0-template": "emails/broadcast",
        "steps-0-ab_subjects": "One\nTwo",
        "steps-0-ab_split": "60, 30",
    }
    refused = marketer.post("/console/campaigns/new", data=data)
    assert refused.status_code == 422
    assert 'id="error-steps-0-ab_split"' in refused.text and "adding up to 100" in refused.text
    assert not (console.workspace.campaigns_dir / "autumn.yaml").exists()
    saved = marketer.post("/console/campaigns/new", data={**data, "steps-0-ab_split": "50, 50"})
    assert saved.status_code == 303
    written = yaml.safe_load((console.workspace.campaigns_dir / "autumn.yaml").read_text())
    assert written["steps"][0]["ab"] == {"subjects": ["One", "Two"], "split": [50, 50]}
    assert written["schedule"] == {"send_at": "2030-10-01 09:00"}


def test_the_campaign_form_chooses_articles_and_library_wide_sections_and_keeps_them_on_edit(
    console: ConsoleSite,
) -> None:
    (console.workspace.content_dir / "peels.md").write_text(
        "# Chemical peels\n\n## What is a peel?\nAn exfoliating treatment.\n\n## Benefits\n\n"
        "### Fades dark spots\nLightens melasma and dark spots over weeks.\n"
    )
    marketer = console.login("marketer")
    form = marketer.get("/console/campaigns/new")
    assert '<option value="peels">peels</option>' in form.text
    data = {
        "csrf": csrf_of(form.text),
        "id": "peel-news",
        "kind": "broadcast",
        "segment": "all-leads",
        "time_zone": "Europe/London",
        "article": "peels",
        "schedule_mode": "send_at",
        "send_at": "2030-10-01T09:00",
        "steps-0-id": "guide",
        "steps-0-template": "emails/broadcast",
        "steps-1-id": "roundup",
        "steps-1-template": "emails/concern_guide",
        "steps-1-library": "1",
        "steps-2-id": "bad",
        "steps-2-template": "emails/broadcast",
        "steps-2-article": "peeling",
    }
    refused = marketer.post("/console/campaigns/new", data=data)
    assert refused.status_code == 422 and 'id="error-steps-2-article"' in refused.text
    del data["steps-2-id"], data["steps-2-template"], data["steps-2-article"]
    assert marketer.post("/console/campaigns/new", data=data).status_code == 303
    path = console.workspace.campaigns_dir / "peel-news.yaml"
    written = yaml.safe_load(path.read_text())
    assert written["article"] == "peels" and written["steps"][1]["sections"] == {"concern": "auto", "from": "all"}
    edit = marketer.get("/console/campaigns/peel-news/edit")
    assert '<option value="peels" selected>peels</option>' in edit.text
    assert 'id="steps-1-library" name="steps-1-library" value="1" checked' in edit.text
    preview = marketer.get("/console/campaigns/peel-news/preview", params={"step": "guide", "variant": "pigmentation"})
    assert preview.status_code == 200, preview.text
    assert "FADES DARK SPOTS" in preview.text, preview.text[preview.text.find("<main") :][:3000]


def test_saving_the_form_keeps_a_winner_test_and_send_time_optimisation_set_in_the_file(console: ConsoleSite) -> None:
    path = console.workspace.campaigns_dir / "spring-guide.yaml"
    text = path.read_text().replace(
        "      split: [50, 50]\n", "      split: [50, 50]\n      test_fraction: 0.2\n      decide_after: 4h\n"
    )
    path.write_text(text.replace('  date: "2027-03-02"\n', '  date: "2027-03-02"\n  optimise: true\n  holdout: 0.2\n'))
    marketer = console.login("marketer")
    form = marketer.get("/console/campaigns/spring-guide/edit")
    data = {
        "csrf": csrf_of(form.text),
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
        "steps-0-ab_subjects": "First\nSecond",
        "steps-0-ab_split": "50, 50",
    }
    saved = marketer.post("/console/campaigns/spring-guide/edit", data=data)
    assert saved.status_code == 303, saved.text
    written = yaml.safe_load(path.read_text())
    assert written["steps"][0]["ab"] == {
        "subjects": ["First", "Second"],
        "split": [50, 50],
        "test_fraction": 0.2,
        "decide_after": "4h",
    }
    assert written["schedule"] == {"local_time": "09:00", "date": "2027-03-02", "optimise": True, "holdout": 0.2}


def test_a_test_send_reaches_the_seed_addresses_only_and_never_the_ledger(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/campaigns/spring-guide").text)
    done = marketer.post("/console/campaigns/spring-guide/test-send", data={"csrf": token, "step": "guide"})
    assert done.status_code == 303 and "Test+sent" in done.headers["location"]
    requests = [e["request"] for e in read_outbox(console.workspace.outbox_dir)]
    assert len(requests) == 8  # four variants, two arms
    assert {p["to"][0]["email"] for r in requests for p in r["personalizations"]} == set(SEEDS)
    assert all(r["subject"].startswith("[TEST ") for r in requests)
    with console.engine.connect() as conn:
        assert sum(delivery_store(conn).counts(conn, "spring-guide").values()) == 0


def test_a_reviewers_sign_off_is_written_into_the_file_and_goes_stale_when_a_template_changes(
    console: ConsoleSite,
) -> None:
    path = console.workspace.campaigns_dir / "spring-guide.yaml"
    path.write_text(path.read_text()[: path.read_text().index("signoff:")])
    reviewer = console.login("reviewer")
    page = reviewer.get("/console/campaigns/spring-guide")
    assert 'id="no-signoff"' in page.text and "claim-universality" in page.text
    done = reviewer.post(
        "/console/campaigns/spring-guide/signoff",
        data={"csrf": csrf_of(page.text), "note": "Safety wording accepted for the pilot"},
    )
    assert done.status_code == 303
    signoff = yaml.safe_load(path.read_text())["signoff"]
    assert signoff["reviewer"] == email_of("reviewer") and signoff["note"] == "Safety wording accepted for the pilot"
    assert "templates/emails/broadcast.html" in signoff["covers"]
    assert 'id="stale"' not in reviewer.get("/console/campaigns/spring-guide").text
    template = console.workspace.templates_dir / "emails" / "broadcast.html"
    template.write_text(template.read_text() + "\n{# edited after the review #}\n")
    stale = reviewer.get("/console/campaigns/spring-guide")
    assert 'id="stale"' in stale.text and "templates/emails/broadcast.html" in stale.text


def test_an_analyst_sees_contacts_masked_and_a_marketer_in_full(console: ConsoleSite) -> None:
    with console.engine.connect() as conn:
        contact_id = get_contact(conn, "quinn.1@example.org")["id"]
    analyst = console.login("analyst").get(f"/console/contacts/{contact_id}")
    assert "quinn.1@example.org" not in analyst.text and "q***@e***.org" in analyst.text
    marketer = console.login("marketer").get(f"/console/contacts/{contact_id}")
    assert "quinn.1@example.org" in marketer.text


def test_a_contact_is_found_by_an_address_posted_never_one_in_the_url(console: ConsoleSite) -> None:
    with console.engine.connect() as conn:
        contact_id = get_contact(conn, "quinn.1@example.org")["id"]
    analyst = console.login("analyst")
    token = csrf_of(analyst.get("/console/contacts").text)
    found = analyst.post("/console/contacts", data={"csrf": token, "email": "Quinn.1@example.org"})
    assert found.status_code == 303 and found.headers["location"].endswith(f"/console/contacts/{contact_id}")
    missing = analyst.post("/console/contacts", data={"csrf": token, "email": "nobody@example.org"})
    assert missing.status_code == 200 and "No contact has that address" in missing.text
    ignored = analyst.get("/console/contacts", params={"email": "quinn.1@example.org"})
    assert ignored.status_code == 200 and "No contact has that address" not in ignored.text


def test_every_change_from_the_console_is_in_the_audit_log(console: ConsoleSite) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/").text)
    with console.engine.connect() as conn:
        contact_id = get_contact(conn, "quinn.1@example.org")["id"]
    steps = [
        ("/console/campaigns/spring-guide/schedule", {}),
        ("/console/campaigns/spring-guide/pause", {}),
        ("/console/campaigns/spring-guide/resume", {}),
        ("/console/campaigns/spring-guide/signoff", {"note": "ok"}),
        (f"/console/contacts/{contact_id}/suppress", {}),
        (
            "/console/users",
            {"email": "new.person@clinic.example", "role": "analyst", "password": "another long password"},
        ),
        ("/console/campaigns/spring-guide/cancel", {}),
        (f"/console/contacts/{contact_id}/erase", {}),
    ]
    for path, data in steps:
        assert admin.post(path, data={"csrf": token, **data}).status_code == 303, path
    upload = admin.post(
        "/console/audiences/import",
        data={"csrf": token},
        files={"file": ("few.csv", b"Email,Marketing consent\nx1@example.com,yes\n", "text/csv")},
    )
    assert upload.status_code == 303
    job = upload.headers["location"].rsplit("/", 1)[1]
    # The counts table is shown once the job has finished (its audit entry written); "rows read" shows at once.
    wait_until(lambda: 'id="import-counts"' in admin.get(f"/console/imports/{job}").text, 60, "the import to finish")
    with console.engine.connect() as conn:
        actions = [(e["actor_kind"], e["actor"], e["action"], e["target"]) for e in entries(conn)]
    done = {action for _kind, _who, action, _target in actions}
    assert {
        "campaign.scheduled",
        "campaign.paused",
        "campaign.resumed",
        "campaign.signoff",
        "contact.suppressed",
        "user.added",
        "campaign.cancelled",
        "contact.erased",
        "audience.imported",
    } <= done
    assert all(
        kind == "user" and who == email_of("admin")
        for kind, who, action, _ in actions
        if action != "user.added" or who == email_of("admin")
    )
    assert not any("quinn" in target for *_rest, target in actions)  # contacts by id, never by address
    page = admin.get("/console/audit")
    assert all(action in page.text for action in done)


def test_an_upload_is_imported_in_the_background_and_its_rejects_can_be_downloaded(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/audiences").text)
    messy = (console.workspace.audiences_dir / "sample.csv").read_bytes()
    upload = marketer.post(
        "/console/audiences/import",
        data={"csrf": token, "list": "spring"},
        files={"file": ("messy leads.csv", messy, "text/csv")},
    )
    assert upload.status_code == 303
    job_url = upload.headers["location"].removeprefix(console.url)
    wait_until(lambda: 'id="import-counts"' in marketer.get(job_url).text, 60, "the import to finish")
    page = marketer.get(job_url)
    counts = [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', page.text)]
    assert counts[0] == 300 and counts[0] == sum(counts[1:])
    rejects = marketer.get(job_url + "/rejects.csv")
    assert rejects.status_code == 200 and rejects.text.startswith("line,reason,")
    analyst = console.login("analyst")
    assert analyst.get(job_url + "/rejects.csv").status_code == 403  # rejects hold addresses


def test_a_running_import_is_followed_through_its_json_status_without_a_refresh(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real = audience_actions.import_audience

    def held(*args: Any, progress: Any = None, **kwargs: Any) -> Any:
        progress("reading", 120, 300)
        assert gate.wait(120), "the test to let the import go on"
        return real(*args, progress=progress, **kwargs)

    monkeypatch.setattr(audience_actions, "import_audience", held)
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/audiences").text)
    sample = (console.workspace.audiences_dir / "sample.csv").read_bytes()
    try:
        upload = marketer.post(
            "/console/audiences/import", data={"csrf": token}, files={"file": ("leads.csv", sample, "text/csv")}
        )
        job_url = upload.headers["location"].removeprefix(console.url)
        wait_until(lambda: marketer.get(job_url + "/status").json()["read"] == 120, 60, "the import to report")
        running = marketer.get(job_url)
        assert 'data-state="running"' in running.text and 'http-equiv="refresh"' not in running.text
        assert '<script src="/console/static/import-progress.js" defer></script>' in running.text
        assert "script-src 'self'" in running.headers["content-security-policy"]
        status = marketer.get(job_url + "/status")
        assert status.headers["cache-control"] == "no-store"
        assert status.json() == {
            "state": "running",
            "stage": "reading",
            "stage_text": "Reading and checking the rows",
            "read": 120,
            "total": 300,
            "percent": 40,
            "rows_text": "120 of about 300 rows read",
        }
        script = marketer.get("/console/static/import-progress.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    finally:
        gate.set()
    wait_until(lambda: marketer.get(job_url + "/status").json()["state"] == "done", 60, "the import to finish")
    assert marketer.get(job_url + "/status").json()["rows_text"] == "300 rows read"
    done = marketer.get(job_url).text
    assert 'data-state="done"' in done and 'id="import-counts"' in done and "<script" not in done
    analyst = console.login("analyst")
    assert analyst.get(job_url + "/status").json()["state"] == "done"  # a reader may follow it too
    assert console.client().get(job_url + "/status").status_code == 303  # nobody else


def test_a_failed_import_names_the_file_as_uploaded_never_the_servers_copy(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/audiences").text)
    upload = marketer.post(
        "/console/audiences/import",
        data={"csrf": token},
        files={"file": ("spring leads.csv", b"Name,Phone\nAna,123\n", "text/csv")},
    )
    job_url = upload.headers["location"].removeprefix(console.url)
    wait_until(lambda: marketer.get(job_url + "/status").json()["state"] != "running", 60, "the import to end")
    assert marketer.get(job_url + "/status").json()["stage_text"] == "The import failed: nothing was changed"
    page = marketer.get(job_url).text
    assert 'data-state="failed"' in page and "spring leads.csv: no email column" in page
    assert str(console.workspace.state_dir) not in page and "uploads" not in page


def test_send_now_runs_outside_the_request_and_the_page_shows_the_ledger_moving(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    confirm = marketer.get("/console/campaigns/spring-guide/confirm/send-now")
    assert re.search(r"This sends \d+ email\(s\) to \d+ person\(s\) now", confirm.text)
    console.senders.finished.clear()
    done = marketer.post("/console/campaigns/spring-guide/send-now", data={"csrf": csrf_of(confirm.text)})
    assert done.status_code == 303
    assert console.senders.finished.wait(120)
    with console.engine.connect() as conn:
        sent = delivery_store(conn).counts(conn, "spring-guide")["sent"]
    assert sent > 0
    page = marketer.get("/console/campaigns/spring-guide")
    assert f'<td class="num" data-key="sent">{sent}</td>' in page.text


def test_the_report_dashboard_and_its_html_report_show_the_bookings_an_email_earned(console: ConsoleSite) -> None:
    Runner(console.workspace, console.engine, backend_factory(console.workspace)).run_broadcast(
        "spring-guide", send_now=True
    )
    with console.engine.connect() as conn:
        rows = conn.execute(
            select(contacts.c.email, deliveries.c.sent_at)
            .join(contacts, contacts.c.id == deliveries.c.contact_id)
            .where(deliveries.c.status == "sent")
            .order_by(deliveries.c.id)
            .limit(5)
        ).all()
    bookings = [
        validate_event(
            {
                "id": f"bk-{n}",
                "email": email,
                "type": "booked",
                "occurred_at": (sent_at.replace(tzinfo=UTC) + timedelta(days=1)).isoformat(),
                "value": 180,
                "currency": "GBP",
            },
            n,
        )
        for n, (email, sent_at) in enumerate(rows)
    ]
    with console.engine.begin() as conn:
        store_events(conn, bookings, "test", rows[0][1])  # type: ignore[arg-type]
    analyst = console.login("analyst")
    dashboard = analyst.get("/console/reports/spring-guide")
    assert dashboard.status_code == 200
    head = re.search(r'<table id="table-totals"><thead><tr>(.*?)</tr>', dashboard.text, re.S)
    assert head and "Conversions" in head.group(1) and "Value (GBP)" in head.group(1)
    cells = dict(
        zip(
            re.findall(r'<th scope="col">([^<]+)</th>', head.group(1)),
            re.findall(r"<td>([^<]*)</td>", dashboard.text.split('id="table-totals"', 1)[1]),
            strict=False,
        )
    )
    assert cells["Conversions"] == "5" and cells["Value (GBP)"] == "900"
    html = analyst.get("/console/reports/spring-guide/report.html")
    assert "Conversions" in html.text and "Credited by" in html.text


def test_metrics_exist_only_with_a_token_and_answer_only_a_scrape_that_sends_it(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = console.client()
    assert client.get("/metrics").status_code == 404
    monkeypatch.setenv("NEEDLECAST_METRICS_TOKEN", "scrape-token-123")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    Runner(console.workspace, console.engine, backend_factory(console.workspace)).run_broadcast(
        "spring-guide", send_now=True
    )
    scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
    assert scraped.status_code == 200
    with console.engine.connect() as conn:
        sent = delivery_store(conn).counts(conn, "spring-guide")["sent"]
    assert f'needlecast_emails{{campaign="spring-guide",status="sent"}} {float(sent)}' in scraped.text
    assert "@" not in scraped.text  # campaign ids and states only


def test_a_campaign_the_claims_gate_blocks_cannot_be_scheduled_or_sent_from_the_console(console: ConsoleSite) -> None:
    path = console.workspace.campaigns_dir / "spring-guide.yaml"
    path.write_text(path.read_text()[: path.read_text().index("signoff:")])
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/campaigns/spring-guide").text)
    for action in ("schedule", "send-now"):
        refused = marketer.post(f"/console/campaigns/spring-guide/{action}", data={"csrf": token})
        assert refused.status_code == 303 and "kind=bad" in refused.headers["location"]
        assert "claim-" in refused.headers["location"] or "lint" in refused.headers["location"]
    with console.engine.connect() as conn:
        assert (
            find_state(conn, "spring-guide") is None
            and sum(delivery_store(conn).counts(conn, "spring-guide").values()) == 0
        )


def test_the_template_editor_shows_a_syntax_error_or_an_undefined_name_with_its_line_and_saves_nothing(
    console: ConsoleSite,
) -> None:
    marketer = console.login("marketer")
    page = marketer.get("/console/templates/emails/welcome")
    path = console.workspace.templates_dir / "emails" / "welcome.html"
    before = path.read_text()
    lines = before.splitlines()
    broken = "\n".join([*lines[:3], "{% if first_name %}unclosed", *lines[3:]])
    undefined = before.replace("{{ first_name }}", "{{ frist_name }}", 1)
    text = (console.workspace.templates_dir / "emails" / "welcome.txt").read_text()
    for html, words in ((broken, "endblock"), (undefined, "frist_name")):
        answer = marketer.post(
            "/console/templates/emails/welcome",
            data={"csrf": csrf_of(page.text), "html": html, "text": text, "variant": "acne", "do": "save"},
        )
        assert answer.status_code == 422
        error = re.search(r'id="template-error">([^<]+)<', answer.text)
        assert error and words in error.group(1) and re.search(r"emails/welcome\.html:\d+", error.group(1)), error
        assert path.read_text() == before
    preview = marketer.post(
        "/console/templates/emails/welcome",
        data={"csrf": csrf_of(page.text), "html": before + "\n<p>Extra line</p>", "text": text, "variant": "acne"},
    )
    assert preview.status_code == 200 and "Extra line" in preview.text and path.read_text() == before


def test_a_broken_campaign_file_shows_its_error_beside_the_campaigns_that_load(console: ConsoleSite) -> None:
    (console.workspace.campaigns_dir / "typo.yaml").write_text("id: typo\nkind: broadcast\nsegmnt: all-leads\n")
    page = console.login("analyst").get("/console/campaigns")
    assert page.status_code == 200
    assert 'id="row-spring-guide"' in page.text and 'id="row-new-lead-nurture"' in page.text
    assert "typo.yaml" in page.text and "segmnt" in page.text


def test_the_console_works_behind_a_proxy_path_prefix(
    workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'prefixed.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    with site(workspace_dir, url, root_path="/nc") as app, stripping_proxy(app.url, "/nc") as public:
        origin = public.removesuffix("/nc")
        behind = dataclasses.replace(app, url=public, clients=[])  # every request goes through the proxy
        assert behind.client().get("/console/").headers["location"].startswith("/nc/console/login")
        marketer = behind.login("marketer")  # the session cookie's path is /nc/console: only sent via the proxy
        home = marketer.get("/console/campaigns")  # the campaign list (the home page is /console/)
        assert home.status_code == 200
        assert 'href="/nc/console/campaigns/spring-guide"' in home.text
        assert 'href="/nc/console/static/console.css"' in home.text
        assert httpx.get(f"{origin}/nc/console/static/console.css").status_code == 200
        token = csrf_of(home.text)
        paused = marketer.post("/console/campaigns/spring-guide/pause", data={"csrf": token})
        assert paused.status_code == 303
        assert paused.headers["location"].startswith("/nc/console/campaigns/spring-guide")
        for client in behind.clients:
            client.close()
