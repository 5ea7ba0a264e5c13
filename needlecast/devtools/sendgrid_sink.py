"""A SendGrid-compatible sink: a real HTTP server on loopback for tests and benchmarks.

It accepts `POST /v3/mail/send`, checks what SendGrid's schema (and the live API) require of a body, and
answers like SendGrid: 202 with `X-Message-Id` when accepted, 400 with `{"errors": [...]}` when not.
Checked: `personalizations` (1 to 1000, each with a `to`), `from.email`, a subject, `content` (text/plain
before text/html), at most 10 unique categories of at most 255 characters, `custom_args` and
`substitutions` values that are strings, an integer `send_at`, an integer `asm.group_id`, no address twice
in one request, at most 1000 recipients in all, and the bearer API key when one is configured.

Faults for tests: queue responses with `fail(...)` (in process), `fail_after(n, ...)` (once n requests were
accepted), or `POST /_sink/faults` (from another process): `{"status": 400|401|403|429|500|503,
"reset_in": seconds}` or `{"stall": seconds}` (answer after
the delay without recording anything). `GET /_sink/stats` and `GET /_sink/accepted` report what was
accepted; the sink is the witness of exactly-once delivery.

Run standalone: `python -m needlecast.devtools.sendgrid_sink --port 8025 [--record FILE] [--api-key KEY]`.
It binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from needlecast.pacing import collect_seldom

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


_Error = Callable[[str | None, str], None]  # records one SendGrid-style error: (field, message)


def validate_mail_send(body: Any) -> list[dict[str, Any]]:
    """SendGrid-style errors for a Mail Send body; an empty list when it would be accepted."""
    errors: list[dict[str, Any]] = []

    def error(field_name: str | None, message: str) -> None:
        errors.append({"field": field_name, "message": message, "help": None})

    if not isinstance(body, dict):
        error(None, "The request body must be a JSON object.")
        return errors
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        error("personalizations", "The personalizations field is required and must have at least one item.")
        personalizations = []
    elif len(personalizations) > 1000:
        error("personalizations", "The personalizations field has more than 1000 items.")
    _check_message(body, error)
    top_subject = body.get("subject")
    subject_needed = top_subject is None and not isinstance(body.get("template_id"), str)
    _check_personalizations(personalizations, subject_needed, error)
    return errors


def _check_message(body: dict[str, Any], error: _Error) -> None:
    """What the whole request shares: sender, subject, content, categories, custom args, send time, ASM."""
    sender = body.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str) or not _EMAIL.match(sender["email"]):
        error("from.email", "The from object must be provided with a valid email address.")
    top_subject = body.get("subject")
    if top_subject is not None and (not isinstance(top_subject, str) or not top_subject):
        error("subject", "The subject must be a non-empty string.")
    if not isinstance(body.get("template_id"), str):
        _check_content(body.get("content"), error)
    categories = body.get("categories", [])
    if not isinstance(categories, list) or len(categories) > 10:
        error("categories", "You may not have more than 10 categories per request.")
    elif len(set(categories)) != len(categories) or any(not isinstance(c, str) or len(c) > 255 for c in categories):
        error("categories", "Categories must be unique strings of at most 255 characters.")
    if "custom_args" in body:
        _check_string_map(body["custom_args"], "custom_args", error)
    if "send_at" in body and (not isinstance(body["send_at"], int) or isinstance(body["send_at"], bool)):
        error("send_at", "send_at must be an integer Unix timestamp.")
    if "batch_id" in body and not isinstance(body["batch_id"], str):
        error("batch_id", "batch_id must be a string.")
    if "asm" in body and (not isinstance(body["asm"], dict) or not isinstance(body["asm"].get("group_id"), int)):
        error("asm.group_id", "asm.group_id must be an integer.")


def _check_content(content: Any, error: _Error) -> None:
    """Without a template: at least one part, each typed and non-empty, text/plain before text/html."""
    if not isinstance(content, list) or not content:
        error("content", "Unless a valid template_id is provided, the content parameter is required.")
        return
    types = []
    for index, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or not part.get("type")
            or not isinstance(part.get("value"), str)
            or not part["value"]
        ):
            error(f"content.{index}", "Each content item needs a type and a non-empty string value.")
        else:
            types.append(part["type"])
    if "text/plain" in types and "text/html" in types and types.index("text/plain") > types.index("text/html"):
        error("content", "text/plain content must come before text/html.")


def _check_personalizations(personalizations: list[Any], subject_needed: bool, error: _Error) -> None:
    """Each personalization has a `to`, valid addresses unique across the request, string maps of strings, and
    a subject when the request has none; at most 1000 recipients in all."""
    seen: set[str] = set()
    total = 0
    # Written for speed as well as fidelity: a benchmark pushes a million personalizations through here,
    # and the sink shares the machine with the sender it measures.
    for index, item in enumerate(personalizations):
        if not isinstance(item, dict) or not isinstance(item.get("to"), list) or not item["to"]:
            error(f"personalizations.{index}.to", "The to array is required for all personalization objects.")
            continue
        if subject_needed and not item.get("subject"):
            error("subject", "The subject is required. You can get around this requirement if you use a template.")
        for kind in _ADDRESS_KINDS:
            for address in item.get(kind) or ():
                email = address.get("email") if isinstance(address, dict) else None
                total += 1
                if not isinstance(email, str) or not _EMAIL.match(email):
                    error(f"personalizations.{index}.{kind}", "Does not contain a valid address.")
                    continue
                lowered = email.lower()
                if lowered in seen:
                    error(
                        f"personalizations.{index}.{kind}",
                        "Each email address in the personalization block should be unique between to, cc, and "
                        f"bcc. We found the first duplicate instance of [{email}] in the "
                        f"personalizations.{index}.{kind} field.",
                    )
                seen.add(lowered)
        for key in _STRING_MAPS:
            value = item.get(key)
            if value is not None:
                _check_string_map(value, f"personalizations.{index}.{key}", error)
        if "send_at" in item and not isinstance(item["send_at"], int):
            error(f"personalizations.{index}.send_at", "send_at must be an integer Unix timestamp.")
    if total > 1000:
        error("personalizations", "The total number of recipients must be no more than 1000.")


_ADDRESS_KINDS = ("to", "cc", "bcc")
_STRING_MAPS = ("substitutions", "custom_args", "headers")
_ONLY_STRINGS = frozenset({str})


def _check_string_map(value: Any, name: str, error: _Error) -> None:
    if not isinstance(value, dict):
        error(name, f"{name} must be an object.")
    elif not set(map(type, value.values())) <= _ONLY_STRINGS:  # JSON strings decode to exactly str
        error(name, f"Every value in {name} must be a string.")


@dataclass
class Accepted:
    message_id: str
    recipients: list[tuple[str, str]]  # (email, custom_args.delivery_id)
    payload: dict[str, Any] | None
    at: float = 0.0  # time.monotonic() when it was accepted


@dataclass
class SinkState:
    api_key: str | None = None
    keep_payloads: bool = True
    record_path: Path | None = None
    accepted: list[Accepted] = field(default_factory=list)
    faults: deque[dict[str, Any]] = field(default_factory=deque)
    # (accepted requests, faults): queued the moment that many requests have been accepted
    faults_after: tuple[int, list[dict[str, Any]]] | None = None
    # the delivery ids of every request a `stall` fault held (never accepted): a test knows what never arrived
    stalled: set[str] = field(default_factory=set)
    requests: int = 0
    handling: int = 0  # POSTs being handled right now (a stalled one included)
    # What `GET /v3/verified_senders` and `GET /v3/whitelabel/domains` answer (SendGrid's Sender
    # Authentication, as `needlecast doctor` reads it): single senders {from_email, verified}, and
    # authenticated domains {domain, valid}. `sender_auth_status`: answer those with this status instead
    # (403: a key without the permission to read them).
    verified_senders: list[dict[str, Any]] = field(default_factory=list)
    authenticated_domains: list[dict[str, Any]] = field(default_factory=list)
    sender_auth_status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def stats(self) -> dict[str, Any]:
        with self.lock:
            recipients = sum(len(a.recipients) for a in self.accepted)
            return {
                "requests": self.requests,
                "accepted_requests": len(self.accepted),
                "accepted_recipients": recipients,
                "faults_queued": len(self.faults),
            }


def _delivery_ids(raw: bytes) -> list[str]:
    """The `delivery_id` custom arg of each personalization of a Mail Send body ([] for a body that is not one)."""
    try:
        personalizations = json.loads(raw).get("personalizations") or []
        return [str((p.get("custom_args") or {}).get("delivery_id", "")) for p in personalizations]
    except (ValueError, AttributeError):
        return []


class _Handler(BaseHTTPRequestHandler):
    server: _SinkServer
    protocol_version = "HTTP/1.1"
    # A reply's body follows its headers in a second write: with Nagle's algorithm on, it waited for the
    # client's delayed ACK (about 40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read stats instead
        return

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_sink/stats":
            self._reply(200, state.stats())
        elif self.path == "/_sink/accepted":
            with state.lock:
                self._reply(200, [{"message_id": a.message_id, "recipients": a.recipients} for a in state.accepted])
        elif self.path.split("?")[0] in ("/v3/verified_senders", "/v3/whitelabel/domains"):
            self._sender_authentication(state)
        else:
            self._reply(404, {"errors": [{"message": "not found"}]})

    def _sender_authentication(self, state: SinkState) -> None:
        if state.api_key is not None and self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._reply(401, {"errors": [{"message": "authorization required", "field": None}]})
        elif state.sender_auth_status != 200:
            self._reply(state.sender_auth_status, {"errors": [{"message": "access forbidden", "field": None}]})
        elif self.path.startswith("/v3/verified_senders"):
            self._reply(200, {"results": list(state.verified_senders)})
        else:
            self._reply(200, list(state.authenticated_domains))

    def do_POST(self) -> None:
        state = self.server.state
        with state.lock:
            state.handling += 1
        try:
            self._post(state)
        finally:
            with state.lock:
                state.handling -= 1

    def _post(self, state: SinkState) -> None:
        raw = self._body()
        if self.path == "/_sink/faults":
            with state.lock:
                state.faults.extend(json.loads(raw or b"[]"))
            self._reply(200, state.stats())
            return
        if self.path == "/_sink/reset":
            with state.lock:
                state.accepted.clear()
                state.faults.clear()
                state.requests = 0
            self._reply(200, state.stats())
            return
        if self.path != "/v3/mail/send":
            self._reply(404, {"errors": [{"message": "not found", "field": None}]})
            return
        with state.lock:
            state.requests += 1
            fault = state.faults.popleft() if state.faults else None
        if fault and "slow" not in fault:
            if "stall" in fault:
                with state.lock:
                    state.stalled.update(_delivery_ids(raw))
                time.sleep(float(fault["stall"]))
                self.close_connection = True
                return
            status = int(fault["status"])
            headers = {}
            if status == 429:
                reset_in = float(fault.get("reset_in", 1))
                headers = {
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time() + reset_in + 0.999)),
                }
            message = {
                400: "Bad Request",
                401: "The provided authorization grant is invalid, expired, or revoked",
                403: "access forbidden",
                429: "too many requests",
            }.get(status, "internal error")
            self._reply(status, {"errors": [{"message": message, "field": None, "help": None}]}, headers)
            return
        if state.api_key is not None and self.headers.get("Authorization") != f"Bearer {state.api_key}":
            self._reply(
                401,
                {
                    "errors": [
                        {
                            "message": "The provided authorization grant is invalid, expired, or revoked",
                            "field": None,
                            "help": None,
                        }
                    ]
                },
            )
            return
        self._accept(state, raw, delay=float(fault["slow"]) if fault else 0.0)

    def _accept(self, state: SinkState, raw: bytes, delay: float = 0.0) -> None:
        """Validate a Mail Send body and record it (202), or refuse it (400); answer after `delay` seconds."""
        try:
            body = json.loads(raw)
        except ValueError:
            self._reply(400, {"errors": [{"message": "Bad Request", "field": None, "help": None}]})
            return
        errors = validate_mail_send(body)
        if errors:
            self._reply(400, {"errors": errors})
            return
        with state.lock:
            message_id = f"sink{next(state.ids):08d}"
            recipients = [
                (p["to"][0]["email"], str((p.get("custom_args") or {}).get("delivery_id", "")))
                for p in body["personalizations"]
            ]
            state.accepted.append(
                Accepted(message_id, recipients, body if state.keep_payloads else None, time.monotonic())
            )
            if state.faults_after is not None and len(state.accepted) >= state.faults_after[0]:
                state.faults.extend(state.faults_after[1])
                state.faults_after = None
            if state.record_path is not None:
                with state.record_path.open("a", encoding="utf-8") as handle:
                    for email, delivery_id in recipients:
                        handle.write(f"{message_id}\t{delivery_id}\t{email}\n")
        if delay:
            time.sleep(delay)
        try:
            self._reply(202, None, {"X-Message-Id": message_id})
        except OSError:  # the client stopped waiting: the request was accepted all the same
            self.close_connection = True


POLL_SECONDS = 0.02  # how often the serving thread looks for a shutdown request


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    state: SinkState


class SendGridSink:
    """The sink, started in a background thread of this process (`with SendGridSink() as sink:`)."""

    def __init__(
        self, *, port: int = 0, api_key: str | None = None, keep_payloads: bool = True, record_path: Path | None = None
    ) -> None:
        self.server = _SinkServer(("127.0.0.1", port), _Handler)
        self.server.state = SinkState(api_key=api_key, keep_payloads=keep_payloads, record_path=record_path)
        # Polled every 20 ms, not socketserver's 0.5 s: stopping the sink (`shutdown`) waits for the next poll,
        # and a test suite starts and stops one per sending test.
        serve = functools.partial(self.server.serve_forever, poll_interval=POLL_SECONDS)
        self._thread = threading.Thread(target=serve, name="sendgrid-sink", daemon=True)

    @property
    def state(self) -> SinkState:
        return self.server.state

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(self, *faults: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.faults.extend(faults)

    def fail_after(self, accepted: int, *faults: dict[str, Any]) -> None:
        """Queue `faults` the moment `accepted` requests have been accepted (an outage at a known point)."""
        with self.state.lock:
            self.state.faults_after = (accepted, list(faults))

    @property
    def accepted(self) -> list[Accepted]:
        return list(self.state.accepted)

    def idle(self) -> bool:
        """Whether no request is being handled (what a killed client had sent is accepted, or refused, by now)."""
        with self.state.lock:
            return self.state.handling == 0

    def accepted_delivery_ids(self) -> list[str]:
        return [delivery_id for a in self.accepted for _, delivery_id in a.recipients]

    def start(self) -> SendGridSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> SendGridSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="A SendGrid-compatible Mail Send sink on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--api-key", default=None, help="require this bearer key (default: any)")
    parser.add_argument("--record", type=Path, default=None, help="append accepted recipients to this file")
    parser.add_argument("--keep-payloads", action="store_true", help="keep full request bodies in memory")
    args = parser.parse_args()
    sink = SendGridSink(port=args.port, api_key=args.api_key, keep_payloads=args.keep_payloads, record_path=args.record)
    print(f"sendgrid sink listening on {sink.url}", flush=True)
    # A 1000-recipient body parses into thousands of small dicts, alive until it is checked: with the
    # default thresholds the cyclic collector rescanned them many times per request.
    with contextlib.suppress(KeyboardInterrupt), collect_seldom():
        sink.server.serve_forever()


if __name__ == "__main__":
    main()
