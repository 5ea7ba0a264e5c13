"""The console's settings over real HTTP (issue 28 item 5): every settings, key and account-link route refuses
anonymous requests, roles without its permission and forms without the session's CSRF token, on the server;
a change is written to needlecast.toml (comments and other settings kept), audited, and in force in the running
app at its next request without a restart; a refused change names the field in words and writes nothing;
invitations and password resets are one-time links; an API key is shown once and dies when revoked."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from needlecast.accounts.audit import entries
from needlecast.accounts.roles import ROLES
from needlecast.config import ConsoleSettings, open_workspace
from needlecast.config.writing import write_settings
from needlecast.errors import ConfigurationError
from tests.console_site import ConsoleSite, assert_anonymous_refused, assert_roles_refused, csrf_of, email_of, site

pytestmark = pytest.mark.database_independent

# (method, path, the action it needs)
ROUTES = [
    ("GET", "/console/settings", "settings.edit"),
    ("POST", "/console/settings/clinic", "settings.edit"),
    ("POST", "/console/settings/sender", "settings.edit"),
    ("POST", "/console/settings/consent", "settings.edit"),
    ("POST", "/console/settings/sending", "settings.edit"),
    ("POST", "/console/settings/tests", "settings.edit"),
    ("POST", "/console/settings/logo", "settings.edit"),
    ("GET", "/console/settings/logo", "settings.edit"),
    ("GET", "/console/settings/keys", "apikeys.manage"),
    ("POST", "/console/settings/keys", "apikeys.manage"),
    ("POST", "/console/settings/keys/1/revoke", "apikeys.manage"),
    ("POST", "/console/users/invite", "users.manage"),
    ("POST", "/console/users/1/reset-link", "users.manage"),
]
CLINIC = {
    "name": "Glow Skin Clinic",
    "postal_address": "2 Mill Lane, Bath BA1 1AA",
    "website": "https://glow.example",
    "booking_url": "https://glow.example/book",
    "time_zone": "Europe/London",
}


@pytest.fixture()
def console(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, store_url) as running:
        yield running


def _config(console: ConsoleSite) -> str:
    return (console.workspace.root / "needlecast.toml").read_text()


def _actions(console: ConsoleSite) -> list[tuple[str, str, str]]:
    with console.engine.connect() as conn:
        return [(e["actor"], e["action"], e["target"]) for e in entries(conn)]


def test_every_settings_route_refuses_anonymous_requests_and_roles_without_its_action(console: ConsoleSite) -> None:
    before = _config(console)
    assert_anonymous_refused(console, ROUTES, CLINIC)
    assert_roles_refused(console, ROUTES, CLINIC)
    assert _config(console) == before
    assert not [a for a in _actions(console) if a[1].startswith(("settings.", "apikey.", "user.reset"))]


def test_only_an_admin_sees_the_settings_link_and_the_pages(console: ConsoleSite) -> None:
    for role in ROLES:
        home = console.login(role).get("/console/")
        assert ('href="/console/settings"' in home.text) == (role == "admin"), role
    admin = console.login("admin")
    for path in ("/console/settings", "/console/settings/keys", "/console/users"):
        assert admin.get(path).status_code == 200, path


def test_a_settings_form_without_the_sessions_csrf_token_or_from_another_site_is_refused(console: ConsoleSite) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/settings").text)
    before = _config(console)
    assert admin.post("/console/settings/clinic", data=CLINIC).status_code == 403
    assert admin.post("/console/settings/clinic", data={"csrf": "forged", **CLINIC}).status_code == 403
    cross = admin.post(
        "/console/settings/clinic", data={"csrf": token, **CLINIC}, headers={"Origin": "https://evil.example.net"}
    )
    assert cross.status_code == 403
    assert admin.post("/console/settings/keys", data={"name": "x", "scopes": "contacts:read"}).status_code == 403
    assert _config(console) == before
    assert admin.post("/console/settings/clinic", data={"csrf": token, **CLINIC}).status_code == 303


def test_the_clinics_details_are_written_keeping_the_file_and_are_in_force_at_the_next_request(
    console: ConsoleSite,
) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/settings").text)
    preview = admin.get("/console/campaigns/spring-guide/preview")
    assert "Lumen Skin Clinic" in preview.text and "Glow Skin Clinic" not in preview.text
    saved = admin.post("/console/settings/clinic", data={"csrf": token, **CLINIC})
    assert saved.status_code == 303 and saved.headers["location"].endswith("#clinic")
    text = _config(console)
    assert text.startswith("# The workspace's settings.")  # the file's own comments are kept
    assert '"outbox" writes what would be sent' in text
    written = tomllib.loads(text)
    assert written["clinic"]["name"] == "Glow Skin Clinic"
    assert written["clinic"]["sender_email"] == "care@lumen-clinic.example.com"  # untouched keys stay
    assert written["console"]["test_recipients"] == ["qa.seed@clinic.example"]
    # The running app (started before the change) shows the new name at once: no restart.
    preview = admin.get("/console/campaigns/spring-guide/preview")
    assert "Glow Skin Clinic" in preview.text and "Lumen Skin Clinic" not in preview.text
    assert "Glow Skin Clinic" in admin.get("/subscribe").text
    assert ("user:" + email_of("admin"), "settings.changed", "settings:clinic") in [
        ("user:" + a, b, c) for a, b, c in _actions(console)
    ]
    again = admin.post("/console/settings/clinic", data={"csrf": token, **CLINIC})
    assert "changed=no" in again.headers["location"]
    assert "Saved: nothing had changed." in admin.get(again.headers["location"]).text


def test_a_refused_change_names_each_field_in_words_and_writes_nothing(console: ConsoleSite) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/settings").text)
    before = _config(console)
    bad = admin.post(
        "/console/settings/sender",
        data={"csrf": token, "sender_name": "Glow", "sender_email": "not an address", "reply_to": ""},
    )
    assert bad.status_code == 400
    assert re.search(r'id="error-sender_email"[^>]*>[^<]*is not an email address', bad.text)
    assert 'value="not an address"' in bad.text  # what was typed stays in the field
    limits = admin.post(
        "/console/settings/sending",
        data={"csrf": token, "quiet_from": "21:00", "quiet_to": "", "max_per_day": "-1", "max_per_week": "3"},
    )
    assert limits.status_code == 400
    assert re.search(r'id="error-quiet_to"[^>]*>give both times, or neither', limits.text)
    assert re.search(r'id="error-max_per_day"[^>]*>enter a whole number', limits.text)
    consent = admin.post(
        "/console/settings/consent",
        data={
            "csrf": token,
            "marketing_wording": "Yes, send me the clinic's news.",
            "marketing_wording_version": "marketing-v1",
            "concern_wording": open_workspace(console.workspace.root).settings.signup.concern_wording,
            "concern_wording_version": "concern-v1",
        },
    )
    assert consent.status_code == 400 and "give it a new version" in consent.text
    for page in (bad.text, limits.text, consent.text):
        assert str(console.workspace.root) not in page and "needlecast.toml" not in page
    assert _config(console) == before
    assert not [a for a in _actions(console) if a[1] == "settings.changed"]


def test_the_clinics_time_zone_is_chosen_from_a_list_and_every_page_follows_it_without_a_restart(
    console: ConsoleSite,
) -> None:
    admin = console.login("admin")
    page = admin.get("/console/settings").text
    assert '<option value="Europe/London" selected>Europe/London</option>' in page
    assert '<option value="America/New_York">America/New York</option>' in page
    token = csrf_of(page)
    refused = admin.post("/console/settings/clinic", data={"csrf": token, **CLINIC, "time_zone": "Mars/Olympus"})
    assert refused.status_code == 400
    assert re.search(r'id="error-time_zone"[^>]*>choose the clinic&#39;s time zone from the list', refused.text)
    saved = admin.post("/console/settings/clinic", data={"csrf": token, **CLINIC, "time_zone": "America/New_York"})
    assert saved.status_code == 303
    assert tomllib.loads(_config(console))["clinic"]["time_zone"] == "America/New_York"
    # The audit log's times are on the new clock at once (the running app was started on London's).
    audit_page = admin.get("/console/audit").text
    assert re.search(r"\d{2}:\d{2} E[SD]T</td>", audit_page) and not re.search(r"\d{2}:\d{2} GMT</td>", audit_page)


def test_sending_limits_consent_and_test_recipients_are_saved_and_read_back(console: ConsoleSite) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/settings").text)
    posts = {
        "sending": {"quiet_from": "20:30", "quiet_to": "07:45", "max_per_day": "2", "max_per_week": "5"},
        "consent": {
            "marketing_wording": "Yes, email me the clinic's news.",
            "marketing_wording_version": "marketing-v2",
            "concern_wording": "Yes, use my skin concerns to choose what you send me.",
            "concern_wording_version": "concern-v2",
        },
        "tests": {"test_recipients": "ana@clinic.example\nben@clinic.example"},
    }
    for group, data in posts.items():
        assert admin.post(f"/console/settings/{group}", data={"csrf": token, **data}).status_code == 303, group
    settings = console.workspace.settings  # the running app's own workspace follows the file
    assert settings.schedule.max_per_day == 2 and settings.schedule.max_per_week == 5
    assert settings.signup.marketing_wording_version == "marketing-v2"
    assert settings.console.test_recipients == ("ana@clinic.example", "ben@clinic.example")
    written = tomllib.loads(_config(console))
    assert written["schedule"]["quiet_hours"] == "20:30-07:45"
    page = admin.get("/console/settings").text
    assert 'value="20:30"' in page and 'value="marketing-v2"' in page and "ben@clinic.example" in page
    assert "Yes, use my skin concerns to choose what you send me." in admin.get("/subscribe").text
    off = admin.post(
        "/console/settings/sending",
        data={"csrf": token, "quiet_from": "", "quiet_to": "", "max_per_day": "0", "max_per_week": "0"},
    )
    assert off.status_code == 303 and tomllib.loads(_config(console))["schedule"]["quiet_hours"] == "off"


def test_a_logo_upload_is_stored_served_on_the_tracking_host_and_linked_from_the_settings(console: ConsoleSite) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/settings").text)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    refused = admin.post(
        "/console/settings/logo", data={"csrf": token}, files={"logo": ("logo.svg", b"<svg/>", "image/svg+xml")}
    )
    assert refused.status_code == 400 and "choose a PNG, JPEG or GIF image" in refused.text
    saved = admin.post("/console/settings/logo", data={"csrf": token}, files={"logo": ("logo.png", png, "image/png")})
    assert saved.status_code == 303
    url = console.workspace.settings.clinic.logo_url
    name = url.rsplit("/", 1)[1]
    assert url.startswith(console.workspace.settings.tracking.public_base_url) and "/images/logo-" in url
    served = console.client().get(f"/images/{name}")
    assert served.status_code == 200 and served.content == png and served.headers["content-type"] == "image/png"
    assert console.client().get("/images/..%2Fneedlecast.toml").status_code == 404
    shown = admin.get("/console/settings/logo")
    assert shown.status_code == 200 and shown.content == png
    assert 'src="/console/settings/logo"' in admin.get("/console/settings").text


def test_an_invitation_is_a_one_time_link_that_sets_the_password(console: ConsoleSite) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/users").text)
    made = admin.post(
        "/console/users/invite", data={"csrf": token, "email": "new.person@clinic.example", "role": "analyst"}
    )
    assert made.status_code == 200
    link = re.search(r'id="link-value" value="([^"]+)"', made.text)
    assert link and "new.person" not in link.group(1)  # the link names no one
    path = link.group(1).removeprefix(console.url)
    invited = console.client()
    form = invited.get(path)
    assert form.status_code == 200 and "new.person@clinic.example" in form.text and "analyst" in form.text
    short = invited.post(path, data={"password": "short", "again": "short"})
    assert short.status_code == 400 and "at least 12 characters" in short.text
    done = invited.post(path, data={"password": "my own long password", "again": "my own long password"})
    assert done.status_code == 200 and "Your password is set" in done.text
    assert invited.get(path).status_code == 410  # spent
    assert (
        invited.post(path, data={"password": "another long password", "again": "another long password"}).status_code
        == 410
    )
    login = console.client()
    page = login.get("/console/login")
    answer = login.post(
        "/console/login",
        data={"csrf": csrf_of(page.text), "email": "new.person@clinic.example", "password": "my own long password"},
    )
    assert answer.status_code == 303
    actions = [a[1] for a in _actions(console)]
    assert "user.added" in actions and "user.password_set" in actions


def test_a_password_reset_link_works_once_and_a_newer_password_spends_it(console: ConsoleSite) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/users").text)
    with console.engine.connect() as conn:
        from needlecast.accounts.users import find_user

        marketer_id = find_user(conn, email_of("marketer"))["id"]
    made = admin.post(f"/console/users/{marketer_id}/reset-link", data={"csrf": token})
    link = re.search(r'id="link-value" value="([^"]+)"', made.text)
    assert made.status_code == 200 and link
    path = link.group(1).removeprefix(console.url)
    person = console.client()
    assert person.get(path).status_code == 200
    assert (
        person.post(path, data={"password": "a brand new password", "again": "a brand new password"}).status_code == 200
    )
    assert person.get(path).status_code == 410
    assert console.client().get(path.replace("/welcome/", "/welcome/x")).status_code == 410  # forged
    cross = admin.post(f"/console/users/{marketer_id}/reset-link", data={"csrf": token})
    second = re.search(r'id="link-value" value="([^"]+)"', cross.text)
    assert second
    foreign = console.client().post(
        second.group(1).removeprefix(console.url),
        data={"password": "yet another password", "again": "yet another password"},
        headers={"Origin": "https://evil.example.net"},
    )
    assert foreign.status_code == 403
    assert ("user.reset_link_made", f"user:#{marketer_id}") in [(a[1], a[2]) for a in _actions(console)]


def test_an_api_key_is_shown_once_works_and_stops_when_revoked(console: ConsoleSite) -> None:
    admin = console.login("admin")
    token = csrf_of(admin.get("/console/settings/keys").text)
    none = admin.post("/console/settings/keys", data={"csrf": token, "name": "website form"})
    assert none.status_code == 400 and "Choose what the key may do" in none.text
    made = admin.post("/console/settings/keys", data={"csrf": token, "name": "dashboard", "scopes": "campaigns:read"})
    key = re.search(r'id="key-value" value="(nc_[^"]+)"', made.text)
    assert made.status_code == 200 and key
    assert console.api(key.group(1)).get("/campaigns").status_code == 200
    listing = admin.get("/console/settings/keys").text
    assert key.group(1) not in listing and "dashboard" in listing and "Read campaigns" in listing
    key_id = re.search(r"/settings/keys/(\d+)/revoke", listing)
    assert key_id
    revoked = admin.post(f"/console/settings/keys/{key_id.group(1)}/revoke", data={"csrf": token})
    assert revoked.status_code == 303
    assert console.api(key.group(1)).get("/campaigns").status_code == 401
    assert "Revoked" in admin.get("/console/settings/keys").text
    actions = [a[1] for a in _actions(console)]
    assert "apikey.created" in actions and "apikey.revoked" in actions


def test_the_first_run_checklist_links_clinic_and_sender_to_the_settings_for_an_admin_only(
    console: ConsoleSite,
) -> None:
    write_settings(console.workspace.root, {"clinic": {"logo_url": ""}})  # a step still to do
    from sqlalchemy import delete

    from needlecast.store.schema import contacts

    with console.engine.begin() as conn:
        conn.execute(delete(contacts))  # no contacts: the home shows the checklist
    admin = console.login("admin").get("/console/").text
    assert 'href="/console/settings#clinic"' in admin and 'href="/console/settings#sender"' in admin
    marketer = console.login("marketer").get("/console/").text
    assert "/console/settings" not in marketer and "administrator sets this in Settings" in marketer


def test_write_settings_keeps_comments_and_refuses_what_the_loader_refuses(tmp_path: Path) -> None:
    config = tmp_path / "needlecast.toml"
    config.write_text('# mine\n[clinic]\nname = "A"  # the name\n\n[delivery]\nbackend = "outbox"  # dry runs\n')
    workspace = open_workspace(tmp_path)
    write_settings(tmp_path, {"clinic": {"name": "B"}, "console": {"test_recipients": ("a@b.example",)}})
    text = config.read_text()
    assert text.startswith("# mine\n") and "# the name" in text and 'backend = "outbox"  # dry runs' in text
    assert workspace.settings.clinic.name == "B" and workspace.settings.console.test_recipients == ("a@b.example",)
    with pytest.raises(ConfigurationError, match="whole number"):
        write_settings(tmp_path, {"schedule": {"max_per_day": "two"}})
    assert config.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["needlecast.toml"]  # no temporary file left behind
    given = dataclasses.replace(workspace, settings=dataclasses.replace(workspace.settings, console=ConsoleSettings()))
    config.write_text("[clinic]\nname = 5\n")  # a hand edit that does not load: the last good settings stay
    assert workspace.settings.clinic.name == "B"
    config.write_text('[clinic]\nname = "C"\n')
    assert workspace.settings.clinic.name == "C"
    assert given.settings.clinic.name == "B"  # a workspace given settings of its own keeps them
