"""The SendGrid backend: v3 Mail Send through the official `sendgrid` client, over HTTPS.

The client's own errors are translated here, and only here, into needlecast's error tree:
202 -> the message id from `X-Message-Id`; 400 (and other 4xx) -> `RequestRejected` with SendGrid's error
list; 401/403 -> `ProviderAuthError` (stops everything); 429 -> `RateLimited` with the wait taken from
`X-RateLimit-Reset` (or `Retry-After`); 5xx -> `ProviderUnavailable`; timeouts and connection failures ->
`TransportError`, marked ambiguous when the request may have reached SendGrid.

The client has no timeout by default; every request here has `[delivery] timeout_seconds`. The API host is
configurable (`[delivery] api_host`) for EU data residency (https://api.eu.sendgrid.com) and local tests.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import urllib.error
from typing import Any

import python_http_client.exceptions as sg_errors
from email_validator import EmailNotValidError, validate_email
from sendgrid import SendGridAPIClient

from needlecast.config import Settings
from needlecast.delivery.base import Backend, Batch, BeforePost, Limiter, Observer, RetryPolicy
from needlecast.delivery.payload import build_body
from needlecast.errors import (
    ConfigurationError,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    TransportError,
)

_JSON_TEXT = {"Content-Type": "application/json; charset=utf-8"}


class _QuietBody(bytes):
    """The encoded request body, unchanged on the wire. python_http_client formats every body into a debug
    message whether debug logging is on or not (`'PAYLOAD: {data}'.format(data=request.data)`): the repr
    of 600 KB per request cost more CPU than building it, and with debug logging on it would write every
    recipient's address into the log. Formatted, this body is a size only."""

    def __format__(self, spec: str) -> str:
        return f"<{len(self)} bytes of JSON>"


class _JsonText(str):
    """JSON text that the client encodes (`request_body.encode("utf-8")`) to a `_QuietBody`."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return _QuietBody(str.encode(self, encoding, errors))


def _errors_from(body: bytes | str | None) -> list[str]:
    """SendGrid's error list (`{"errors": [{"message", "field"}]}`) as readable strings."""
    try:
        data = json.loads(body or b"{}")
    except (ValueError, TypeError):
        return [str(body)[:500]] if body else []
    items = data.get("errors", []) if isinstance(data, dict) else []
    return [
        f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
        for e in items
        if isinstance(e, dict)
    ]


def _retry_after(headers: Any) -> float:
    """Seconds to wait after a 429: until X-RateLimit-Reset (a Unix time), else Retry-After, else 1."""
    headers = headers or {}
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, min(float(reset) - time.time(), 60.0)) or 0.1
        except ValueError:
            pass
    retry_after = headers.get("Retry-After")
    try:
        return max(0.1, min(float(retry_after), 60.0)) if retry_after else 1.0
    except ValueError:
        return 1.0


class SendGridBackend(Backend):
    name = "sendgrid"

    def __init__(
        self,
        settings: Settings,
        *,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        before_post: BeforePost | None = None,
        observer: Observer | None = None,
    ) -> None:
        """`limiter`, `before_post`, `observer`: see `Backend`."""
        super().__init__(settings.delivery, retry=retry, limiter=limiter, before_post=before_post, observer=observer)
        self.full_settings = settings
        self.api_key = api_key if api_key is not None else os.environ.get("SENDGRID_API_KEY", "")
        self._local = threading.local()

    def check(self) -> None:
        if not self.api_key:
            raise ConfigurationError(
                "the sendgrid backend needs SENDGRID_API_KEY in the environment "
                "(an API key with the Mail Send permission)"
            )
        sender = self.full_settings.clinic.sender_email
        try:
            validate_email(sender, check_deliverability=False)
        except EmailNotValidError as err:
            raise ConfigurationError(f"[clinic] sender_email {sender!r} is not a valid address: {err}") from err
        if not self.settings.api_host.startswith(("https://", "http://127.", "http://localhost", "http://[::1]")):
            raise ConfigurationError(f"[delivery] api_host must be an https:// URL, not {self.settings.api_host!r}")

    def _client(self) -> SendGridAPIClient:
        client = getattr(self._local, "client", None)
        if client is None:  # one client per worker thread
            client = SendGridAPIClient(api_key=self.api_key, host=self.settings.api_host.rstrip("/"))
            self._local.client = client
        return client

    def prepare(self, batch: Batch) -> _JsonText:
        return _JsonText(build_body(batch, self.full_settings))

    def post(self, batch: Batch, request: _JsonText) -> str:
        try:
            # The body is JSON text already: with a Content-Type other than the bare "application/json" the
            # client sends a string as it is instead of encoding it again (python_http_client's documented
            # "string or json-serializable object").
            response = self._client().client.mail.send.post(
                request_body=request, request_headers=_JSON_TEXT, timeout=self.settings.timeout_seconds
            )
        except (sg_errors.UnauthorizedError, sg_errors.ForbiddenError) as err:
            raise ProviderAuthError(err.status_code, _errors_from(err.body)) from err
        except sg_errors.TooManyRequestsError as err:
            raise RateLimited(429, _errors_from(err.body), retry_after=_retry_after(err.headers)) from err
        except sg_errors.HTTPError as err:
            if err.status_code >= 500:
                raise ProviderUnavailable(err.status_code, _errors_from(err.body)) from err
            raise RequestRejected(err.status_code, _errors_from(err.body)) from err
        except urllib.error.URLError as err:
            # Raised before anything was sent (refused, DNS) unless the reason is a timeout mid-request.
            timed_out = isinstance(err.reason, TimeoutError | socket.timeout)
            raise TransportError(f"cannot reach SendGrid: {err.reason}", ambiguous=timed_out) from err
        except TimeoutError as err:
            raise TransportError(
                f"no answer from SendGrid within {self.settings.timeout_seconds} s", ambiguous=True
            ) from err
        except (http.client.HTTPException, ConnectionError, OSError) as err:
            raise TransportError(f"connection to SendGrid failed: {type(err).__name__}: {err}", ambiguous=True) from err
        if response.status_code not in (200, 202):
            raise ProviderUnavailable(response.status_code, [f"unexpected status {response.status_code}"])
        headers = response.headers or {}
        return str(headers.get("X-Message-Id") or headers.get("x-message-id") or "")
