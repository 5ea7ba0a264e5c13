"""The CLI as a user runs it: audience commands, send --now, campaign state, db upgrade."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import func, insert, select

from needlecast.errors import ConfigurationError
from needlecast.store.engine import HEAD_REVISION, _alembic_config, head_revision, make_engine, open_store
from needlecast.store.schema import deliveries, meta
from tests.cli_runner import Result, run


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """The `needlecast` command in this process (`tests.cli_runner`): `cli(root, *args, **env)`."""

    def invoke(root: Path, *args: str, **env: str) -> Result:
        return run(monkeypatch, root, *args, **env)

    return invoke


def test_audience_commands_from_import_to_erasure(workspace_dir: Path, cli: Callable[..., Result]) -> None:
    sample = workspace_dir / "audiences" / "sample.csv"
    result = cli(workspace_dir, "audience", "import", str(sample), "--list", "autumn")
    assert result.code == 0 and "300" in result.stdout and "sample.rejects.csv" in result.stdout
    segments = cli(workspace_dir, "audience", "segments")
    assert "all-leads" in segments.stdout and "no consent to use concern" in segments.stdout
    shown = cli(workspace_dir, "audience", "show", "acne", "--limit", "3")
    assert "***@" in shown.stdout and "example.com" not in shown.stdout  # masked
    address = "quinn.1@example.org"
    assert cli(workspace_dir, "audience", "consent", address, "--withdraw", "--concerns").code == 0
    assert "already suppressed" not in cli(workspace_dir, "audience", "suppress", address).stdout
    assert "already suppressed" in cli(workspace_dir, "audience", "suppress", address).stdout
    erased = cli(workspace_dir, "audience", "erase", address, "--yes")
    assert erased.code == 0 and "erased" in erased.stdout
    missing = cli(workspace_dir, "audience", "consent", address, "--grant")
    assert missing.code == 1 and "no contact" in missing.stderr and address not in missing.stderr
    link = cli(workspace_dir, "audience", "opt-in", "dev.2@example.net")
    assert "/confirm/" in link.stdout and "dev.2" not in link.stdout


def test_send_now_then_status_pause_resume_cancel(workspace_dir: Path, cli: Callable[..., Result]) -> None:
    assert cli(workspace_dir, "audience", "import", str(workspace_dir / "audiences" / "sample.csv")).code == 0
    sent = cli(workspace_dir, "send", "spring-guide", "--now", "--timings", NEEDLECAST_QUIET_HOURS="off")
    assert sent.code == 0, sent.stderr
    assert "257 new ledger row(s), 257 sent" in sent.stdout
    timed = sent.stdout.split("seconds by stage (this process): ", 1)[1].splitlines()[0]
    stages = {name: float(seconds) for name, seconds in (part.split() for part in timed.split(", "))}
    assert {"plan", "enqueue", "dispatch", "claim", "mark", "turn", "body"} <= set(stages)
    assert stages["plan"] >= stages["enqueue"] and stages["dispatch"] >= stages["claim"]  # parts within wholes
    assert stages["plan"] > 0 and stages["dispatch"] > 0
    status = cli(workspace_dir, "campaign", "status", "spring-guide")
    assert "spring-guide: active" in status.stdout and "257" in status.stdout
    again = cli(workspace_dir, "send", "spring-guide", "--now", NEEDLECAST_QUIET_HOURS="off")
    assert "0 new ledger row(s), 0 sent" in again.stdout and "seconds by stage" not in again.stdout
    assert "paused" in cli(workspace_dir, "campaign", "pause", "spring-guide").stdout
    paused = cli(workspace_dir, "send", "spring-guide", "--now")
    assert "campaign is paused" in paused.stdout
    assert "active" in cli(workspace_dir, "campaign", "resume", "spring-guide").stdout
    assert "cancelled" in cli(workspace_dir, "campaign", "cancel", "spring-guide").stdout
    reconcile = cli(workspace_dir, "campaign", "reconcile", "spring-guide")
    assert "0 still unknown" in reconcile.stdout


def test_sendgrid_backend_without_api_key_is_refused_before_anything_is_claimed(
    workspace_dir: Path, cli: Callable[..., Result]
) -> None:
    assert cli(workspace_dir, "audience", "import", str(workspace_dir / "audiences" / "sample.csv")).code == 0
    result = cli(
        workspace_dir, "send", "spring-guide", "--now", NEEDLECAST_BACKEND="sendgrid", NEEDLECAST_SECRET="k" * 40
    )
    assert result.code == 2 and "SENDGRID_API_KEY" in result.stderr
    store = open_store(f"sqlite:///{workspace_dir / '.needlecast' / 'needlecast.db'}")
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(deliveries)).scalar() == 0  # nothing claimed


def test_existing_database_upgrades_in_place(tmp_path: Path, cli: Callable[..., Result]) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")  # a database made by an older needlecast
        conn.execute(insert(meta), {"key": "marker", "value": "kept"})
    with pytest.raises(ConfigurationError, match="needlecast db upgrade"):
        open_store(url)
    env = {"NEEDLECAST_DATABASE_URL": url}
    ws = tmp_path / "ws"
    assert cli(None, "init", str(ws)).code == 0
    result = cli(ws, "db", "upgrade", **env)
    assert result.code == 0 and f"0001 -> {head_revision()}" in result.stdout
    store = open_store(url)
    with store.connect() as conn:
        assert conn.execute(select(meta.c.value).where(meta.c.key == "marker")).scalar() == "kept"


def test_the_known_head_is_the_migrations_own_and_opening_a_store_at_it_imports_no_alembic(tmp_path: Path) -> None:
    assert ScriptDirectory.from_config(_alembic_config()).get_current_head() == HEAD_REVISION
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    open_store(url)  # migrated here, so that the process below only opens it
    # A process of its own: this one imported Alembic long ago.
    opens = "import sys; from needlecast.store.engine import open_store, current_revision; "
    opens += f"print(current_revision(open_store({url!r})), 'alembic' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", opens], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == [HEAD_REVISION, "False"]
