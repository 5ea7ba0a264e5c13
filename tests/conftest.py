"""Shared fixtures: a temporary workspace (a copy of the sample, with the demo clinic's settings)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from needlecast.config import Workspace, open_workspace
from needlecast.scaffold import init_workspace

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def workspace_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace in a temp folder, configured like the repository's demo clinic."""
    root = tmp_path / "ws"
    init_workspace(root)
    shutil.copy(REPO / "needlecast.toml", root / "needlecast.toml")
    monkeypatch.delenv("NEEDLECAST_WORKSPACE", raising=False)
    monkeypatch.delenv("NEEDLECAST_DATABASE_URL", raising=False)
    monkeypatch.delenv("NEEDLECAST_SECRET", raising=False)
    return root


@pytest.fixture()
def workspace(workspace_dir: Path) -> Workspace:
    return open_workspace(workspace_dir)
