"""What `needlecast plan` (and the console's campaign page) says of a journey or a sequence run as one: its
emails follow each person's own path, so instead of a list of emails it gives the journey engine's forecast
(`forecast`): the emails each send node is expected to send per day over the horizon, from where people are
now, and how many people wait at each node.

Contract: `journey_plan(conn, campaign, now, horizon, people=..., newcomers=...)` returns a `Plan` with no
emails, its `forecast` (`forecast.FORECAST_COLUMNS`), `new_enrolments` = `newcomers` (the people a sequence
would enrol now: counted as entering at `now`), and notes in words: the people in it, each node that holds
anyone (in the file's order; a node the journey no longer has is named as stranded), each send node's
expected emails, and what the counts cannot know (upper bounds after a wait-until or a branch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection

from needlecast.audience.segments import attributes_of
from needlecast.campaign.definition.model import SEQUENCE, Campaign
from needlecast.campaign.journeys.forecast import forecast
from needlecast.campaign.journeys.model import SendNode
from needlecast.campaign.journeys.timing import arrival_due, utc
from needlecast.campaign.plan.rules import PLAN_COLUMNS, Plan
from needlecast.store import journeys as store
from needlecast.store.journeys import Position
from needlecast.wording import Note

AT_MOST = (
    "counts marked 'at most' are upper bounds: after a wait-until they count everyone on both its paths (as if "
    "nobody did what it waits for, and as if everybody did at once), after a branch everyone on every path"
)
FEWER = "people who reach the goal, unsubscribe or leave before an email is due get fewer"


def journey_plan(
    conn: Connection,
    campaign: Campaign,
    now: datetime,
    horizon: datetime,
    *,
    people: pd.DataFrame | None = None,
    newcomers: Sequence[int] = (),
) -> Plan:
    """The plan `needlecast plan` shows for a journey (see the module contract)."""
    journey = campaign.journey
    assert journey is not None
    positions = store.waiting(conn, campaign.id)
    waiting = Counter(p.node for p in positions)
    first = journey.nodes[journey.start]
    for contact_id in newcomers:  # they enter at the first node now, as the next sweep would let them in
        due = arrival_due(first, now, campaign.time_zone, {}) or now
        positions.append(Position(contact_id, 1, first.id, now, due, now))
    rows = forecast(
        campaign.id,
        journey,
        positions,
        store.queued_emails(conn, campaign.id, horizon),
        now,
        horizon,
        people=_zones_and_attributes(people, campaign.time_zone),
        zone_name=campaign.time_zone,
    )
    due_soon = Counter(p.node for p in positions[: len(positions) - len(newcomers)] if utc(p.due_at) <= horizon)
    said = f"each person's emails follow their own path; {sum(waiting.values())} people are in it now"
    notes: list[str] = [
        Note(
            said + " (the journeys job moves them; `needlecast journey check` finds anyone stuck)",
            said + " (the journeys job moves them on as each step falls due)",
        )
    ]
    notes += [
        f"{node_id} ({node.kind}): {waiting[node_id]} waiting, {due_soon[node_id]} due by {horizon:%Y-%m-%d}"
        for node_id, node in journey.nodes.items()
        if waiting[node_id]
    ]
    notes += [
        f"{node_id}: {count} stranded at a node the journey no longer has"
        for node_id, count in waiting.items()
        if node_id not in journey.nodes
    ]
    notes += _expected(campaign, rows, now, horizon)
    plan = Plan(campaign, pd.DataFrame(columns=PLAN_COLUMNS), notes=notes, new_enrolments=list(newcomers))
    plan.forecast = rows
    return plan


def _expected(campaign: Campaign, rows: pd.DataFrame, now: datetime, horizon: datetime) -> list[str]:
    """Each send node's expected emails by the horizon, in words, and what the counts cannot know."""
    journey = campaign.journey
    assert journey is not None
    days = max(1, round((horizon - now).total_seconds() / 86400))
    notes = []
    for node_id, node in journey.nodes.items():
        if not isinstance(node, SendNode):
            continue
        mine = rows[rows["node"] == node_id]
        total, queued = int(mine["emails"].sum()), int(mine.loc[mine["queued"], "emails"].sum())
        bound = "at most " if bool(mine["at_most"].any()) else ""
        already = f", {queued} of them already queued" if queued else ""
        notes.append(f"{node_id}: {bound}{total} email(s) expected in the next {days} days{already}")
    if rows["at_most"].any():
        notes.append(AT_MOST)
    notes.append(FEWER + ("" if campaign.kind == SEQUENCE else "; people who enter from now on are not counted"))
    return notes


def _zones_and_attributes(people: pd.DataFrame | None, default: str) -> dict[int, tuple[str, dict]]:
    """contact -> (their zone, their attributes), for the waits timed in a person's zone or by their dates."""
    if people is None or people.empty:
        return {}
    return {
        int(c): (z or default, attributes_of(a))
        for c, z, a in zip(people["id"], people["time_zone"], people["attributes"], strict=True)
    }
