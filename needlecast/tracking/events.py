"""One normalised event type for what the provider reports, parsed from SendGrid's Event Webhook.

Kinds: accepted (processed), delivered, deferred, bounced (hard), blocked (soft bounce), dropped, opened,
clicked, complained (spam report), unsubscribed, group_unsubscribed, group_resubscribed. An event of a
kind not listed here is kept with `kind="unknown"` and its provider name in `provider_kind`: never dropped.
The raw event travels beside the normalised one. Our delivery id, campaign and step come back as
top-level keys of each event (they were `custom_args` in the request).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from needlecast.errors import EventFormatError

KINDS = {
    "processed": "accepted",
    "delivered": "delivered",
    "deferred": "deferred",
    "dropped": "dropped",
    "open": "opened",
    "click": "clicked",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "group_unsubscribed",
    "group_resubscribe": "group_resubscribed",
}


@dataclass(frozen=True)
class Event:
    provider_event_id: str
    kind: str
    provider_kind: str
    email: str
    occurred_at: datetime
    delivery_id: int | None
    campaign_id: str
    step_id: str
    message_id: str
    detail: str  # bounce reason, clicked URL, ...
    raw: dict[str, Any] = field(repr=False)


def _kind(raw: dict[str, Any]) -> str:
    name = str(raw.get("event", ""))
    if name == "bounce":
        return "blocked" if str(raw.get("type", "")).lower() == "blocked" else "bounced"
    return KINDS.get(name, "unknown")


def _delivery_id(raw: dict[str, Any]) -> int | None:
    value = raw.get("delivery_id")
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def parse_sendgrid(body: bytes) -> list[Event]:
    """Events from a webhook body; raises `EventFormatError` when it is not a JSON array of objects."""
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise EventFormatError(f"not JSON: {err}") from err
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise EventFormatError("expected a JSON array of event objects")
    events = []
    for raw in items:
        stamp = raw.get("timestamp")
        try:
            occurred = datetime.fromtimestamp(int(stamp), UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            occurred = datetime.now(UTC)
        # sg_event_id is SendGrid's idempotency key; an event without one gets a digest of its content.
        event_id = str(raw.get("sg_event_id") or hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest())
        detail = raw.get("url") or raw.get("reason") or raw.get("response") or raw.get("status") or ""
        events.append(
            Event(
                provider_event_id=event_id[:100],
                kind=_kind(raw),
                provider_kind=str(raw.get("event", ""))[:32],
                email=str(raw.get("email", "")),
                occurred_at=occurred,
                delivery_id=_delivery_id(raw),
                campaign_id=str(raw.get("campaign", ""))[:64],
                step_id=str(raw.get("step", ""))[:64],
                message_id=str(raw.get("sg_message_id", "")).split(".")[0][:100],
                detail=str(detail)[:2000],
                raw=raw,
            )
        )
    return events
