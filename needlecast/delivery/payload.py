"""Build the SendGrid v3 Mail Send request body for one batch, as compact JSON text (or its dict).

Built by hand rather than with the client's `Mail` helper, which reverses the order of personalizations and
can merge recipients into one To. One personalization per recipient, holding:
- `to`: the address only (no name: nothing personal beyond what delivery needs);
- `substitutions`: both spellings of every recipient token (`%%x%%` raw, `%%x.html%%` escaped), strings;
- `custom_args`: our delivery id (a string; no personal data). The request's own `custom_args` add the
  campaign and step, which SendGrid merges into every personalization; all three come back on every
  webhook event, which is how events find their ledger row;
- `headers`: RFC 8058 one-click `List-Unsubscribe` (the person's HTTPS URL, and the mailto).
The request's own `headers` hold `List-Unsubscribe-Post`, the same for every recipient (SendGrid adds
the request's headers to every personalization's). The request carries `categories` naming campaign and
step (never a concern: categories show in SendGrid's UI and reports), and optional `asm`,
`mail_settings.sandbox_mode`, `send_at` (at most 72 hours ahead) and `batch_id`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii as _quote  # C, one JSON string
from typing import Any

from needlecast.config import Settings
from needlecast.delivery.base import MAX_RECIPIENTS_PER_REQUEST, Batch
from needlecast.errors import PayloadError
from needlecast.templating.recipient import ONE_CLICK, list_unsubscribe_targets
from needlecast.templating.tokens import substitutions_json

MAX_SEND_AT_AHEAD = timedelta(hours=72)
MAX_CATEGORIES = 10


def categories_for(campaign_id: str, step_id: str) -> list[str]:
    """Categories for SendGrid's statistics: campaign and campaign/step (at most 255 characters each)."""
    return [campaign_id[:255], f"{campaign_id}/{step_id}"[:255]]


def build_payload(batch: Batch, settings: Settings, *, now: datetime | None = None) -> dict[str, Any]:
    """The body for POST /v3/mail/send as a dict (`build_body`, parsed). Raises `PayloadError` like it."""
    payload: dict[str, Any] = json.loads(build_body(batch, settings, now=now))
    return payload


def build_body(batch: Batch, settings: Settings, *, now: datetime | None = None) -> str:
    """The JSON text of the body for POST /v3/mail/send (ASCII). Raises `PayloadError` for a batch SendGrid
    would refuse (too many recipients, an address twice, `send_at` more than 72 hours ahead).

    Written straight to text rather than built as a dict and encoded: a million-recipient send builds a
    thousand of these bodies, and the personalizations are the bulk of each. Every string goes through the
    json module's own encoder (the C one), so the text is what `json.dumps` with compact separators gives.
    """
    recipients = batch.recipients
    if len(recipients) > MAX_RECIPIENTS_PER_REQUEST:
        raise PayloadError(f"{len(recipients)} recipients: SendGrid takes at most {MAX_RECIPIENTS_PER_REQUEST}")
    if len({recipient.email.lower() for recipient in recipients}) != len(recipients):
        seen: set[str] = set()
        for recipient in recipients:
            if recipient.email.lower() in seen:
                raise PayloadError(f"delivery {recipient.delivery_id}: an address appears twice in one request")
            seen.add(recipient.email.lower())
    targets = list_unsubscribe_targets(settings)
    personalizations = ",".join(
        [
            f'{{"to":[{{"email":{_quote(recipient.email)}}}],"substitutions":{{{substitutions_json(recipient.values)}}},'
            f'"custom_args":{{"delivery_id":{_quote(str(recipient.delivery_id))}}},'
            f'"headers":{{"List-Unsubscribe":{_quote(f"<{recipient.unsubscribe_url}>{targets}")}}}}}'
            for recipient in recipients
        ]
    )
    rest = json.dumps(_request_fields(batch, settings, now), separators=(",", ":"))
    return f'{{"personalizations":[{personalizations}],{rest[1:]}'


def _request_fields(batch: Batch, settings: Settings, now: datetime | None) -> dict[str, Any]:
    """Everything but the personalizations."""
    fields: dict[str, Any] = {
        "from": {"email": batch.sender_email, **({"name": batch.sender_name} if batch.sender_name else {})},
        "subject": batch.message.subject,
        "content": [
            {"type": "text/plain", "value": batch.message.text},
            {"type": "text/html", "value": batch.message.html},
        ],
        "categories": categories_for(batch.campaign_id, batch.step_id),
        "custom_args": {"campaign": str(batch.campaign_id), "step": str(batch.step_id)},
        "headers": {"List-Unsubscribe-Post": ONE_CLICK},  # the same for everyone: said once, not per recipient
    }
    if batch.reply_to:
        fields["reply_to"] = {"email": batch.reply_to}
    if settings.delivery.asm_group_id:
        fields["asm"] = {"group_id": int(settings.delivery.asm_group_id)}
    if settings.delivery.sandbox_mode:
        fields["mail_settings"] = {"sandbox_mode": {"enable": True}}
    if batch.send_at is not None:
        moment = batch.send_at.astimezone(UTC)
        if moment - (now or datetime.now(UTC)) > MAX_SEND_AT_AHEAD:
            raise PayloadError("send_at is more than 72 hours ahead; SendGrid refuses it (schedule the job later)")
        fields["send_at"] = int(moment.timestamp())
        if batch.sendgrid_batch_id:
            fields["batch_id"] = batch.sendgrid_batch_id
    return fields
