"""Helpers of the tests that send through the loopback sink: a workspace of leads with no campaign of its own,
and its store with the leads imported."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from needlecast.audience.importer import import_file
from needlecast.config import Workspace, open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.store.engine import open_store

SECRET = "s" * 40


def acne_leads_csv(count: int) -> str:
    """A leads file of `count` consenting acne leads who signed up on 1 November 2026."""
    rows = "".join(f"lead{i}@example.com,Lead{i},acne,yes,yes,2026-11-01\n" for i in range(count))
    return "Email,First Name,Concern,Marketing consent,Concern consent,Signed up\n" + rows


def leads_workspace(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, csv_text: str) -> Workspace:
    """The demo workspace on `store_url`, its campaigns removed, with `audiences/leads.csv` holding `csv_text`."""
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_SECRET", SECRET)
    for path in (workspace_dir / "campaigns").glob("*.yaml"):
        path.unlink()
    (workspace_dir / "audiences" / "leads.csv").write_text(csv_text)
    return open_workspace(workspace_dir)


def store_with_leads(ws: Workspace) -> Engine:
    """The workspace's store, with `audiences/leads.csv` imported."""
    engine = open_store(ws.database_url)
    import_file(engine, ws.audiences_dir / "leads.csv", load_vocabulary_for(ws))
    return engine
