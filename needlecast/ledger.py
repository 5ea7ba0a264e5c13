"""The delivery ledger (DESIGN.md invariants 1 and 2): its states, its transitions and its rules. Its SQL
lives behind `store.delivery.DeliveryStore`, which callers use directly (counts, claims, marks, queue).

Every email is one row, unique on (campaign, step, contact), moving
`queued -> sending -> sent | failed | unknown` (plus `skipped` with its reason, and `cancelled`):
`TRANSITIONS` lists every move, and the store makes no other.

Contract:
- `enqueue_columns` inserts with ON CONFLICT DO NOTHING: a job that fires twice enqueues nothing twice.
- Every `queued` row is listed in exactly one entry of the store's queue (up to QUEUE_ENTRY_SIZE rows of a
  campaign due at the same time), and no other row is; claiming takes whole entries off the queue and moves
  their rows to `sending` in the same transaction, so two senders never claim the same row; only claimed
  rows are ever handed to a backend, and only those that `unsendable_reason` lets through (suppression,
  consent, erasure and a person's pause are checked at dispatch, not only when planning).
- `recover_senders` sorts out the rows of a dead sender: rows of a request it may have posted become
  `unknown` (settled from provider events, per request); the rest of its claim goes back to `queued`.
- `settle_requests` settles unknown requests whole: an event for any row proves the request accepted; a
  request with no event while later ones have events is proved lost after a while, and queued again.
- Unknown rows are sent again (`DeliveryStore.requeue_unknown`) only when a person asks for it.

Why a queue beside the rows: no index of the ledger then holds a column that sending changes, so on
PostgreSQL claiming and marking a row are HOT updates (no index entry written), and a claim reads four
entries instead of walking 4,000 index entries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from needlecast.store import fleet
from needlecast.store.bulk import Column
from needlecast.store.delivery import (
    CANCELLED,
    FAILED,
    QUEUE_ENTRY_SIZE,
    QUEUED,
    SENDING,
    SENT,
    SKIPPED,
    STATUSES,
    UNKNOWN,
    DeliveryStore,
    delivery_store,
)
from needlecast.store.helpers import utcnow

# Every move a row can make (the store's statements make no other): a row is handed to a backend only from
# `sending`, which only a claim enters; `unknown` leaves only when settled from events, proved lost, or on a
# person's request; `queued` rows of a cancelled campaign are cancelled; a journey's `queued` rows are skipped
# when their person leaves it before they are claimed (`store.journeys.hold_back`).
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({SENDING, CANCELLED, SKIPPED}),  # skipped: held back when its person left a journey
    SENDING: frozenset({SENT, FAILED, UNKNOWN, SKIPPED, QUEUED}),
    UNKNOWN: frozenset({SENT, QUEUED}),
    SENT: frozenset(),
    FAILED: frozenset(),
    SKIPPED: frozenset(),
    CANCELLED: frozenset(),
}

__all__ = [
    "CANCELLED",
    "FAILED",
    "QUEUED",
    "QUEUE_ENTRY_SIZE",
    "SENDING",
    "SENT",
    "SKIPPED",
    "STATUSES",
    "TRANSITIONS",
    "UNKNOWN",
]


ENQUEUE_COLUMNS = ("campaign_id", "step_id", "contact_id", "segment", "variant", "arm", "due_at", "status", "error")
OPTIONAL_COLUMNS = {"timing": ""}  # may be left out: every email then gets the default


def enqueue_columns(store: DeliveryStore, conn: Connection, columns: dict[str, Column], *, fresh: bool = False) -> int:
    """Insert planned emails given column-wise, every name in ENQUEUE_COLUMNS (and any of OPTIONAL_COLUMNS):
    a list with one value per email, or one value for all (status `queued`, or `skipped` with its reason in
    `error`). Existing (campaign, step, contact) keys are left alone. The new queued rows are listed in the
    queue. Returns how many were new. `fresh`: the caller found none of the campaign's rows in the ledger
    (its first plan), which the store may use for a cheaper insert.
    """
    missing = set(ENQUEUE_COLUMNS) - set(columns)
    if missing:
        raise ValueError(f"enqueue_columns needs {sorted(missing)}")
    lengths = {len(v) for v in columns.values() if isinstance(v, list | tuple)}
    if not lengths or lengths == {0}:
        return 0
    now = utcnow()
    constants: dict[str, Column] = {
        "claimed_at": None,
        "claim_token": "",
        "sent_at": None,
        "message_id": "",
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }
    optional = {name: columns.get(name, default) for name, default in OPTIONAL_COLUMNS.items()}
    rows = {**{name: columns[name] for name in ENQUEUE_COLUMNS}, **optional, **constants}
    return store.enqueue(conn, rows, fresh=fresh)


@dataclass
class Recovery:
    """What `recover_senders` did: the senders it found dead, and what became of their rows."""

    senders: list[str] = field(default_factory=list)
    requeued: int = 0  # claimed but in no request: certainly not sent, queued again
    unknown: int = 0  # in a request that may have been posted
    requests: int = 0  # such requests
    legacy: int = 0  # claimed before requests had intents (an older needlecast): unknown


def recover_senders(conn: Connection, lease_seconds: float, *, scan: bool = False) -> Recovery:
    """Recover the rows of senders silent past the lease (any sender or the scheduler may call this at any
    time; concurrent calls recover each row once).

    Senders found silent, or (on this machine) whose process is gone, are expired first (`store.fleet`:
    from then on they cannot post). Then, claim by claim, for every row in `sending` whose sender is not
    alive: the rows of a request whose intent was written become `unknown` with the request's id (it may
    have reached the provider); the rest of the claim goes back to `queued`. The ledger is scanned only when
    a sender was found dead, or with `scan` (at start-up: rows of a sender that died while nobody looked).
    """
    silent_since = fleet.cutoff(conn, lease_seconds)
    result = Recovery(fleet.expire_gone(conn) + fleet.expire(conn, silent_since))
    if not result.senders and not scan:
        return result
    store = delivery_store(conn)
    tokens = fleet.sending_tokens(conn)
    alive = {sender.id for sender in fleet.live(conn, silent_since)}  # read after the scan: senders register first
    stopped = {"status": UNKNOWN, "error": _STOPPED_SENDING}
    for token in tokens:
        sender = fleet.sender_of(token)
        if sender in alive:
            continue
        if sender is None:
            result.legacy += store.set_status_of_claim(conn, token, SENDING, stopped)
            continue
        for request in fleet.requests_of_token(conn, token, fleet.POSTING):
            changed = store.set_status(
                conn, request.delivery_ids, SENDING, {**stopped, "request_id": request.id}, token=token
            )
            if changed:
                fleet.set_request_state(conn, request.id, fleet.UNKNOWN)
                result.requests += 1
                result.unknown += changed
        fleet.finish_claim(conn, token)
        result.requeued += store.requeue(
            conn,
            {"error": "claimed by a sender that stopped before posting it: queued again"},
            token=token,
            only_from=SENDING,
        )
    return result


_STOPPED_SENDING = "the sender stopped while this email was being sent; it may have been accepted"


@dataclass
class RequestSettlement:
    """What `settle_requests` did, request by request."""

    accepted: int = 0  # requests an event proved accepted
    accepted_rows: int = 0
    lost: int = 0  # requests proved lost
    requeued_rows: int = 0
    waiting: int = 0  # requests still unknown


ACCEPTED_BY_EVENT, PROVED_LOST, WAITING = "accepted", "lost", "waiting"


@dataclass(frozen=True)
class RequestVerdict:
    """What `settle_requests` does (or would do) with one unknown request."""

    request_id: str
    emails: int  # its rows still unknown
    written_at: datetime
    verdict: str  # ACCEPTED_BY_EVENT | PROVED_LOST | WAITING
    lost_from: datetime | None  # WAITING: when it can be proved lost (if later requests have events by then)
    first_event: Any = None
    message_id: str = ""


def judge_requests(conn: Connection, campaign_id: str, lost_after_seconds: float | None) -> list[RequestVerdict]:
    """The verdict on each of a campaign's unknown requests, oldest first, changing nothing (see
    `settle_requests`)."""
    store = delivery_store(conn)
    now = fleet.clock(conn)
    verdicts = []
    for request in fleet.requests_of_campaign(conn, campaign_id, fleet.UNKNOWN):
        evidence = store.request_evidence(conn, request.id, request.delivery_ids)
        written = datetime.fromtimestamp(request.created_at, UTC)
        lost_from = (
            None if lost_after_seconds is None else datetime.fromtimestamp(request.created_at + lost_after_seconds, UTC)
        )
        verdict = WAITING
        if evidence.first_event is not None:
            verdict = ACCEPTED_BY_EVENT
        elif (
            lost_after_seconds is not None
            and request.created_at <= now - lost_after_seconds
            and store.has_events_after(conn, campaign_id, written)
        ):
            verdict = PROVED_LOST
        verdicts.append(
            RequestVerdict(
                request.id,
                evidence.unknown_rows,
                written,
                verdict,
                lost_from,
                evidence.first_event,
                evidence.message_id,
            )
        )
    return verdicts


def accept_requests_of(conn: Connection, delivery_ids: Sequence[int]) -> int:
    """The unknown requests that these rows (with a provider event each) belong to are accepted, whole: all
    their unknown rows become `sent`; so are these rows themselves when unknown without a request. Returns
    how many rows changed. Cheap when none of them is unknown."""
    store = delivery_store(conn)
    changed = 0
    for request_id in store.unknown_requests_of(conn, delivery_ids):
        request = fleet.requests_by_id(conn, request_id)
        if request is None:
            continue
        changed += store.set_status(
            conn,
            request.delivery_ids,
            UNKNOWN,
            {"status": SENT, "error": "settled from provider events: its request was accepted"},
            request_id=request_id,
        )
        fleet.set_request_state(conn, request_id, fleet.ACCEPTED)
    return changed + store.settle_rows_with_events(conn, delivery_ids)


def settle_requests(conn: Connection, campaign_id: str, lost_after_seconds: float | None) -> RequestSettlement:
    """Settle a campaign's `unknown` requests whole (SendGrid accepts or rejects a request whole).

    - One stored event for any row of a request proves it accepted: all its unknown rows become `sent`.
    - A request with no event for any row, written more than `lost_after_seconds` ago (None: never), while
      the campaign has events for emails recorded as sent after it was written, is proved lost: its rows go
      back to `queued` and are sent again.
    """
    store = delivery_store(conn)
    result = RequestSettlement()
    for verdict in judge_requests(conn, campaign_id, lost_after_seconds):
        request = fleet.requests_by_id(conn, verdict.request_id)
        assert request is not None  # judged just now, in this transaction
        if verdict.verdict == ACCEPTED_BY_EVENT:
            values = {
                "status": SENT,
                "sent_at": verdict.first_event,
                "message_id": verdict.message_id,
                "error": "settled from provider events: its request was accepted",
            }
            result.accepted_rows += store.set_status(conn, request.delivery_ids, UNKNOWN, values, request_id=request.id)
            fleet.set_request_state(conn, request.id, fleet.ACCEPTED)
            result.accepted += 1
        elif verdict.verdict == PROVED_LOST:
            result.requeued_rows += store.requeue(
                conn,
                {"error": "its request was proved lost (no event, later requests have events): queued again"},
                ids=request.delivery_ids,
                only_from=UNKNOWN,
                request_id=request.id,
            )
            fleet.set_request_state(conn, request.id, fleet.LOST)
            result.lost += 1
        else:
            result.waiting += 1
    return result


def is_paused(attributes: dict[str, Any] | None, now: datetime) -> bool:
    """Whether a person's own pause (`paused_until`, an ISO time in their attributes) still holds at `now`
    (a value that is no time holds nothing)."""
    value = (attributes or {}).get("paused_until")
    if not value:
        return False
    try:
        return datetime.fromisoformat(str(value)) > now
    except ValueError:
        return False


def unsendable_reason(
    email: str | None, status: str, consent: Any, attributes: str | None, suppressed: str | None, now: datetime
) -> str:
    """Why a claimed row must not be sent now ('' when it may be): checked for every row just before it is
    handed to a backend, from the contact's data the claim read (`CLAIMED_FIELDS`)."""
    if email is None:
        return "erased: the contact no longer exists"
    if suppressed is not None:
        return f"suppressed: {suppressed}"
    if status == "pending" or not consent:
        return "no marketing consent"
    if attributes and "paused_until" in attributes and is_paused(_attributes(attributes), now):
        return "paused by the person"
    return ""


def _attributes(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}
