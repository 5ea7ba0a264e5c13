"""Simulated SendGrid events for the demo: realistic funnels, posted through the real, signed webhook.

`simulate(engine, settings, seed)` builds SendGrid-shaped events for every sent delivery (processed and
delivered for most, a few hard bounces, blocks, unsubscribes and spam reports, opens for some and clicks
for fewer, repeated opens by the same person). Event ids are derived from the delivery, so posting twice
stores nothing twice. `post_signed` posts them in batches, signed like SendGrid does.

`simulate_bookings(events, seed)` derives consultation bookings from those events, as a clinic's booking
system would report them: some of the people who clicked book within two days of the click, a few who only
received the email book too; none is dated after the moment it runs. Ids are derived from the delivery, so a
second run stores nothing twice. `post_events` posts them to the API's `/events` in batches.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, select

from needlecast.config import Settings
from needlecast.store.schema import contacts, deliveries


def generate_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair; the public half base64 DER, as SendGrid shows its verification key."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(public).decode()


def simulate(
    engine: Engine, settings: Settings, seed: int = 11, now: datetime | None = None
) -> list[dict[str, object]]:
    """Events for every sent delivery, none dated after `now` (default: the present): an email sent a minute
    ago has had a minute to be opened, not two days."""
    rng = random.Random(seed)
    until = now or datetime.now(UTC)
    query = (
        select(
            deliveries.c.id,
            deliveries.c.campaign_id,
            deliveries.c.step_id,
            deliveries.c.sent_at,
            deliveries.c.message_id,
            contacts.c.email,
        )
        .join(contacts, contacts.c.id == deliveries.c.contact_id)
        .where(deliveries.c.status == "sent")
        .order_by(deliveries.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    links = [settings.clinic.booking_url, settings.clinic.website]
    out: list[dict[str, object]] = []
    for row in rows:
        base = {
            "email": row.email,
            "sg_message_id": f"{row.message_id}.filter",
            "delivery_id": str(row.id),
            "campaign": row.campaign_id,
            "step": row.step_id,
            "category": [row.campaign_id],
        }
        event = partial(_event, base, row.sent_at or until, row.id, until)
        out.append(event("processed", 0))
        fate = rng.random()
        if fate < 0.012:
            out.append(event("bounce", 1, type="bounce", reason="550 5.1.1 mailbox does not exist"))
            continue
        if fate < 0.02:
            out.append(event("bounce", 1, type="blocked", reason="421 try again later"))
            continue
        out.append(event("delivered", 1, response="250 OK"))
        if rng.random() < 0.42:
            for n in range(rng.choice([1, 1, 2, 3])):
                out.append(event("open", rng.uniform(5, 2880), n))
            if rng.random() < 0.25:
                out.append(event("click", rng.uniform(10, 2880), url=rng.choice(links)))
        if rng.random() < 0.006:
            out.append(event("unsubscribe", rng.uniform(10, 2880)))
        elif rng.random() < 0.001:
            out.append(event("spamreport", rng.uniform(10, 2880)))
    return out


def _event(
    base: dict[str, object],
    start: datetime,
    delivery_id: int,
    until: datetime,
    kind: str,
    minutes: float,
    n: int = 0,
    **extra: object,
) -> dict[str, object]:
    stamp = int(min(start + timedelta(minutes=minutes), until).timestamp())
    return {**base, "event": kind, "timestamp": stamp, "sg_event_id": f"sim-{delivery_id}-{kind}-{n}", **extra}


def simulate_bookings(
    events: list[dict[str, object]],
    seed: int = 17,
    *,
    now: datetime | None = None,
    value: float = 60.0,
    currency: str = "GBP",
) -> list[dict[str, object]]:
    """Bookings (API-shaped `booked` events with a consultation fee) for some of the clicked and delivered
    deliveries among `events`, none dated after `now` (default: the present; see the module contract)."""
    rng = random.Random(seed)
    until = (now or datetime.now(UTC)).timestamp()
    clicked: dict[str, tuple[int, str]] = {}
    delivered: dict[str, tuple[int, str]] = {}
    for event in events:
        key = str(event["delivery_id"])
        stamp, email = int(str(event["timestamp"])), str(event["email"])
        if event["event"] == "click":
            clicked.setdefault(key, (stamp, email))
        elif event["event"] == "delivered":
            delivered[key] = (stamp, email)
    out: list[dict[str, object]] = []
    for key, (stamp, email) in sorted(delivered.items()):
        if key in clicked:
            if rng.random() >= 0.3:
                continue
            stamp = clicked[key][0]
        elif rng.random() >= 0.02:
            continue
        moment = datetime.fromtimestamp(min(stamp + rng.uniform(300, 172_800), until), UTC)
        out.append(
            {
                "id": f"sim-booking-{key}",
                "email": email,
                "type": "booked",
                "occurred_at": moment.isoformat(),
                "value": value,
                "currency": currency,
            }
        )
    return out


def post_events(url: str, items: list[dict[str, object]], key: str, *, batch_size: int = 1000) -> int:
    """Post contact events to the API's `/events` (`url`) with API key `key`; how many were newly stored."""
    stored = 0
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        for batch in _batches(items, batch_size):
            response = client.post(url, json={"events": batch})
            response.raise_for_status()
            stored += int(response.json()["stored"])
    return stored


def _batches(items: list[dict[str, object]], size: int) -> Iterator[list[dict[str, object]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def post_signed(
    url: str, items: list[dict[str, object]], key: ec.EllipticCurvePrivateKey, *, batch_size: int = 1000
) -> int:
    """Post events to the webhook in signed batches; returns how many the app newly stored."""
    stored = 0
    with httpx.Client(timeout=30) as client:
        for batch in _batches(items, batch_size):
            body = json.dumps(batch).encode()
            stamp = str(int(datetime.now(UTC).timestamp()))
            signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
            response = client.post(
                url,
                content=body,
                headers={
                    "X-Twilio-Email-Event-Webhook-Signature": signature,
                    "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                    "Content-Type": "application/json",
                },
            )
            response.raise_for_status()
            stored += int(response.json()["stored"])
    return stored
