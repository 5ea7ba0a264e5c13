from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from needlecast import __version__
from needlecast.cli import app
from tests.cli_runner import run

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "demo", "lint", "preview", "content"):
        assert command in result.stdout


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout


def test_init_creates_a_workspace_and_refuses_to_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "clinic"
    assert runner.invoke(app, ["init", str(target)]).exit_code == 0
    for name in (
        "content/microneedling.txt",
        "content/vocabulary.yaml",
        "templates/layouts/base.html",
        "templates/emails/welcome.html",
        "needlecast.toml",
    ):
        assert (target / name).is_file(), name
    again = run(monkeypatch, None, "init", str(target))
    assert again.code == 2 and "already a workspace" in again.stderr


def test_missing_workspace_says_how_to_create_one(tmp_path: Path) -> None:
    """The one run of `python -m needlecast.cli` as its own process: the module runs, and its errors exit
    with their status and one line (every other command test runs the same `main()` in-process)."""
    result = subprocess.run(
        [sys.executable, "-m", "needlecast.cli", "content", "show"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "needlecast init DIR" in result.stderr


def test_preview_prints_the_paths_it_wrote(workspace_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "previews"
    result = runner.invoke(
        app,
        [
            "-w",
            str(workspace_dir),
            "preview",
            "emails/welcome",
            "--concern",
            "acne",
            "--first-name",
            "Ana",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.stdout
    written = [Path(line) for line in result.stdout.splitlines() if line.startswith(str(out))]
    assert sorted(p.suffix for p in written) == [".eml", ".html", ".txt"]
    assert all(p.is_file() for p in written)
