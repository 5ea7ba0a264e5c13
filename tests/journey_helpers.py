"""Helpers of the journey tests: a workspace of a few leads on SQLite or PostgreSQL, a frozen clock, a
journey file, one sweep, a contact event, and what the ledger and the positions hold."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.journeys.sweeper import SweepReport, sweep_all
from needlecast.config import Workspace
from needlecast.store.schema import contact_events, contacts, deliveries, journey_positions
from tests.sending import leads_workspace, store_with_leads

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday, 12:00 in London
SIGNOFF = "signoff: {reviewer: QA, date: 2026-11-24, note: test content}"

# Six leads: lead0..lead5; concerns acne, ageing, '' in turn; lead3 carries the tag vip; all consenting.
LEADS = "Email,First Name,Concern,Marketing consent,Concern consent,Signed up,Tags\n" + "".join(
    f"lead{i}@example.com,Lead{i},{['acne', 'ageing', ''][i % 3]},yes,yes,2026-11-01,{'vip' if i == 3 else ''}\n"
    for i in range(6)
)


class Clock:
    """A frozen clock that a test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def journey_workspace(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return leads_workspace(workspace_dir, store_url, monkeypatch, LEADS)


def write_journey(ws: Workspace, body: str, *, name: str = "j") -> None:
    """A journey file `campaigns/<name>.yaml`: the header (id `name`, segment all-leads), then `body`."""
    header = f"id: {name}\nkind: journey\nsegment: all-leads\ntime_zone: Europe/London\n{SIGNOFF}\n"
    (ws.campaigns_dir / f"{name}.yaml").write_text(header + body)


def store(ws: Workspace) -> Engine:
    return store_with_leads(ws)


def sweep(ws: Workspace, engine: Engine, now: datetime) -> SweepReport:
    ctx = CampaignContext.load(ws)
    assert not ctx.problems, ctx.problems
    reports = sweep_all(engine, ctx, now)
    assert len(reports) == 1
    return reports[0]


def record_event(engine: Engine, contact_id: int, kind: str, at: datetime, source: str, treatment: str = "") -> None:
    """One contact event of `kind` (booked, purchased, no_show...) for the contact, occurring and received at
    `at`, with `source` as its source id (unique per event) and the treatment it names, if any."""
    with engine.begin() as conn:
        conn.execute(
            insert(contact_events).values(
                source_id=source,
                email_hash="",
                contact_id=contact_id,
                type=kind,
                occurred_at=at,
                value=None,
                currency="",
                source="test",
                received_at=at,
                treatment=treatment,
                appointment_at=None,
            )
        )


def ids(engine: Engine) -> dict[str, int]:
    """lead name ('lead0') -> contact id."""
    with engine.connect() as conn:
        return {e.split("@")[0]: int(i) for i, e in conn.execute(select(contacts.c.id, contacts.c.email))}


def ledger_rows(engine: Engine, campaign_id: str = "j") -> Counter[tuple[str, int]]:
    """(step id, contact id) -> how many ledger rows (never more than 1)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(deliveries.c.step_id, deliveries.c.contact_id).where(deliveries.c.campaign_id == campaign_id)
        ).all()
    return Counter((s, int(c)) for s, c in rows)


def steps_of(engine: Engine, contact_id: int, campaign_id: str = "j") -> list[str]:
    return sorted(s for s, c in ledger_rows(engine, campaign_id) if c == contact_id)


def positions(engine: Engine, campaign_id: str = "j") -> dict[tuple[int, int], dict[str, object]]:
    """(contact, entry) -> the position row."""
    with engine.connect() as conn:
        rows = conn.execute(select(journey_positions).where(journey_positions.c.campaign_id == campaign_id))
        return {(int(r.contact_id), int(r.entry)): dict(r._mapping) for r in rows}


def where_is(engine: Engine, contact_id: int, campaign_id: str = "j") -> tuple[str, str, int]:
    """(node, state, entry) of the person's latest entry."""
    mine = {k: v for k, v in positions(engine, campaign_id).items() if k[0] == contact_id}
    entry = max(e for _, e in mine)
    row = mine[(contact_id, entry)]
    return str(row["node"]), str(row["state"]), entry
