"""The SendGrid Event Webhook: verify -> parse -> store once -> apply.

Contract:
- `verify_signature(key, signature_b64, timestamp, body, now, max_age)` checks SendGrid's ECDSA P-256 /
  SHA-256 signature over the timestamp header value followed by the raw body, and refuses a timestamp
  outside `max_age` seconds of now (replay). Raises `WebhookRejected` with the reason.
- `ingest(engine, parsed)` stores the items `parse_sendgrid` rejected (raw, with the reason) and each event
  once per provider event id, links it to its ledger row by our
  delivery id, and applies it, all in one transaction: a delivery the provider accepted but we had as
  `unknown` becomes `sent`, and so do the other unknown rows of its request (SendGrid accepts a request
  whole); delivered / bounced / blocked / dropped / deferred set the row's outcome; hard
  bounces, spam complaints, unsubscribes and group unsubscribes add the address to the suppression list.
  Returns what it stored. The events table keeps the address only as the store's keyed hash (the raw event
  is kept beside it, in the database only).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import Connection, Engine, insert, select

from needlecast import ledger
from needlecast.addresses import email_hash
from needlecast.audience.suppression import suppress_hash
from needlecast.errors import ConfigurationError, WebhookRejected
from needlecast.store.bulk import bulk_insert
from needlecast.store.delivery import delivery_store
from needlecast.store.helpers import chunked, hash_key, utcnow
from needlecast.store.schema import events as events_table
from needlecast.store.schema import rejected_events
from needlecast.tracking.events import Event, Parsed

# Hears of each new event's (delivery id, kind) in the ingest's transaction (see `ingest`).
OnApplied = Callable[[Connection, list[tuple[int | None, str]]], None]
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
SUPPRESSING = {
    "bounced": "hard_bounce",
    "complained": "complaint",
    "unsubscribed": "unsubscribed",
    "group_unsubscribed": "unsubscribed",
}
OUTCOMES = {
    "delivered": "delivered",
    "bounced": "bounced",
    "blocked": "bounced",
    "dropped": "dropped",
    "deferred": "deferred",
}


def load_public_key(public_key_b64: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key (base64 SubjectPublicKeyInfo DER, as its dashboard shows it)."""
    try:
        key = load_der_public_key(base64.b64decode(public_key_b64, validate=True))
    except (ValueError, binascii.Error) as err:
        raise ConfigurationError(
            "[tracking] webhook_public_key is not a base64 DER public key (copy the "
            "verification key from SendGrid's Mail Settings > Event Webhook)"
        ) from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigurationError("[tracking] webhook_public_key is not an elliptic-curve (P-256) key")
    return key


def verify_signature(
    key: ec.EllipticCurvePublicKey,
    signature_b64: str | None,
    timestamp: str | None,
    body: bytes,
    now: float,
    max_age: int,
) -> None:
    if not signature_b64 or not timestamp:
        raise WebhookRejected("missing signature or timestamp header")
    try:
        moment = int(timestamp)
    except ValueError:
        raise WebhookRejected("timestamp header is not a number") from None
    if abs(now - moment) > max_age:
        raise WebhookRejected("timestamp outside the accepted window (replayed or clock skew)")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, binascii.Error):
        raise WebhookRejected("signature does not match") from None


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    suppressed: int = 0
    rejected: int = 0


def ingest(engine: Engine, parsed: Parsed | Sequence[Event], on_applied: OnApplied | None = None) -> IngestResult:
    """Store and apply the events of one webhook call in one transaction (see the module contract); the
    items that failed validation are stored as rejected, raw, with their reason. `on_applied(conn, events)`
    hears of the (delivery id, kind) of each new event, in the same transaction, after they are applied:
    the web app's deliverability guard (`campaign.send.guardrails.after_events`), which may pause a
    campaign."""
    events = parsed.events if isinstance(parsed, Parsed) else list(parsed)
    rejected = parsed.rejected if isinstance(parsed, Parsed) else []
    result = IngestResult(rejected=len(rejected))
    if not events and not rejected:
        return result
    now = utcnow()
    with engine.begin() as conn:
        if rejected:
            conn.execute(
                insert(rejected_events),
                [{"received_at": now, "reason": r.reason[:300], "raw": r.raw} for r in rejected],
            )
        if not events:
            return result
        key = hash_key(conn)
        known: set[str] = set()
        for chunk in chunked([e.provider_event_id for e in events], 5000):
            known |= set(
                conn.execute(
                    select(events_table.c.provider_event_id).where(events_table.c.provider_event_id.in_(chunk))
                ).scalars()
            )
        fresh: dict[str, Event] = {}
        for event in events:
            if event.provider_event_id in known or event.provider_event_id in fresh:
                result.duplicates += 1
            else:
                fresh[event.provider_event_id] = event
        rows = [
            {
                "provider_event_id": e.provider_event_id,
                "kind": e.kind if e.kind != "unknown" else f"unknown:{e.provider_kind}"[:32],
                "delivery_id": e.delivery_id,
                "campaign_id": e.campaign_id,
                "step_id": e.step_id,
                "message_id": e.message_id,
                "email_hash": email_hash(key, e.email.strip().lower()) if e.email else "",
                "occurred_at": e.occurred_at,
                "received_at": now,
                "detail": e.detail,
                "raw": e.raw,
            }
            # In delivery order: each event's statement adds it to its email's summary row (migration 0020),
            # locking that row until commit, so two posts touching the same emails lock them in one order.
            for e in sorted(fresh.values(), key=lambda e: -1 if e.delivery_id is None else e.delivery_id)
        ]
        bulk_insert(conn, events_table, rows, on_conflict_do_nothing=("provider_event_id",))
        result.stored = len(rows)
        accepted = sorted({e.delivery_id for e in fresh.values() if e.delivery_id is not None})
        for delivered in chunked(accepted, 5000):
            ledger.accept_requests_of(conn, delivered)  # one event proves its whole request accepted
        ordered = sorted(fresh.values(), key=lambda e: e.occurred_at)
        outcomes = [
            (e.delivery_id, OUTCOMES[e.kind], e.occurred_at)
            for e in ordered
            if e.kind in OUTCOMES and e.delivery_id is not None
        ]
        if outcomes:  # in time order, so the latest report wins
            delivery_store(conn).record_outcomes(conn, outcomes)
        for event in ordered:
            reason = SUPPRESSING.get(event.kind)
            hashed = email_hash(key, event.email.strip().lower()) if reason and event.email else ""
            if hashed and suppress_hash(conn, hashed, reason or "", f"sendgrid {event.provider_kind}"):
                result.suppressed += 1
        if on_applied is not None:
            on_applied(conn, [(e.delivery_id, e.kind) for e in ordered])
    return result
