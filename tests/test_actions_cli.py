"""Each action the command line added, once, through the action, on both databases: an actor with the
permission changes what it asks for and leaves exactly one audit entry (who, what, on what, with its detail);
an actor without it gets `PermissionDenied`, and nothing changes (not even the audit log)."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from needlecast.accounts.audit import entries
from needlecast.accounts.roles import Actor
from needlecast.actions import keys, users
from needlecast.actions.audience import import_event_file
from needlecast.config import Workspace
from needlecast.errors import PermissionDenied
from needlecast.readmodels.accounts import account_rows, key_rows
from needlecast.store.schema import events

ADMIN = Actor("user", "admin@clinic.example", 1, role="admin")
MARKETER = Actor("user", "marketer@clinic.example", 2, role="marketer")  # may not manage accounts or keys
KEY = Actor("api_key", "booking system", 3, scopes=frozenset({"events:write"}))
PASSWORD = "a long enough password"


@dataclass
class Case:
    """One action: `act(engine, workspace, actor)` with an actor that may (`allowed`) and one that may not."""

    act: Callable[[Engine, Workspace, Actor], Any]
    action: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)
    allowed: Actor = ADMIN
    refused: Actor = MARKETER


def _with_account(engine: Engine) -> int:
    return users.add_user(engine, ADMIN, "rev@clinic.example", "reviewer", PASSWORD)


def _with_key(engine: Engine) -> int:
    keys.create_key(engine, ADMIN, "booking system", "events:write")
    return int(key_rows(engine)[-1]["id"])


def _bookings(workspace: Workspace) -> Path:
    path = workspace.root / "bookings.csv"
    path.write_text("id,email,type,occurred_at\nB-1,someone@example.org,booked,2026-11-24T10:00:00Z\nB-2,x,booked,y\n")
    return path


def _account(engine: Engine) -> int:
    return _with_account(engine) if not account_rows(engine) else int(account_rows(engine)[0]["id"])


CASES: dict[str, Case] = {
    "add_user": Case(
        lambda e, w, a: users.add_user(e, a, "Rev@Clinic.example", "reviewer", PASSWORD, "Rev"),
        "user.added",
        "user:#1",
        {"email": "rev@clinic.example", "role": "reviewer"},
    ),
    "disable_user": Case(
        lambda e, w, a: users.disable_user(e, a, _account(e)),
        "user.disabled",
        "user:#1",
        {"email": "rev@clinic.example", "disabled": True},
    ),
    "enable_user": Case(
        lambda e, w, a: users.enable_user(e, a, _account(e)),
        "user.enabled",
        "user:#1",
        {"email": "rev@clinic.example", "disabled": False},
    ),
    "set_user_role": Case(
        lambda e, w, a: users.set_user_role(e, a, _account(e), "marketer"),
        "user.role_changed",
        "user:#1",
        {"email": "rev@clinic.example", "role": "marketer"},
    ),
    "set_user_password": Case(
        lambda e, w, a: users.set_user_password(e, a, _account(e), "another long password"),
        "user.password_changed",
        "user:#1",
        {"email": "rev@clinic.example"},
    ),
    "create_key": Case(
        lambda e, w, a: keys.create_key(e, a, "booking system", "events:write, contacts:read"),
        "apikey.created",
        "apikey:#1",
        {"name": "booking system", "scopes": ["contacts:read", "events:write"]},
    ),
    "revoke_key": Case(
        lambda e, w, a: keys.revoke_key(e, a, int(key_rows(e)[0]["id"]) if key_rows(e) else _with_key(e)),
        "apikey.revoked",
        "apikey:#1",
    ),
    "import_event_file": Case(
        lambda e, w, a: import_event_file(e, w, a, _bookings(w)),
        "events.imported",
        "file:bookings.csv",
        {"read": 2, "stored": 1, "rejected": 1},
        allowed=KEY,
    ),
}


def _prepare(name: str, engine: Engine) -> None:
    """What the action needs to exist first (made by an admin, before the action's entry is looked for)."""
    if name in ("disable_user", "enable_user", "set_user_role", "set_user_password"):
        _with_account(engine)
    if name == "enable_user":
        users.disable_user(engine, ADMIN, 1)
    if name == "revoke_key":
        _with_key(engine)


def _state(engine: Engine) -> tuple[Any, ...]:
    """Everything the actions above can change, the audit log included."""
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(events)).scalar_one()
        trail = [e["id"] for e in entries(conn, 1000)]
    accounts = [{k: v for k, v in row.items() if k != "last_login_at"} for row in account_rows(engine)]
    return accounts, key_rows(engine), stored, trail


@pytest.mark.parametrize("name", list(CASES))
def test_a_permitted_actor_changes_it_with_one_audit_entry(name: str, engine: Engine, workspace: Workspace) -> None:
    case = CASES[name]
    _prepare(name, engine)
    with engine.connect() as conn:
        before = max((e["id"] for e in entries(conn, 1)), default=0)
    case.act(engine, workspace, case.allowed)
    with engine.connect() as conn:
        written = [e for e in entries(conn, 100) if e["id"] > before]
    assert len(written) == 1, written
    (entry,) = written
    assert (entry["actor_kind"], entry["actor"], entry["action"], entry["target"]) == (
        case.allowed.kind,
        case.allowed.name,
        case.action,
        case.target,
    )
    assert {k: entry["detail"].get(k) for k in case.detail} == case.detail
    assert PASSWORD not in str(entry["detail"]) and "password_hash" not in entry["detail"]


@pytest.mark.database_independent  # refused before any database work
@pytest.mark.parametrize("name", list(CASES))
def test_an_actor_without_the_permission_is_refused_and_nothing_changes(
    name: str, engine: Engine, workspace: Workspace
) -> None:
    case = CASES[name]
    _prepare(name, engine)
    if name == "import_event_file":
        _bookings(workspace)
    before = _state(engine)
    with pytest.raises(PermissionDenied):
        case.act(engine, workspace, case.refused)
    assert _state(engine) == before


def test_the_local_operator_is_the_command_lines_user_with_every_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    from needlecast.cli.common import operator

    monkeypatch.setattr(getpass, "getuser", lambda: "ana")
    actor = operator()
    assert (actor.kind, actor.name, actor.label) == ("cli", "ana", "cli:ana")
    assert actor == users.local_operator()
    assert actor.may("users.manage") and actor.may("apikeys.manage") and actor.may("events.write")


def test_an_import_maps_its_columns_from_the_mapping_file_from_the_command_line(
    workspace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from needlecast.config import open_workspace
    from needlecast.readmodels.contact_pages import profile_by_address
    from needlecast.readmodels.workspace import workspace_store
    from tests.cli_runner import run

    leads = workspace_dir / "leads.csv"
    leads.write_text("Correo,Nombre,Consentimiento\nana.1@example.org,Ana,yes\n", encoding="utf-8")
    mapping = workspace_dir / "mapping.yaml"
    mapping.write_text("Correo: email\nNombre: first_name\nConsentimiento: marketing_consent\n", encoding="utf-8")
    monkeypatch.setattr(getpass, "getuser", lambda: "ana")
    result = run(monkeypatch, workspace_dir, "audience", "import", str(leads), "--mapping", str(mapping))
    assert result.code == 0, result.stderr
    engine = workspace_store(open_workspace(workspace_dir))
    try:
        profile = profile_by_address(engine, "ana.1@example.org", unmasked=True)
        with engine.connect() as conn:
            (entry,) = entries(conn, 10, action="audience.")
    finally:
        engine.dispose()
    assert (profile.first_name, profile.marketing_consent) == ("Ana", True)
    assert (entry["actor_kind"], entry["actor"], entry["detail"]["inserted"]) == ("cli", "ana", 1)
