"""The outbox backend: records exactly the request bodies the SendGrid backend would send.

One JSON line per request in `WORKSPACE/outbox/requests.jsonl`: `{"n", "message_id", "recorded_at",
"request"}` where `request` is the Mail Send body (`needlecast.delivery.payload.build_body`), so a dry
run goes through the whole pipeline and shows what would have left. `render_recipient_copy` turns one
recorded request back into what a recipient would see (substitutions applied), for `needlecast outbox show`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from needlecast.config import Settings
from needlecast.delivery.base import Backend, Batch, BeforePost, Limiter, Observer, RetryPolicy
from needlecast.delivery.payload import build_body
from needlecast.errors import ConfigurationError, NotFound
from needlecast.templating.render import RenderedEmail
from needlecast.templating.tokens import apply_substitutions

OUTBOX_FILE = "requests.jsonl"


class OutboxBackend(Backend):
    name = "outbox"

    def __init__(
        self,
        settings: Settings,
        outbox_dir: Path,
        *,
        retry: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        before_post: BeforePost | None = None,
        observer: Observer | None = None,
    ) -> None:
        """`limiter`, `before_post`, `observer`: see `Backend`."""
        super().__init__(settings.delivery, retry=retry, limiter=limiter, before_post=before_post, observer=observer)
        self.full_settings = settings
        self.path = outbox_dir / OUTBOX_FILE
        self._lock = threading.Lock()
        self._count: int | None = None

    def check(self) -> None:
        try:
            validate_email(self.full_settings.clinic.sender_email, check_deliverability=False)
        except EmailNotValidError as err:
            raise ConfigurationError(f"[clinic] sender_email is not a valid address: {err}") from err

    def _next_number(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self.path.open("rb")) if self.path.exists() else 0
        self._count += 1
        return self._count

    def prepare(self, batch: Batch) -> str:
        return build_body(batch, self.full_settings)

    def post(self, batch: Batch, request: str) -> str:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            number = self._next_number()
            message_id = f"outbox-{number}"
            entry = json.dumps(
                {"n": number, "message_id": message_id, "recorded_at": datetime.now(UTC).isoformat()},
                separators=(",", ":"),
            )
            line = f'{entry[:-1]},"request":{request}}}'  # the body exactly as the sendgrid backend posts it
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        return message_id


def read_outbox(outbox_dir: Path) -> Iterator[dict[str, Any]]:
    """Every request recorded so far, in order. A request is recorded once its line ends with its newline: a
    last line without one is a request still being written by a sender at this moment (another thread or
    process), so it is left for the next read rather than read half-written."""
    path = outbox_dir / OUTBOX_FILE
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.endswith("\n") and line.strip():
                yield json.loads(line)


def find_request(outbox_dir: Path, number: int) -> dict[str, Any]:
    for entry in read_outbox(outbox_dir):
        if entry["n"] == number:
            return entry
    raise NotFound(f"no request #{number} in {outbox_dir / OUTBOX_FILE}")


@dataclass(frozen=True)
class RecipientCopy:
    """One personalization of a recorded request: the message with tokens, and that recipient's values."""

    message: RenderedEmail
    substitutions: dict[str, str]
    address: str
    headers: dict[str, str]
    position: int  # 1-based place among the request's personalizations


def recipient_copy(entry: dict[str, Any], recipient: str | None) -> RecipientCopy:
    """The copy of `recipient` (default: the first) in a recorded request; `NotFound` if absent."""
    request = entry["request"]
    personalizations = request["personalizations"]
    position = 0
    if recipient:
        wanted = recipient.strip().lower()
        position = next((i for i, p in enumerate(personalizations) if p["to"][0]["email"].lower() == wanted), -1)
        if position < 0:
            raise NotFound(f"request #{entry['n']} has no recipient with that address")
    chosen = personalizations[position]
    content = {c["type"]: c["value"] for c in request["content"]}
    message = RenderedEmail(
        template="",
        subject=request["subject"],
        preheader="",
        html=content.get("text/html", ""),
        text=content.get("text/plain", ""),
    )
    headers = {**request.get("headers", {}), **chosen.get("headers", {})}  # SendGrid: the personalization's win
    return RecipientCopy(message, chosen.get("substitutions", {}), chosen["to"][0]["email"], headers, position + 1)


def render_request(entry: dict[str, Any], recipient: str | None) -> tuple[str, str]:
    """(subject, html) as the recipient sees them."""
    copy = recipient_copy(entry, recipient)
    return (
        apply_substitutions(copy.message.subject, copy.substitutions),
        apply_substitutions(copy.message.html, copy.substitutions),
    )
