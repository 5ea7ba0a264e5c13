"""Every action, once, through the action (issue 26): an actor whose role or scopes allow it succeeds and leaves
exactly one audit entry (who, what, on what; never a contact's address, name or concern); an actor without the
permission gets `PermissionDenied`, and nothing changes: not the audit log, not any table, not any file of the
workspace. A meta-test keeps the table complete: every public function of `needlecast/actions/*.py` that takes
an `actor` is in `CASES` or in `TESTED_ELSEWHERE`, and every name there still exists.

SQLite alone: the actions' SQL is the library's, which its contract suites run on both databases."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy import inspect as inspect_db

import needlecast.actions
from needlecast.accounts.audit import entries
from needlecast.accounts.roles import Actor
from needlecast.actions import audience, campaigns, contacts, content, invites, journeys, settings, templates
from needlecast.audience.importer import import_file
from needlecast.audience.segment_rows import Row
from needlecast.config import Workspace, open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.errors import PermissionDenied
from needlecast.store.engine import open_store
from needlecast.store.schema import metadata
from tests.journey_helpers import write_journey

pytestmark = pytest.mark.database_independent

ADMIN = Actor("user", "admin@clinic.example", 1, role="admin")
MARKETER = Actor("user", "marketer@clinic.example", 2, role="marketer")
REVIEWER = Actor("user", "reviewer@clinic.example", 3, role="reviewer")
ANALYST = Actor("user", "analyst@clinic.example", 4, role="analyst")  # may read, never change
WRITER = Actor("api_key", "signup form", 5, scopes=frozenset({"contacts:write"}))
READER = Actor("api_key", "dashboard", 6, scopes=frozenset({"contacts:read", "campaigns:read"}))

# The contact the contact actions touch (the sample audience's first row): none of this may be audited.
EMAIL, PERSONAL = "kaia.0@example.com", ("kaia.0@example.com", "Kaia", "Müller", "anti-aging", "Anti-aging")
SECRET = "s" * 40
FIRST = contacts.Selection(ids=(1,))  # the sample audience's first row, picked on the contact list
JOURNEY = "steps:\n  - {id: hello, template: emails/welcome}\n  - {id: pause, kind: wait, delay: 3d}\n"

# Actions with an `actor` whose permission and audit entry another file tests, through the action.
TESTED_ELSEWHERE: dict[str, str] = {
    "audience.import_event_file": "tests/test_actions_cli.py",
    "keys.create_key": "tests/test_actions_cli.py",
    "keys.revoke_key": "tests/test_actions_cli.py",
    "users.add_user": "tests/test_actions_cli.py",
    "users.disable_user": "tests/test_actions_cli.py",
    "users.enable_user": "tests/test_actions_cli.py",
    "users.set_user_password": "tests/test_actions_cli.py",
    "users.set_user_role": "tests/test_actions_cli.py",
    "contacts.upsert": "tests/test_actions_web.py",
    "events.record_events": "tests/test_actions_web.py",
    "templates.test_send": "tests/test_actions_web.py",
    "journeys.enter": "tests/test_journey_entries.py",
    # Logging out is one's own session: no permission to check; its audit entry is tested over HTTP.
    "sessions.log_out": "tests/test_login_throttle.py",
    # It audits only when the schema changes, which needs a store without tables: tested below on its own.
    "settings.upgrade_database": "tests/test_actions.py",
}


@dataclass(frozen=True)
class Case:
    """One action: `act(engine, workspace, actor)`; `allowed` may do it, `refused` may not."""

    act: Callable[[Engine, Workspace, Actor], Any]
    action: str
    target: str
    allowed: Actor = MARKETER
    refused: Actor = ANALYST
    contact: bool = False  # it touches a contact: the entry must not carry personal data
    prepare: Callable[[Engine, Workspace], Any] | None = None  # what must exist first (done by an admin)


def _sample(workspace: Workspace) -> Path:
    return workspace.audiences_dir / "sample.csv"


def _launch(_campaign_id: str) -> None:
    """`request_send_now`'s launcher: the send itself is `send_campaign`'s case."""


def _runner(engine: Engine, workspace: Workspace) -> Any:
    from needlecast.campaign.send.runner import Runner
    from needlecast.delivery import backend_factory

    return Runner(workspace, engine, backend_factory(workspace))


def _journey(workspace: Workspace) -> str:
    text = (workspace.campaigns_dir / "j.yaml").read_text()
    return text.replace("delay: 3d", "delay: 4d")


def _campaign_text(workspace: Workspace) -> dict[str, Any]:
    import yaml

    document: dict[str, Any] = yaml.safe_load((workspace.campaigns_dir / "spring-guide.yaml").read_text())
    return document


def _template(workspace: Workspace) -> tuple[str, str]:
    base = workspace.templates_dir / "emails" / "welcome"
    return Path(f"{base}.html").read_text(), Path(f"{base}.txt").read_text() + "\n"


# An email built from blocks (actions.templates.save_block_email), and an image uploaded for one.
IMAGE = b"\x89PNG\r\n\x1a\n" + b"\x01" * 64
IMAGE_NAME = f"room-{hashlib.sha256(IMAGE).hexdigest()[:12]}.png"


def _blocks() -> Any:
    from needlecast.templating.blocks import Block, BlockDocument

    return BlockDocument("Hello [first name]", "", (Block("heading", text="Spring"), Block("section", section="lead")))


CASES: dict[str, Case] = {
    "audience.import_audience": Case(
        lambda e, w, a: audience.import_audience(e, w, a, _sample(w)), "audience.imported", "import:#2"
    ),
    "audience.save_segment": Case(
        lambda e, w, a: audience.save_segment(e, w, a, "vip", "Our regulars", [Row("tag", "", "in", "vip")]),
        "segment.saved",
        "segment:vip",
    ),
    "campaigns.set_campaign_status": Case(
        lambda e, w, a: campaigns.set_campaign_status(e, w, a, "spring-guide", "paused"),
        "campaign.paused",
        "campaign:spring-guide",
        prepare=lambda e, w: campaigns.schedule(e, w, ADMIN, "spring-guide"),
    ),
    "campaigns.schedule": Case(
        lambda e, w, a: campaigns.schedule(e, w, a, "spring-guide"), "campaign.scheduled", "campaign:spring-guide"
    ),
    "campaigns.request_send_now": Case(
        lambda e, w, a: campaigns.request_send_now(e, w, a, "spring-guide", _launch),
        "campaign.sent_now",
        "campaign:spring-guide",
    ),
    "campaigns.save_campaign": Case(
        lambda e, w, a: campaigns.save_campaign(e, w, a, _campaign_text(w), "spring-guide"),
        "campaign.saved",
        "campaign:spring-guide",
    ),
    "campaigns.record_signoff": Case(
        lambda e, w, a: campaigns.record_signoff(e, w, a, "spring-guide", "claims checked"),
        "campaign.signoff",
        "campaign:spring-guide",
        allowed=REVIEWER,
    ),
    "campaigns.send_campaign": Case(
        lambda e, w, a: campaigns.send_campaign(e, w, a, "spring-guide", _runner(e, w), send_now=True),
        "campaign.sent_now",
        "campaign:spring-guide",
    ),
    "campaigns.send_now_locally": Case(
        lambda e, w, a: campaigns.send_now_locally(e, w, a, "spring-guide", send_now=True),
        "campaign.sent_now",
        "campaign:spring-guide",
    ),
    "campaigns.reconcile_campaign": Case(
        lambda e, w, a: campaigns.reconcile_campaign(e, w, a, "spring-guide", resend_unknown=False),
        "campaign.reconciled",
        "campaign:spring-guide",
    ),
    "campaigns.sync_schedule": Case(
        lambda e, w, a: campaigns.sync_schedule(e, w, a), "schedule.synced", "schedule", refused=READER
    ),
    "campaigns.draft_campaign": Case(
        lambda e, w, a: campaigns.draft_campaign(e, w, a, "microneedling", kind="broadcast", campaign_id="drafted"),
        "campaign.saved",
        "campaign:drafted",
    ),
    "contacts.suppress_contact": Case(
        lambda e, w, a: contacts.suppress_contact(e, a, EMAIL, "manual", "console"),
        "contact.suppressed",
        "contact:#1",
        contact=True,
    ),
    "contacts.erase_contact": Case(
        lambda e, w, a: contacts.erase_contact(e, a, EMAIL),
        "contact.erased",
        "contact:#1",
        allowed=ADMIN,
        refused=MARKETER,
        contact=True,
    ),
    "contacts.record_contact_consent": Case(
        lambda e, w, a: contacts.record_contact_consent(e, a, EMAIL, "marketing", False, source="api"),
        "contact.consent",
        "contact:#1",
        allowed=WRITER,
        refused=MARKETER,
        contact=True,
    ),
    "contacts.start_opt_in": Case(
        lambda e, w, a: contacts.start_opt_in(e, a, EMAIL, SECRET.encode(), source="signup"),
        "contact.opt_in_started",
        "contact:#1",
        allowed=WRITER,
        refused=READER,
        contact=True,
    ),
    "contacts.tag_contacts": Case(
        lambda e, w, a: contacts.tag_contacts(e, w, a, FIRST, "spring offer", expected=1),
        "contacts.tagged",
        "contacts",
        contact=True,
    ),
    "contacts.suppress_contacts": Case(
        lambda e, w, a: contacts.suppress_contacts(e, w, a, FIRST, expected=1),
        "contacts.suppressed",
        "contacts",
        contact=True,
    ),
    "contacts.export_contacts": Case(
        lambda e, w, a: contacts.export_contacts(e, w, a, FIRST, expected=1),
        "contacts.exported",
        "contacts",
        allowed=ANALYST,
        refused=WRITER,
        contact=True,
    ),
    "content.correct_section_tags": Case(
        lambda e, w, a: content.correct_section_tags(e, w, a, *_section(w), ("acne",)),
        "content.tagged",
        "section:microneedling/",
        allowed=REVIEWER,
    ),
    "journeys.save": Case(lambda e, w, a: journeys.save(e, w, a, "j", _journey(w)), "journey.saved", "campaign:j"),
    "journeys.enter_selection": Case(
        lambda e, w, a: journeys.enter_selection(e, w, a, "j", FIRST, expected=1), "journey.entered", "campaign:j"
    ),
    "journeys.create": Case(
        lambda e, w, a: journeys.create(e, w, a, "j2", _journey(w).replace("id: j\n", "id: j2\n")),
        "journey.saved",
        "campaign:j2",
    ),
    "journeys.repair": Case(lambda e, w, a: journeys.repair(e, w, a, "j", {}), "journey.repaired", "campaign:j"),
    "settings.change_settings": Case(
        lambda e, w, a: settings.change_settings(e, w, a, "clinic", _clinic_form(w)),
        "settings.changed",
        "settings:clinic",
        allowed=ADMIN,
        refused=MARKETER,
    ),
    "settings.save_logo": Case(
        lambda e, w, a: settings.save_logo(e, w, a, PNG), "settings.changed", "settings:logo", allowed=ADMIN
    ),
    "invites.invite_user": Case(
        lambda e, w, a: invites.invite_user(e, a, SECRET.encode(), "new.person@clinic.example", "analyst"),
        "user.added",
        "user:#1",
        allowed=ADMIN,
        refused=MARKETER,
    ),
    "invites.reset_password_link": Case(
        lambda e, w, a: invites.reset_password_link(e, a, SECRET.encode(), 1),
        "user.reset_link_made",
        "user:#1",
        allowed=ADMIN,
        refused=MARKETER,
        prepare=lambda e, w: _an_account(e),
    ),
    "templates.save_template": Case(
        lambda e, w, a: templates.save_template(e, w, a, "emails/welcome", *_template(w)),
        "template.saved",
        "template:emails/welcome",
    ),
    "templates.save_block_email": Case(
        lambda e, w, a: templates.save_block_email(e, w, a, "offer", _blocks()),
        "template.saved",
        "template:emails/offer",
    ),
    "templates.save_email_image": Case(
        lambda e, w, a: templates.save_email_image(e, w, a, "Room.png", IMAGE),
        "template.image_uploaded",
        f"image:{IMAGE_NAME}",
    ),
}


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64  # a logo upload (the action checks the kind by its first bytes)


def _clinic_form(workspace: Workspace) -> dict[str, str]:
    return {
        "name": "Glow Skin Clinic",
        "postal_address": "1 High Street, Bath BA1 1AA",
        "website": "https://glow.example",
        "booking_url": "https://glow.example/book",
        "time_zone": "Europe/London",
    }


def _an_account(engine: Engine) -> None:
    from needlecast.actions.users import add_user, local_operator

    add_user(engine, local_operator(), "someone@clinic.example", "analyst", "a long enough password")


def _section(workspace: Workspace) -> tuple[str, str]:
    from needlecast.campaign.context import CampaignContext

    article = CampaignContext.load(workspace).library.article("microneedling")
    return "microneedling", article.sections[0].slug


def _public_actions() -> set[str]:
    """Every public function of `needlecast/actions/*.py` that takes an `actor`, as 'module.function'."""
    found = set()
    for info in pkgutil.iter_modules(needlecast.actions.__path__):
        module = importlib.import_module(f"needlecast.actions.{info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if function.__module__ != module.__name__ or name.startswith("_"):
                continue
            if "actor" in inspect.signature(function).parameters:
                found.add(f"{info.name}.{name}")
    return found


def test_every_action_with_an_actor_is_tested_here_or_named_where_it_is_tested() -> None:
    actions = _public_actions()
    assert not set(CASES) & set(TESTED_ELSEWHERE), "listed twice"
    untested = actions - set(CASES) - set(TESTED_ELSEWHERE)
    assert not untested, f"actions without a permission and audit test: {sorted(untested)}"
    gone = (set(CASES) | set(TESTED_ELSEWHERE)) - actions
    assert not gone, f"listed, but no such action any more: {sorted(gone)}"
    for qualified, path in TESTED_ELSEWHERE.items():  # the file named still exists and still calls the action
        assert qualified.split(".")[1] in (Path(__file__).parent.parent / path).read_text(), (qualified, path)


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The demo workspace on `store_url`, a journey `j` beside its campaigns, the sample audience imported."""
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_SECRET", SECRET)
    workspace = open_workspace(workspace_dir)
    write_journey(workspace, JOURNEY)
    return workspace


@pytest.fixture()
def store(ws: Workspace) -> Any:
    engine = open_store(ws.database_url)
    import_file(engine, _sample(ws), load_vocabulary_for(ws))
    yield engine
    engine.dispose()


def _state(engine: Engine, workspace: Workspace) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Every row of every table (the audit log among them) and every file of the workspace."""
    with engine.connect() as conn:
        rows = {t.name: sorted(map(str, conn.execute(select(t)))) for t in metadata.sorted_tables}
    files = {
        str(path.relative_to(workspace.root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(workspace.root.rglob("*"))
        if path.is_file()
    }
    return rows, files


@pytest.mark.parametrize("name", list(CASES))
def test_a_permitted_actor_does_it_with_one_audit_entry(name: str, store: Engine, ws: Workspace) -> None:
    case = CASES[name]
    if case.prepare is not None:
        case.prepare(store, ws)
    with store.connect() as conn:
        before = max((e["id"] for e in entries(conn, 1)), default=0)
    case.act(store, ws, case.allowed)
    with store.connect() as conn:
        written = [e for e in entries(conn, 100) if e["id"] > before]
    assert len(written) == 1, written
    (entry,) = written
    assert (entry["actor_kind"], entry["actor"], entry["action"]) == (
        case.allowed.kind,
        case.allowed.name,
        case.action,
    )
    assert entry["target"].startswith(case.target) if case.target.endswith("/") else entry["target"] == case.target
    if case.contact:
        fields = str({k: v for k, v in entry.items() if k not in ("actor",)})
        assert not [value for value in PERSONAL if value.lower() in fields.lower()], entry


@pytest.mark.parametrize("name", list(CASES))
def test_an_actor_without_the_permission_is_refused_and_nothing_changes(
    name: str, store: Engine, ws: Workspace
) -> None:
    case = CASES[name]
    if case.prepare is not None:
        case.prepare(store, ws)
    before = _state(store, ws)
    with pytest.raises(PermissionDenied):
        case.act(store, ws, case.refused)
    assert _state(store, ws) == before


def test_a_database_upgrade_by_an_admin_is_audited_and_refused_to_a_marketer(blank_store_url: str) -> None:
    with pytest.raises(PermissionDenied):
        settings.upgrade_database(blank_store_url, MARKETER)
    bare = create_engine(blank_store_url)
    try:
        assert inspect_db(bare).get_table_names() == []
    finally:
        bare.dispose()
    before, after = settings.upgrade_database(blank_store_url, ADMIN)
    assert before is None and after
    store = open_store(blank_store_url)
    try:
        with store.connect() as conn:
            (entry,) = entries(conn, 10)
    finally:
        store.dispose()
    assert (entry["actor_kind"], entry["actor"], entry["action"], entry["target"]) == (
        "user",
        ADMIN.name,
        "database.upgraded",
        "database",
    )
    assert entry["detail"] == {"before": "empty", "after": after}
