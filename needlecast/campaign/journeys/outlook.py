"""What `needlecast plan` says of a journey: its emails follow each person's own path, so instead of a list
of emails it names how many people wait at each node and how many of them are due within the horizon.

Contract: `journey_plan(conn, campaign, now, horizon)` returns a `Plan` with no emails and one note per node
that holds anyone (in the file's order; a node the journey no longer has is named as stranded).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection

from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.journeys.timing import utc
from needlecast.campaign.plan.rules import PLAN_COLUMNS, Plan
from needlecast.store import journeys as store
from needlecast.wording import Note


def journey_plan(conn: Connection, campaign: Campaign, now: datetime, horizon: datetime) -> Plan:
    """The plan `needlecast plan` shows for a journey (see the module contract)."""
    journey = campaign.journey
    assert journey is not None
    waiting: Counter[str] = Counter()
    due: Counter[str] = Counter()
    for position in store.waiting(conn, campaign.id):
        waiting[position.node] += 1
        if utc(position.due_at) <= horizon:
            due[position.node] += 1
    said = f"a journey: each person's emails follow their own path; {sum(waiting.values())} people are in it now "
    notes: list[str] = [
        Note(
            said + "(the journeys job moves them; `needlecast journey check` finds anyone stuck)",
            said + "(the journeys job moves them on as each step falls due)",
        )
    ]
    for node_id, node in journey.nodes.items():
        if waiting[node_id]:
            notes.append(
                f"{node_id} ({node.kind}): {waiting[node_id]} waiting, {due[node_id]} due by {horizon:%Y-%m-%d}"
            )
    notes.extend(
        f"{node_id}: {count} stranded at a node the journey no longer has"
        for node_id, count in waiting.items()
        if node_id not in journey.nodes
    )
    return Plan(campaign, pd.DataFrame(columns=PLAN_COLUMNS), notes=notes)
