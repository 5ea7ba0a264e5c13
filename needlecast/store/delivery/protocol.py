"""What the domain asks of a delivery store (`DeliveryStore`), and the ledger's state names.

Every method that takes a `conn` runs in the caller's transaction, so that a claim and the marks of the
round before it commit together; `writing()` opens such a transaction in this database's write turn.
Contract (both implementations, pinned by tests/test_delivery_store.py):
- `enqueue` inserts with ON CONFLICT DO NOTHING: enqueueing twice enqueues nothing twice; every new queued
  row is listed in exactly one queue entry (up to QUEUE_ENTRY_SIZE rows of a campaign due at one time).
- Every method that moves a row into or out of `queued` changes its queue entry in the same transaction.
- `claim` takes whole entries off the queue (never one another sender holds) and moves their rows to
  `sending` with the caller's token, in id order, each with its contact's data (CLAIMED_FIELDS).
- `mark_*`, `release` change only rows still in the state they expect; each returns how many changed.
- Beside the ledger (`store.delivery.sending`): campaign state and its failure streak, claim tokens, request
  intents (written only while their sender is alive: the fence), senders' heartbeats and the fleet's rate
  limits. The dispatcher needs nothing else to reach storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from needlecast.store.bulk import Column
from needlecast.store.delivery.intents import IntentWriter

QUEUED, SENDING, SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED = (
    "queued",
    "sending",
    "sent",
    "failed",
    "unknown",
    "skipped",
    "cancelled",
)
STATUSES = (QUEUED, SENDING, SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED)
# A campaign's state (`campaign_state`): active, paused (by hand or by a failure streak) or cancelled.
CAMPAIGN_ACTIVE, CAMPAIGN_PAUSED, CAMPAIGN_CANCELLED = "active", "paused", "cancelled"
QUEUE_ENTRY_SIZE = 1000  # rows per queue entry: one request's worth (SendGrid takes 1000 recipients)

# A claimed row, as `claim` returns it: the ledger's columns, then its contact's (email is None when the
# contact was erased; suppressed is the suppression reason or None; attributes are JSON text).
CLAIMED_FIELDS = (
    "id",
    "contact_id",
    "step_id",
    "variant",
    "arm",
    "email",
    "first_name",
    "status",
    "marketing_consent",
    "attributes",
    "suppressed",
)


@dataclass(frozen=True)
class RequestEvidence:
    """What the stored provider events say about one request's rows."""

    first_event: Any  # when the earliest event of any of its rows occurred (None: no event)
    message_id: str
    unknown_rows: int  # its rows still `unknown` under its id


class Limiter(Protocol):
    """Paces requests (the same shape as `delivery.base.Limiter`)."""

    def acquire(self, emails: int) -> None: ...


class DeliveryStore(Protocol):
    """The ledger's storage (see the module docstring for the contract)."""

    engine: Engine  # the database it speaks to (its senders' heartbeats and rate limits live there too)

    def write_turn(self) -> AbstractContextManager[None]:
        """This database's write turn, held for the block (SQLite: shared with the other processes)."""
        ...

    def writing(self) -> AbstractContextManager[Connection]:
        """A write transaction, taken in turn with the other sender processes of this database."""
        ...

    # -- planning ---------------------------------------------------------------------------------------------
    def enqueue(self, conn: Connection, rows: dict[str, Column], *, fresh: bool) -> int:
        """Insert ledger rows given column-wise (every column of `deliveries` but the id); new queued rows
        are listed in the queue. `fresh`: the campaign had no rows (a cheaper path where one exists)."""
        ...

    def has_rows(self, conn: Connection, campaign_id: str) -> bool: ...

    # -- dispatching --------------------------------------------------------------------------------------------
    def claim(self, conn: Connection, campaign_id: str, now: datetime, limit: int, token: str) -> list[Sequence[Any]]:
        """Up to `limit` due queued rows of a campaign, moved to `sending` under `token`, with their
        contact's data (CLAIMED_FIELDS), in id order. Empty only when nothing is due (or all that is due is
        being claimed by another sender right now)."""
        ...

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
        """Set `values` on the rows `ids` still in `only_from` (and, when given, of `request_id` / claimed
        under `token`); returns how many changed."""
        ...

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
        """Move the matching rows in `only_from` back to `queued` with `values`, listed in the queue."""
        ...

    def set_status_of_claim(self, conn: Connection, token: str, only_from: str, values: dict[str, Any]) -> int: ...

    # -- reading --------------------------------------------------------------------------------------------------
    def counts(self, conn: Connection, campaign_id: str) -> dict[str, int]: ...

    def skipped_by_reason(self, conn: Connection, campaign_id: str) -> dict[str, int]:
        """The campaign's skipped rows by their reason (the `error` they were recorded with), most first."""
        ...

    def counts_and_skipped(self, conn: Connection, campaign_id: str) -> tuple[dict[str, int], dict[str, int]]:
        """`counts` and `skipped_by_reason` in one pass over the campaign's rows (one GROUP BY)."""
        ...

    def queued_count(self, conn: Connection, campaign_id: str, due_by: datetime | None = None) -> int: ...

    def queued_by_due(self, conn: Connection, campaign_id: str) -> list[tuple[datetime, int]]: ...

    def due_campaigns(self, conn: Connection, now: datetime) -> list[str]: ...

    def queue_depth(self, conn: Connection, now: datetime) -> tuple[int, int]:
        """(queued rows, of which due by `now`) over every campaign."""
        ...

    def queue_by_campaign(self, conn: Connection) -> list[tuple[str, int, Any]]:
        """(campaign, queued rows, earliest due time as the driver returns it) per campaign with queued rows."""
        ...

    # -- settling -------------------------------------------------------------------------------------------------
    def request_evidence(self, conn: Connection, request_id: str, delivery_ids: Sequence[int]) -> RequestEvidence: ...

    def has_events_after(self, conn: Connection, campaign_id: str, at: datetime) -> bool:
        """Whether the campaign has events for emails recorded as sent after `at`."""
        ...

    def has_events_of(self, conn: Connection, delivery_ids: Sequence[int], kinds: Iterable[str]) -> bool:
        """Whether any of these rows has a stored event of one of `kinds` (the deliverability guard asks it
        for every round of outcomes the dispatcher records: the ids travel as one parameter)."""
        ...

    def campaigns_of(self, conn: Connection, delivery_ids: Sequence[int]) -> set[str]:
        """The campaigns these rows belong to (the ids travel as one parameter)."""
        ...

    def unknown_requests_of(self, conn: Connection, delivery_ids: Sequence[int]) -> list[str]:
        """The request ids of those of these rows that are `unknown` under a request."""
        ...

    def settle_rows_with_events(self, conn: Connection, delivery_ids: Sequence[int]) -> int:
        """These rows (each with a stored event), where `unknown` -> `sent` (the webhook's)."""
        ...

    def settle_campaign_by_events(self, conn: Connection, campaign_id: str) -> int:
        """A campaign's `unknown` rows that a stored event proves accepted -> `sent`, with the event's time."""
        ...

    def record_outcomes(self, conn: Connection, outcomes: Sequence[tuple[int, str, datetime]]) -> None:
        """The provider's latest word on each row: (delivery id, delivered | bounced | dropped | deferred,
        when), applied in the order given (the last one for a row wins)."""
        ...

    def cancel_queued(self, conn: Connection, campaign_id: str) -> int: ...

    def mark_stale_unknown(self, conn: Connection, campaign_id: str | None) -> int:
        """Every `sending` row (of a campaign) -> `unknown` (no sender can still hold it)."""
        ...

    # -- the ledger's marks (only rows still `sending` change; each returns how many did) ----------------------
    def mark_sent(self, conn: Connection, ids: Sequence[int], message_id: str, at: datetime) -> int:
        """`sending` -> `sent`, with the provider's message id."""
        ...

    def mark_failed(self, conn: Connection, ids: Sequence[int], error: str) -> int:
        """`sending` -> `failed` (the provider refused the request), counting an attempt."""
        ...

    def mark_unknown(self, conn: Connection, ids: Sequence[int], error: str, request_id: str = "") -> int:
        """`sending` -> `unknown` (the request may have reached the provider), with the request's id; its
        intent becomes `unknown` too, so that the request is settled whole."""
        ...

    def mark_skipped(self, conn: Connection, reasons: dict[int, str]) -> int:
        """`sending` -> `skipped`, each row with its reason (not sendable at dispatch)."""
        ...

    def release(self, conn: Connection, ids: Sequence[int], error: str) -> int:
        """`sending` -> `queued` (the provider certainly did not take them), counting an attempt."""
        ...

    def release_claim(self, conn: Connection, token: str, error: str) -> int:
        """The rows of a claim still `sending` (never handed to a backend) -> `queued`."""
        ...

    def requeue_unknown(self, conn: Connection, campaign_id: str) -> int:
        """`unknown` -> `queued`, to be sent again: only on a person's explicit request."""
        ...

    # -- claims, intents and senders ---------------------------------------------------------------------------
    def claim_token(self, sender_id: str) -> str:
        """A new claim token naming its sender (rows in `sending` then say whose they are)."""
        ...

    def record_intent(
        self, conn: Connection, request_id: str, campaign_id: str, sender_id: str, token: str, ids: Sequence[int]
    ) -> bool:
        """Write a request's intent before it is posted; False when the sender was declared dead (it must
        not post). One statement: on an autocommit connection, one round trip."""
        ...

    def intent_writer(self, campaign_id: str, sender_id: str, token: str) -> IntentWriter:
        """The writer of one claim's request intents (a context manager); its `write(batch)` is a backend's
        before-post hook: it returns once the intent is stored, and raises `SenderFenced` when the sender
        was declared dead (the request must not be posted)."""
        ...

    def finish_claim(self, conn: Connection, token: str) -> None:
        """Remove what is left of a claim's intents (every row of it was recorded or released)."""
        ...

    def register_sender(self, conn: Connection, kind: str, note: str = "") -> str:
        """A new sender (alive, beating now); its id."""
        ...

    def beat(self, conn: Connection, sender_id: str) -> bool:
        """A sender's heartbeat; False once it was declared dead (it must stop)."""
        ...

    def retire_sender(self, conn: Connection, sender_id: str) -> None:
        """A sender that stopped cleanly."""
        ...

    def set_leader(self, conn: Connection, sender_id: str, leader: bool) -> None: ...

    def live_senders(self, conn: Connection, lease_seconds: float, kind: str | None = None) -> int:
        """How many senders (of `kind`) beat within the lease."""
        ...

    def rate_limiter(
        self, requests_per_second: float, emails_per_hour: int, on_wait: Callable[[float], None] | None = None
    ) -> Limiter:
        """The fleet's rate limits, kept in this database (0 disables a limit); `on_wait(seconds)` hears of
        every wait (metrics)."""
        ...

    # -- campaign state ------------------------------------------------------------------------------------------
    def campaign_state(self, conn: Connection, campaign_id: str) -> dict[str, Any] | None:
        """The campaign's state row (status, note, started_at, digest, consecutive_failures), or None."""
        ...

    def ensure_campaign_state(self, conn: Connection, campaign_id: str, digest: str, now: datetime) -> dict[str, Any]:
        """The campaign's state row, made (active, started `now`) the first time the campaign is seen."""
        ...

    def set_campaign_status(self, conn: Connection, campaign_id: str, status: str, note: str = "") -> bool:
        """Set a campaign's status (active resets its failure streak); False when it has no state row."""
        ...

    def record_batch_result(
        self, conn: Connection, campaign_id: str, ok: bool, max_failures: int, reason: str = ""
    ) -> bool:
        """Keep the failure streak (reset by a success); pause the campaign when it reaches `max_failures`
        (0: never). True when it paused."""
        ...
