"""Helpers of the tests that send through the loopback sink: a workspace of leads with no campaign of its own,
and its store with the leads imported."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from needlecast.audience.importer import import_file
from needlecast.config import Workspace, open_workspace
from needlecast.content.loader import load_vocabulary_for
from needlecast.scaffold import init_workspace
from needlecast.store.engine import open_store

REPO = Path(__file__).resolve().parent.parent

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


def big_broadcast_workspace(root: Path, recipients: int, send_at: datetime, config: Callable[[str], str]) -> Path:
    """`needlecast init ROOT` with the repository's settings edited by `config`, one broadcast `big` at
    `send_at` to every lead, and `audiences/big.csv` with `recipients` consenting leads (four variants)."""
    init_workspace(root)  # what `needlecast init ROOT` does, without a process of its own
    (root / "needlecast.toml").write_text(config((REPO / "needlecast.toml").read_text()))
    for path in (root / "campaigns").glob("*.yaml"):
        path.unlink()
    (root / "campaigns" / "big.yaml").write_text(f"""
id: big
kind: broadcast
segment: all-leads
time_zone: Europe/London
steps: [{{id: guide, template: emails/broadcast}}]
schedule: {{send_at: "{send_at.strftime("%Y-%m-%dT%H:%M:%S+00:00")}"}}
signoff: {{reviewer: QA, date: 2026-11-24, note: test content}}
""")
    with (root / "audiences" / "big.csv").open("w") as handle:
        handle.write("Email,First Name,Concern,Marketing consent,Concern consent\n")
        for i in range(recipients):
            handle.write(f"r{i}@example.com,R{i},{['acne', 'ageing', 'melasma', ''][i % 4]},yes,yes\n")
    return root
