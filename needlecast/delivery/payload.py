"""Build the SendGrid v3 Mail Send request body for one batch, as a plain dict.

Built by hand rather than with the client's `Mail` helper, which reverses the order of personalizations and
can merge recipients into one To. One personalization per recipient, holding:
- `to`: the address only (no name: nothing personal beyond what delivery needs);
- `substitutions`: both spellings of every recipient token (`%%x%%` raw, `%%x.html%%` escaped), strings;
- `custom_args`: our delivery id (a string; no personal data). The request's own `custom_args` add the
  campaign and step, which SendGrid merges into every personalization; all three come back on every
  webhook event, which is how events find their ledger row;
- `headers`: RFC 8058 one-click `List-Unsubscribe` (HTTPS URL and mailto) and `List-Unsubscribe-Post`.
The request carries `categories` naming campaign and step (never a concern: categories show in SendGrid's
UI and reports), and optional `asm`, `mail_settings.sandbox_mode`, `send_at` (at most 72 hours ahead) and
`batch_id`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from needlecast.config import Settings
from needlecast.delivery.base import MAX_RECIPIENTS_PER_REQUEST, Batch
from needlecast.templating.recipient import list_unsubscribe_headers
from needlecast.templating.tokens import substitutions_for

MAX_SEND_AT_AHEAD = timedelta(hours=72)
MAX_CATEGORIES = 10


def categories_for(campaign_id: str, step_id: str) -> list[str]:
    """Categories for SendGrid's statistics: campaign and campaign/step (at most 255 characters each)."""
    return [campaign_id[:255], f"{campaign_id}/{step_id}"[:255]]


def build_payload(batch: Batch, settings: Settings, *, now: datetime | None = None) -> dict[str, Any]:
    """The JSON body for POST /v3/mail/send. Raises ValueError for a batch SendGrid would refuse."""
    if len(batch.recipients) > MAX_RECIPIENTS_PER_REQUEST:
        raise ValueError(f"{len(batch.recipients)} recipients: SendGrid takes at most {MAX_RECIPIENTS_PER_REQUEST}")
    seen: set[str] = set()
    personalizations = []
    for recipient in batch.recipients:
        address = recipient.email.lower()
        if address in seen:
            raise ValueError(f"delivery {recipient.delivery_id}: an address appears twice in one request")
        seen.add(address)
        personalizations.append({
            "to": [{"email": recipient.email}],
            "substitutions": substitutions_for(recipient.values),
            "custom_args": {"delivery_id": str(recipient.delivery_id)},
            "headers": list_unsubscribe_headers(settings, recipient.unsubscribe_url),
        })
    payload: dict[str, Any] = {
        "personalizations": personalizations,
        "from": {"email": batch.sender_email, **({"name": batch.sender_name} if batch.sender_name else {})},
        "subject": batch.message.subject,
        "content": [
            {"type": "text/plain", "value": batch.message.text},
            {"type": "text/html", "value": batch.message.html},
        ],
        "categories": categories_for(batch.campaign_id, batch.step_id),
        "custom_args": {"campaign": str(batch.campaign_id), "step": str(batch.step_id)},
    }
    if batch.reply_to:
        payload["reply_to"] = {"email": batch.reply_to}
    if settings.delivery.asm_group_id:
        payload["asm"] = {"group_id": int(settings.delivery.asm_group_id)}
    if settings.delivery.sandbox_mode:
        payload["mail_settings"] = {"sandbox_mode": {"enable": True}}
    if batch.send_at is not None:
        moment = batch.send_at.astimezone(UTC)
        if moment - (now or datetime.now(UTC)) > MAX_SEND_AT_AHEAD:
            raise ValueError("send_at is more than 72 hours ahead; SendGrid refuses it (schedule the job later)")
        payload["send_at"] = int(moment.timestamp())
        if batch.sendgrid_batch_id:
            payload["batch_id"] = batch.sendgrid_batch_id
    return payload
