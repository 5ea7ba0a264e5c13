"""Recovery: what senders that died left behind, and the requests whose fate is unknown.

Any process may recover at any time (the scheduler's leader on taking the lead and every third of the lease,
a worker between rounds, `needlecast send` and the console before they send); concurrent recoveries
recover each row once (`ledger.recover_senders`).

Contract: `recover` expires senders silent past the lease and sorts out their rows (never posted: queued
again; in a request that may have been posted: `unknown`); `settle_unknown_requests` settles every
campaign's unknown requests whole from the provider's events (`ledger.settle_requests`); `forget_ended`
deletes the rows of senders that ended more than SENDERS_KEPT_SECONDS ago. Logs carry counts and ids only.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from needlecast import ledger
from needlecast.config import Workspace
from needlecast.store import fleet
from needlecast.store.delivery import delivery_store

log = logging.getLogger("needlecast.scheduler")
SENDERS_KEPT_SECONDS = 7 * 24 * 3600  # how long a stopped or dead sender's row stays, for whoever investigates


def upkeep_seconds(workspace: Workspace) -> int:
    """How often the leader looks for dead senders: a third of the lease (at least every 2 s)."""
    return max(2, int(workspace.settings.delivery.lease_seconds / 3))


def recover(engine: Engine, lease_seconds: float, *, scan: bool = True) -> ledger.Recovery:
    """Recover the rows of senders that died (`ledger.recover_senders`; any process may, at any time) and log
    what became of them (counts only)."""
    with delivery_store(engine).writing() as conn:
        result = ledger.recover_senders(conn, lease_seconds, scan=scan)
    if result.requeued:
        log.warning(
            "%d ledger rows claimed by %d stopped sender(s) were never posted: queued again",
            result.requeued,
            len(result.senders),
        )
    if result.unknown or result.legacy:
        log.warning(
            "%d ledger rows of %d request(s) that a stopped sender may have posted are now 'unknown': they are "
            "settled from the provider's events (`needlecast campaign reconcile`)",
            result.unknown + result.legacy,
            result.requests,
        )
    return result


def forget_ended(engine: Engine) -> int:
    """Delete the rows of senders that ended more than SENDERS_KEPT_SECONDS ago; how many."""
    with delivery_store(engine).writing() as conn:
        return fleet.forget_ended(conn, fleet.clock(conn) - SENDERS_KEPT_SECONDS)


def settle_unknown_requests(engine: Engine, workspace: Workspace) -> ledger.RequestSettlement:
    """Settle every campaign's unknown requests (`ledger.settle_requests`) and log what was done."""
    after = workspace.settings.delivery.reconcile_after_minutes * 60
    total = ledger.RequestSettlement()
    with engine.connect() as conn:
        campaign_ids = fleet.campaigns_with_requests(conn, fleet.UNKNOWN)
    for campaign_id in campaign_ids:
        with delivery_store(engine).writing() as conn:
            result = ledger.settle_requests(conn, campaign_id, after)
        if result.accepted or result.lost:
            log.info(
                "campaign %s: %d unknown request(s) proved accepted (%d emails sent), %d proved lost "
                "(%d emails queued again), %d still unknown",
                campaign_id,
                result.accepted,
                result.accepted_rows,
                result.lost,
                result.requeued_rows,
                result.waiting,
            )
        for name in ("accepted", "accepted_rows", "lost", "requeued_rows", "waiting"):
            setattr(total, name, getattr(total, name) + getattr(result, name))
    return total
