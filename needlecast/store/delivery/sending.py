"""What a dispatch keeps beside the ledger rows, behind the same store: the ledger's marks, campaign state,
claim fencing, request intents, senders' heartbeats and the fleet's rate limits.

A mixin of `SqlDeliveryStore` (the statements read the same on SQLite and PostgreSQL, or branch inside
`store.fleet` and `store.ratelimit`). The dispatcher reaches all of this through `DeliveryStore` alone.

Contract (with `protocol.DeliveryStore`):
- A mark (`mark_sent`, `mark_failed`, `mark_unknown`, `mark_skipped`, `release`, `release_claim`) changes only
  rows still `sending` (the transitions of `needlecast.ledger.TRANSITIONS`) and returns how many changed; a
  row marked twice is changed once. Errors are cut to 2000 characters, message ids to 100.
- `record_intent` writes a request's intent only while its sender is alive (the fence); `finish_claim`
  removes what is left of a claim's intents at the end of its dispatch.
- `record_batch_result` keeps a campaign's failure streak and pauses it when the streak reaches the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from needlecast.store import fleet
from needlecast.store.delivery.intents import IntentWriter
from needlecast.store.delivery.protocol import (
    CAMPAIGN_ACTIVE,
    CAMPAIGN_PAUSED,
    FAILED,
    SENDING,
    SENT,
    SKIPPED,
    UNKNOWN,
)
from needlecast.store.helpers import insert_ignore, utcnow
from needlecast.store.ratelimit import FleetRateLimiter
from needlecast.store.schema import campaign_state

_ERROR, _MESSAGE_ID = 2000, 100  # the columns' lengths


class SendingState:
    """The dispatch's state beside the ledger (see the module docstring). Needs `engine`, `set_status` and
    `requeue` (`SqlDeliveryStore`)."""

    engine: Engine

    def write_turn(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def set_status(
        self,
        conn: Connection,
        ids: Sequence[int],
        only_from: str,
        values: dict[str, Any],
        *,
        count_attempt: bool = False,
        request_id: str | None = None,
        token: str | None = None,
    ) -> int:
        raise NotImplementedError

    def requeue(
        self,
        conn: Connection,
        values: dict[str, Any],
        *,
        ids: Sequence[int] | None = None,
        only_from: str,
        token: str | None = None,
        campaign_id: str | None = None,
        request_id: str | None = None,
        count_attempt: bool = False,
    ) -> int:
        raise NotImplementedError

    # -- the ledger's marks ------------------------------------------------------------------------------------
    def mark_sent(self, conn: Connection, ids: Sequence[int], message_id: str, at: datetime) -> int:
        values = {"status": SENT, "message_id": message_id[:_MESSAGE_ID], "sent_at": at, "error": ""}
        return self.set_status(conn, ids, SENDING, values)

    def mark_failed(self, conn: Connection, ids: Sequence[int], error: str) -> int:
        return self.set_status(conn, ids, SENDING, {"status": FAILED, "error": error[:_ERROR]}, count_attempt=True)

    def mark_unknown(self, conn: Connection, ids: Sequence[int], error: str, request_id: str = "") -> int:
        values = {"status": UNKNOWN, "error": error[:_ERROR], "request_id": request_id}
        changed = self.set_status(conn, ids, SENDING, values, count_attempt=True)
        if request_id:  # its intent becomes `unknown` too: the request is settled whole
            fleet.set_request_state(conn, request_id, fleet.UNKNOWN)
        return changed

    def mark_skipped(self, conn: Connection, reasons: dict[int, str]) -> int:
        by_reason: dict[str, list[int]] = {}
        for row_id, reason in reasons.items():
            by_reason.setdefault(reason, []).append(row_id)
        return sum(
            self.set_status(conn, ids, SENDING, {"status": SKIPPED, "error": reason[:_ERROR]})
            for reason, ids in by_reason.items()
        )

    def release(self, conn: Connection, ids: Sequence[int], error: str) -> int:
        return self.requeue(conn, {"error": error[:_ERROR]}, ids=ids, only_from=SENDING, count_attempt=True)

    def release_claim(self, conn: Connection, token: str, error: str) -> int:
        return self.requeue(conn, {"error": error[:_ERROR]}, token=token, only_from=SENDING)

    def requeue_unknown(self, conn: Connection, campaign_id: str) -> int:
        return self.requeue(conn, {"error": "resend requested"}, campaign_id=campaign_id, only_from=UNKNOWN)

    # -- claims, intents and senders ----------------------------------------------------------------------------
    def claim_token(self, sender_id: str) -> str:
        return fleet.claim_token(sender_id)

    def record_intent(
        self, conn: Connection, request_id: str, campaign_id: str, sender_id: str, token: str, ids: Sequence[int]
    ) -> bool:
        return fleet.record_intent(conn, request_id, campaign_id, sender_id, token, ids)

    def intent_writer(self, campaign_id: str, sender_id: str, token: str) -> IntentWriter:
        return IntentWriter(self, campaign_id, sender_id, token)

    def finish_claim(self, conn: Connection, token: str) -> None:
        fleet.finish_claim(conn, token)

    def register_sender(self, conn: Connection, kind: str, note: str = "") -> str:
        return fleet.register(conn, kind, note)

    def beat(self, conn: Connection, sender_id: str) -> bool:
        return fleet.beat(conn, sender_id)

    def retire_sender(self, conn: Connection, sender_id: str) -> None:
        fleet.retire(conn, sender_id)

    def set_leader(self, conn: Connection, sender_id: str, leader: bool) -> None:
        fleet.set_leader(conn, sender_id, leader)

    def live_senders(self, conn: Connection, lease_seconds: float, kind: str | None = None) -> int:
        return len(fleet.live(conn, fleet.cutoff(conn, lease_seconds), kind=kind))

    def rate_limiter(
        self, requests_per_second: float, emails_per_hour: int, on_wait: Callable[[float], None] | None = None
    ) -> FleetRateLimiter:
        return FleetRateLimiter(self.engine, requests_per_second, emails_per_hour, on_wait=on_wait)

    # -- campaign state ------------------------------------------------------------------------------------------
    def campaign_state(self, conn: Connection, campaign_id: str) -> dict[str, Any] | None:
        row = conn.execute(select(campaign_state).where(campaign_state.c.campaign_id == campaign_id)).mappings().first()
        return dict(row) if row is not None else None

    def ensure_campaign_state(self, conn: Connection, campaign_id: str, digest: str, now: datetime) -> dict[str, Any]:
        first = {
            "campaign_id": campaign_id,
            "status": CAMPAIGN_ACTIVE,
            "started_at": now,
            "digest": digest,
            "consecutive_failures": 0,
            "note": "",
            "updated_at": now,
        }
        insert_ignore(conn, campaign_state, [first], ("campaign_id",))
        state = self.campaign_state(conn, campaign_id)
        assert state is not None  # inserted just now, or there already
        return state

    def set_campaign_status(self, conn: Connection, campaign_id: str, status: str, note: str = "") -> bool:
        values: dict[str, Any] = {"status": status, "note": note[:_ERROR], "updated_at": utcnow()}
        if status == CAMPAIGN_ACTIVE:
            values["consecutive_failures"] = 0
        changed = conn.execute(update(campaign_state).where(campaign_state.c.campaign_id == campaign_id).values(values))
        return changed.rowcount == 1

    def record_batch_result(
        self, conn: Connection, campaign_id: str, ok: bool, max_failures: int, reason: str = ""
    ) -> bool:
        row = campaign_state.c.campaign_id == campaign_id
        if ok:
            conn.execute(
                update(campaign_state)
                .where(row, campaign_state.c.consecutive_failures != 0)
                .values(consecutive_failures=0, updated_at=utcnow())
            )
            return False
        conn.execute(
            update(campaign_state)
            .where(row)
            .values(consecutive_failures=campaign_state.c.consecutive_failures + 1, updated_at=utcnow())
        )
        streak = conn.execute(select(campaign_state.c.consecutive_failures).where(row)).scalar_one()
        if max_failures and streak >= max_failures:
            note = f"paused after {streak} failed batches in a row: {reason}"
            self.set_campaign_status(conn, campaign_id, CAMPAIGN_PAUSED, note)
            conn.execute(update(campaign_state).where(row).values(consecutive_failures=streak))
            return True
        return False
