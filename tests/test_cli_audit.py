"""Every command-line change is audited as `cli:<operating-system user>`, with its counts, on both databases.

The command tree is enumerated from the Typer app: each command is either in `CHANGING` (with the audit
action it writes, exercised by the walk below) or in `READS_ONLY` (with why it has nothing to audit), so a
new command fails `test_every_command_is_known_to_change_data_or_not` until it is placed, and a changing
command fails the walk until it writes its entry.
"""

from __future__ import annotations

import getpass
import io
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.core
import typer.main
from alembic import command
from sqlalchemy import Engine, func, select, update

from needlecast.accounts.audit import entries
from needlecast.accounts.roles import Actor, cli_actor
from needlecast.actions import users as users_actions
from needlecast.cli.common import app
from needlecast.config import Workspace
from needlecast.store.engine import _alembic_config, head_revision, make_engine, open_store
from needlecast.store.schema import audit_log, deliveries
from tests.cli_runner import Result, run

USER = "clinic-admin"  # what getpass.getuser() says in these tests
ANALYST = Actor("user", "analyst@clinic.example", 9, role="analyst")  # may read, may change nothing

# command -> the audit action it writes (the console's and the API's name where they make the same change)
CHANGING = {
    "db upgrade": "database.upgraded",
    "audience import": "audience.imported",
    "audience consent": "contact.consent",
    "audience opt-in": "contact.opt_in_started",
    "audience suppress": "contact.suppressed",
    "audience erase": "contact.erased",
    "events import": "events.imported",
    "content draft": "campaign.saved",
    "schedule sync": "schedule.synced",
    "send": "campaign.sent_now",  # and campaign.sent without --now
    "campaign reconcile": "campaign.reconciled",
    "campaign pause": "campaign.paused",
    "campaign resume": "campaign.resumed",
    "campaign cancel": "campaign.cancelled",
    "user add": "user.added",
    "user set-role": "user.role_changed",
    "user disable": "user.disabled",
    "user enable": "user.enabled",
    "user set-password": "user.password_changed",
    "apikey create": "apikey.created",
    "apikey revoke": "apikey.revoked",
    "journey enter": "journey.entered",
    "journey save": "journey.saved",
    "journey check": "journey.repaired",  # with --repair; without it, it reads
    "demo": "audience.imported",  # tests/test_demo.py: its sends are the scheduler's jobs
}
TESTED_ELSEWHERE = {"demo"}  # runs a scheduler for seconds: test_demo_sends_broadcast_and_day_zero_then_nothing_new

READS_ONLY = {
    "init": "makes a new workspace's files; there is no store yet to change",
    "lint": "reads",
    "doctor": "reads (DNS records and the unsubscribe host's /healthz)",
    "preview": "writes preview files for a person to look at, nothing of the clinic's",
    "plan": "reads (--csv writes the plan to a file)",
    "report": "reads (--out writes the report to a file)",
    "cohorts": "reads (--out writes the tables to a file)",
    "status": "reads",
    "audit": "reads",
    "campaign list": "reads",
    "campaign status": "reads",
    "journey preview": "reads",
    "audience segments": "reads",
    "audience show": "reads",
    "content list": "reads",
    "content show": "reads",
    "user list": "reads",
    "apikey list": "reads",
    "form snippet": "prints HTML",
    "outbox list": "reads",
    "outbox show": "writes a recorded message's copy to files for a person to look at",
    "scheduler": "a service: its jobs act as the system",
    "worker": "a service: sends what was queued (and audited) by others",
    "web": "a service: each change through the console or the API is audited as its user or key",
    "serve": "the web app and the scheduler: as `web` and `scheduler`",
}


def command_paths(group: Any, prefix: str = "") -> set[str]:
    """Every leaf command under a Typer group, as a user types it ("campaign reconcile")."""
    found: set[str] = set()
    for name, sub in group.commands.items():
        path = f"{prefix}{name}"
        found |= command_paths(sub, f"{path} ") if isinstance(sub, typer.core.TyperGroup) else {path}
    return found


def test_every_command_is_known_to_change_data_or_not() -> None:
    commands = command_paths(typer.main.get_command(app))
    assert not set(CHANGING) & set(READS_ONLY)
    unplaced = commands - set(CHANGING) - set(READS_ONLY)
    assert not unplaced, f"place each new command in CHANGING (and audit it) or READS_ONLY: {sorted(unplaced)}"
    assert not (set(CHANGING) | set(READS_ONLY)) - commands, "a command listed here is gone"


@pytest.mark.parametrize("failure", [KeyError("uid"), OSError("no login"), ImportError("pwd")])
def test_cli_actor_is_named_by_uid_when_the_user_has_no_name(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    def fails() -> str:
        raise failure

    monkeypatch.setattr(getpass, "getuser", fails)
    actor = cli_actor()
    assert actor.kind == "cli" and re.fullmatch(r"uid \d+|unknown", actor.name)


@dataclass
class Step:
    """One command, and the audit entry it must write (`detail`: the counts it must carry)."""

    args: tuple[str, ...]
    action: str
    target: str | Callable[[], str]
    detail: dict[str, Any] | Callable[[Result], dict[str, Any]] = field(default_factory=dict)
    stdin: str = ""
    before: Callable[[], None] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> str:
        words = [a for a in self.args if not a.startswith("-")]
        return " ".join(words[:2]) if " ".join(words[:2]) in CHANGING else words[0]


def _json(result: Result, *keys: str) -> dict[str, Any]:
    shown = json.loads(result.stdout)
    return {key: shown[key] for key in keys}


def _sent(result: Result) -> dict[str, Any]:
    found = re.search(r"(\d+) new ledger row\(s\), (\d+) sent, (\d+) failed", result.stdout)
    assert found, result.stdout
    counts = {"enqueued": int(found[1]), "sent": int(found[2]), "failed": int(found[3])}
    enrolled = re.search(r", (\d+) enrolled", result.stdout)
    return counts | ({"enrolled": int(enrolled[1])} if enrolled else {})


def _synced(result: Result) -> dict[str, Any]:
    found = re.search(r"(\d+) job\(s\) added or changed, (\d+) removed", result.stdout)
    assert found, result.stdout
    return {"changed": int(found[1]), "removed": int(found[2])}


def _entered(result: Result) -> dict[str, Any]:
    found = re.search(r"(\d+) entered; (\d+) not entered.*; (\d+) unknown", result.stdout)
    assert found, result.stdout
    return {"entered": int(found[1]), "not_entered": int(found[2]), "unknown": int(found[3])}


JOURNEY = """id: j
kind: journey
segment: all-leads
time_zone: Europe/London
entry: {manual: true}
signoff: {reviewer: QA, date: 2026-11-24, note: test content}
steps:
"""


def _journey_files(root: Path) -> Callable[[], None]:
    """A journey of two nodes in campaigns/, and its next version without its first node in j2.yaml."""
    (root / "j2.yaml").write_text(JOURNEY + "  - {id: pause, kind: wait, delay: 1d}\n")

    def write() -> None:
        (root / "campaigns" / "j.yaml").write_text(
            JOURNEY + "  - {id: hello, template: emails/welcome}\n  - {id: pause, kind: wait, delay: 1d}\n"
        )

    return write


def _old_store(url: str) -> None:
    """The store as an older needlecast left it, so that `db upgrade` has something to do."""
    engine = make_engine(url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    engine.dispose()


def _steps(root: Path, engine: Callable[[], Engine]) -> list[Step]:
    """The walk: every changing command, in an order where each has something to change."""
    address, other = "quinn.1@example.org", "dev.2@example.net"
    bookings = root / "bookings.csv"
    bookings.write_text(
        "id,email,type,occurred_at\nB-1,dev.2@example.net,booked,2026-11-24T10:00:00Z\nB-2,nobody,booked,x\n"
    )

    ids: dict[str, str] = {}  # looked up once: an erased contact is gone

    def contact(email: str) -> Callable[[], str]:
        def target() -> str:
            from needlecast.audience.contacts import get_contact

            if email not in ids:
                with engine().connect() as conn:
                    ids[email] = f"contact:#{get_contact(conn, email)['id']}"
            return ids[email]

        return target

    def five_unknown() -> None:
        with engine().begin() as conn:
            ids = select(deliveries.c.id).where(deliveries.c.campaign_id == "spring-guide").limit(5)
            conn.execute(update(deliveries).where(deliveries.c.id.in_(ids)).values(status="unknown"))

    quiet = {"NEEDLECAST_QUIET_HOURS": "off"}
    password = "a long enough password\n"
    return [
        Step(("db", "upgrade"), "database.upgraded", "database", {"before": "0001", "after": head_revision()}),
        Step(
            ("audience", "import", str(root / "audiences" / "sample.csv"), "--format", "json"),
            "audience.imported",
            "import:#1",
            lambda r: _json(r, "read", "inserted", "updated", "duplicates", "rejected"),
        ),
        Step(("audience", "consent", address, "--withdraw", "--concerns"), "contact.consent", contact(address),
             {"purpose": "concern", "granted": False}),
        Step(("audience", "opt-in", other), "contact.opt_in_started", contact(other)),
        Step(("audience", "suppress", address), "contact.suppressed", contact(address),
             {"reason": "manual", "new": True}),
        Step(("audience", "erase", address, "--yes"), "contact.erased", contact(address)),
        Step(
            ("events", "import", str(bookings), "--format", "json"),
            "events.imported",
            "file:bookings.csv",
            lambda r: _json(r, "read", "stored", "duplicates", "rejected"),
        ),
        Step(("content", "draft", "microneedling", "--id", "audit-draft"), "campaign.saved", "campaign:audit-draft",
             {"created": True, "file": "audit-draft.yaml", "drafted_from": "microneedling"}),
        Step(("schedule", "sync"), "schedule.synced", "schedule", _synced),
        Step(("send", "spring-guide", "--now"), "campaign.sent_now", "campaign:spring-guide", _sent, env=quiet),
        Step(("send", "new-lead-nurture"), "campaign.sent", "campaign:new-lead-nurture", _sent, env=quiet),
        Step(("campaign", "reconcile", "spring-guide", "--resend-unknown"), "campaign.reconciled",
             "campaign:spring-guide", {"requeued": 5, "resent_unknown": 5, "still_unknown": 0}, before=five_unknown),
        Step(("campaign", "pause", "spring-guide"), "campaign.paused", "campaign:spring-guide", {"cancelled": 0}),
        Step(("campaign", "resume", "spring-guide"), "campaign.resumed", "campaign:spring-guide"),
        Step(("campaign", "cancel", "spring-guide"), "campaign.cancelled", "campaign:spring-guide", {"cancelled": 5}),
        Step(("user", "add", "rev@clinic.example", "--role", "reviewer", "--password-stdin"), "user.added",
             "user:#1", {"role": "reviewer"}, stdin=password),
        Step(("user", "set-role", "rev@clinic.example", "marketer"), "user.role_changed", "user:#1",
             {"role": "marketer"}),
        Step(("user", "disable", "rev@clinic.example"), "user.disabled", "user:#1", {"disabled": True}),
        Step(("user", "enable", "rev@clinic.example"), "user.enabled", "user:#1", {"disabled": False}),
        Step(("user", "set-password", "rev@clinic.example", "--password-stdin"), "user.password_changed", "user:#1",
             stdin=password),
        Step(("apikey", "create", "--name", "booking system", "--scopes", "events:write"), "apikey.created",
             "apikey:#1", {"scopes": ["events:write"]}),
        Step(("apikey", "revoke", "1"), "apikey.revoked", "apikey:#1"),
        Step(("journey", "enter", "j", "3", "4"), "journey.entered", "campaign:j", _entered,
             before=_journey_files(root)),
        Step(("journey", "save", "j", str(root / "j2.yaml"), "--move", "hello=pause"), "journey.saved", "campaign:j",
             {"version": 1, "moves": {"hello": "pause"}}),
        Step(("journey", "check", "j", "--repair"), "journey.repaired", "campaign:j", {"moved": {}}),
    ]  # fmt: skip


def _newest_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(audit_log.c.id), 0))).scalar_one())


def _refused(step: Step, root: Path, url: str, engine: Callable[[], Engine], monkeypatch: pytest.MonkeyPatch) -> None:
    """The step's command, run by an operator without its permission: refused by the action it calls
    (`PermissionDenied`, exit 1), with no audit entry written. Every command builds its actor in one place
    (`cli.common.operator`), so a command that changed data past the actions would not be refused here."""
    before = _newest_id(engine()) if step.command != "db upgrade" else 0
    monkeypatch.setattr(sys, "stdin", io.StringIO(step.stdin))
    with monkeypatch.context() as patched:
        patched.setattr(users_actions, "local_operator", lambda: ANALYST)
        result = run(monkeypatch, root, *step.args, NEEDLECAST_DATABASE_URL=url, **step.env)
    assert result.code == 1 and f"{ANALYST.label} may not" in result.stderr, (step.args, result.stderr)
    if step.command != "db upgrade":  # before the upgrade the old store has no audit log to read
        assert _newest_id(engine()) == before, step.args


def test_every_changing_command_is_audited_as_the_cli_user_with_its_counts(
    workspace_dir: Path, blank_store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each changing command, first as an operator who may not (refused by its action, nothing audited),
    then as the command line's user (one entry, `cli:<os user>`, with the command's counts)."""
    monkeypatch.setattr(getpass, "getuser", lambda: USER)
    _old_store(blank_store_url)
    opened: list[Engine] = []

    def engine() -> Engine:
        if not opened:
            opened.append(open_store(blank_store_url))  # after `db upgrade`: an old store is refused
        return opened[0]

    steps = _steps(workspace_dir, engine)
    assert {s.command for s in steps} == set(CHANGING) - TESTED_ELSEWHERE
    try:
        for step in steps:
            if step.before:
                step.before()
            _refused(step, workspace_dir, blank_store_url, engine, monkeypatch)
            before = _newest_id(engine()) if opened else 0
            monkeypatch.setattr(sys, "stdin", io.StringIO(step.stdin))
            result = run(monkeypatch, workspace_dir, *step.args, NEEDLECAST_DATABASE_URL=blank_store_url, **step.env)
            assert result.code == 0, (step.args, result.stderr)
            with engine().connect() as conn:
                written = [e for e in entries(conn, 10) if e["id"] > before]
            assert len(written) == 1, (step.args, written)
            entry = written[0]
            target = step.target() if callable(step.target) else step.target
            expected = step.detail(result) if callable(step.detail) else step.detail
            assert (entry["actor_kind"], entry["actor"], entry["action"], entry["target"]) == (
                "cli",
                USER,
                step.action,
                target,
            ), step.args
            assert {k: entry["detail"].get(k) for k in expected} == expected, (step.args, entry["detail"])
            if step.action.startswith("campaign.sent"):  # the walk must change something to prove the counts
                assert entry["detail"]["enqueued"] > 0 and (entry["detail"]["sent"] or entry["detail"]["enrolled"])
    finally:
        for made in opened:
            made.dispose()


class _Interrupted:
    """A runner whose send is stopped half-way (Ctrl-C), after the emails it sent are in the ledger."""

    def send(self, campaign_id: str, *, send_now: bool = False) -> Any:
        raise KeyboardInterrupt


def test_a_send_stopped_half_way_is_audited_with_what_stopped_it(workspace: Workspace, engine: Engine) -> None:
    from needlecast.actions.campaigns import send_campaign

    with pytest.raises(KeyboardInterrupt):
        send_campaign(engine, workspace, cli_actor(), "spring-guide", _Interrupted(), send_now=True)  # type: ignore[arg-type]
    with engine.connect() as conn:
        (entry,) = entries(conn, 10)
    assert (entry["action"], entry["target"], entry["detail"]) == (
        "campaign.sent_now",
        "campaign:spring-guide",
        {"error": "KeyboardInterrupt"},
    )
