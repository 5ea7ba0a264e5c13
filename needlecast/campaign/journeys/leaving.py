"""Leaving a journey: a person's position leaves (compare-and-set), and in the same transaction their emails
still queued in the ledger (deferred by quiet hours, the cap or warm-up, never claimed by a sender) are held
back with the reason in words, so a booking, an unsubscribe or an exit between an email's deferral and its
moment stops it.

Contract:
- `leave(conn, journey, campaign_id, rows, state, now)`: the positions (as read) leave with `state` and their
  reasons; the emails of those who left (every send node of the journey, for that entry) still `queued` become
  `skipped` with `held_reason`; a row a sender already claimed is left alone (`store.journeys.hold_back`).
  Returns how many left.
- `held_reason`: "left the journey: <goal>" for a conversion, "left the journey: <reason>" for an exit (an
  exit rule, suppression, consent withdrawn, erasure, an exit node, an edit); "" (the email goes) at the end of
  the journey and at an exit node that directly follows a send, which only ends that path.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from needlecast.campaign.journeys.model import Journey, SendNode, ledger_step
from needlecast.store import journeys as store
from needlecast.store.journeys import CONVERTED, DONE, Position

END_OF_JOURNEY = "end of the journey"


def leave(
    conn: Connection, journey: Journey, campaign_id: str, rows: list[tuple[Position, str]], state: str, now: datetime
) -> int:
    """The positions leave with `state` and their reasons (compare-and-set), and in the same transaction the
    emails of those who left are held back while still queued (`held_reason`): a booking, an unsubscribe or an
    exit between an email's deferral (quiet hours, the cap, warm-up) and its moment stops it. How many left."""
    left = store.leave(conn, campaign_id, rows, state, now)
    if left:
        went = _holding(journey, rows, state)
        if went:
            gone = store.left_now(conn, campaign_id, [p for p, _ in went], state, now)
            hold_back(conn, journey, campaign_id, [(p, r) for p, r in rows if (p.contact_id, p.entry) in gone], state)
    return left


def _holding(journey: Journey, rows: list[tuple[Position, str]], state: str) -> list[tuple[Position, str]]:
    """The rows whose leaving holds their emails back (`held_reason`), judged once per node and reason."""
    if not any(isinstance(n, SendNode) for n in journey.nodes.values()):
        return []
    why = {key: held_reason(journey, key[0], state, key[1]) for key in {(p.node, reason) for p, reason in rows}}
    return [(p, reason) for p, reason in rows if why[(p.node, reason)]]


def hold_back(
    conn: Connection, journey: Journey, campaign_id: str, rows: list[tuple[Position, str]], state: str
) -> None:
    """The emails still queued of these positions, which left with `state` and their reasons (at the node each
    was at), are held back with `held_reason`, unless it is "" (the end of a path)."""
    sends = [n.id for n in journey.nodes.values() if isinstance(n, SendNode)]
    held = [
        (p.contact_id, [ledger_step(n, p.entry) for n in sends], held_reason(journey, p.node, state, reason))
        for p, reason in _holding(journey, rows, state)
    ]
    store.hold_back(conn, campaign_id, held)


def held_reason(journey: Journey, node_id: str, state: str, reason: str) -> str:
    """Why a person's queued emails are held back when they leave at `node_id` with `state` and `reason`, in
    words ("left the journey: booked"), or "" when they go: at the end of the journey, or at an exit node that
    directly follows a send (the end of that path: its email is the path's last word, not a reason to stop)."""
    if state == CONVERTED:
        return f"left the journey: {journey.goal}"
    if state == DONE:
        ends_a_path = any(isinstance(n, SendNode) and n.next == node_id for n in journey.nodes.values())
        if reason == END_OF_JOURNEY or ends_a_path:
            return ""
    return f"left the journey: {reason}"
