"""The delivery interface: a backend takes batches and reports an outcome per recipient.

A `Batch` is one rendered step variant and at most 1000 recipients, each with its token values and our own
delivery id. A backend owns the send loop (`send_all`): several requests in flight, a rate limit (requests
per second and emails per hour), retries with exponential backoff and jitter for what is worth retrying,
and one `Outcome` per recipient:

- `sent`: the provider accepted the request (202); `message_id` is its id.
- `failed`: the provider rejected the request (400); `error` holds its reasons. Retrying would not help.
- `deferred`: not accepted. `ambiguous` tells whether the request may have reached the provider (a read
  timeout or a dropped connection after the request went out): if not (5xx, refused connection, every retry
  spent), the rows can simply be queued again; if so, they are `unknown` until webhook events settle them.
  An ambiguous failure is never retried here: SendGrid's Mail Send has no idempotency key, so posting the
  request again could deliver every email of it twice. Only failures that prove the provider did not take
  the request (a 5xx, a 429, a connection refused before anything was sent) are retried.

A rejected API key (401/403) raises `ProviderAuthError` out of `send_all` and stops the loop: no outcome is
reported for anything, because nothing was sent. `check()` raises `ConfigurationError` for a backend that
cannot work (no API key, invalid sender) before the caller claims any row.
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from needlecast.config import DeliverySettings
from needlecast.errors import (
    DeliveryError,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    TransportError,
)
from needlecast.templating.render import RenderedEmail

MAX_RECIPIENTS_PER_REQUEST = 1000


class Recipient(NamedTuple):
    """One recipient of a batch (a tuple: a million of them are made for a large send)."""

    delivery_id: str
    email: str
    values: dict[str, str]  # token name -> value (both spellings are derived when the payload is built)
    unsubscribe_url: str


@dataclass(frozen=True)
class Batch:
    campaign_id: str
    step_id: str
    variant: str
    message: RenderedEmail
    sender_email: str
    sender_name: str
    recipients: tuple[Recipient, ...]
    reply_to: str = ""
    send_at: datetime | None = None
    sendgrid_batch_id: str = ""
    arm: str = ""  # A/B arm of the subject ("" without a test)
    request_id: str = ""  # the id of this request's intent in the ledger ("" outside a dispatch)

    def __post_init__(self) -> None:
        if not 0 < len(self.recipients) <= MAX_RECIPIENTS_PER_REQUEST:
            raise ValueError(f"a batch holds 1 to {MAX_RECIPIENTS_PER_REQUEST} recipients, not {len(self.recipients)}")


SENT, FAILED, DEFERRED = "sent", "failed", "deferred"


class Outcome(NamedTuple):
    delivery_id: str
    status: str
    message_id: str = ""
    error: str = ""
    ambiguous: bool = False


@dataclass
class Attempts:
    """What happened to one batch across its attempts (for outcomes and logs)."""

    count: int = 0
    ambiguous: bool = False
    last_error: str = ""
    rate_limited: int = 0


class Limiter(Protocol):
    """Paces requests: `acquire(emails)` returns when a request of `emails` recipients may go."""

    def acquire(self, emails: int) -> None: ...


BeforePost = Callable[["Batch"], None]
Observer = Callable[[float, str], None]


class BackendFactory(Protocol):
    """Builds a backend with its limiter and its before-post hook (e.g. `delivery.backend_factory`, or a
    `functools.partial` of a backend class). The dispatcher builds one per dispatch, with the fleet's limiter
    and the dispatch's intent writer."""

    def __call__(self, *, limiter: Limiter | None = None, before_post: BeforePost | None = None) -> Backend: ...


class RateLimiter:
    """Requests per second and emails per hour, shared by this process's sending threads (0 disables a
    limit). For a fleet of senders the limits live in the database instead (`store.ratelimit`)."""

    def __init__(
        self,
        requests_per_second: float,
        emails_per_hour: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self._per_email = 3600.0 / emails_per_hour if emails_per_hour > 0 else 0.0
        self._next_request = 0.0
        self._next_email = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self, emails: int) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next_request, self._next_email)
            self._next_request = start + self._interval
            self._next_email = max(self._next_email, now) + emails * self._per_email
        if start > now:
            self._sleep(start - now)


@dataclass
class RetryPolicy:
    max_retries: int = 5
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    max_rate_limit_waits: int = 100  # a 429 is the provider pacing us, not a failure: wait much longer
    sleep: Callable[[float], None] = field(default=time.sleep)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of base * 2^attempt, capped."""
        ceiling = min(self.max_seconds, self.base_seconds * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)


class Backend(ABC):
    """Base class: the send loop. Subclasses build and post one request per batch."""

    name = "base"

    def __init__(
        self,
        settings: DeliverySettings,
        *,
        retry: RetryPolicy | None = None,
        limiter: Limiter | None = None,
        before_post: BeforePost | None = None,
        observer: Observer | None = None,
    ) -> None:
        """`limiter`: paces the requests (default: this process's `RateLimiter` from the settings; a fleet's
        limiter lives in the database). `before_post`: called in the sending thread just before a batch's
        first attempt is posted (after the limiter's wait): the dispatcher records the request's intent
        there; it may raise to refuse the post (the batch then reports nothing, like a refused API key).
        `observer`: called after every attempt with its seconds and its HTTP status ("transport" for no
        answer), from the sending threads (metrics). All three are fixed for the backend's life."""
        self.settings = settings
        self.retry = retry or RetryPolicy(
            settings.max_retries, settings.backoff_base_seconds, settings.backoff_max_seconds
        )
        self.limiter: Limiter = limiter or RateLimiter(settings.requests_per_second, settings.emails_per_hour)
        self.before_post = before_post
        self.observer = observer
        self.prepare_seconds = 0.0  # spent in `prepare` by `send_all`, for the caller's stage timings

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise `ConfigurationError` when this backend cannot send (called before claiming rows)."""

    def prepare(self, batch: Batch) -> Any:
        """The request `post` sends for `batch`, built in the thread that calls `send_all`. Raises
        `PayloadError` for a batch the provider would refuse.

        Building a request is CPU work and sending it is waiting: done here, it keeps the sending threads
        from competing for the interpreter with the thread that claims, prepares and marks (which holds
        the database's write turn meanwhile). The default builds nothing."""
        return None

    @abstractmethod
    def post(self, batch: Batch, request: Any) -> str:
        """Send `request` (from `prepare`) for `batch`; return the provider's message id. Raises
        `DeliveryError`s."""

    def send_one(self, batch: Batch, request: Any = None) -> list[Outcome]:
        """One batch with retries (`request`: from `prepare`, built here when not given); the outcome of
        each recipient."""
        if request is None:
            request = self.prepare(batch)
        attempts = Attempts()
        announced = False
        while True:
            self.limiter.acquire(len(batch.recipients))
            if not announced and self.before_post is not None:
                self.before_post(batch)  # the request's intent, written just before it first goes out
            announced = True
            attempts.count += 1
            started = time.perf_counter()
            try:
                message_id = self.post(batch, request)
                self._observe(started, "202")
                return [Outcome(r.delivery_id, SENT, message_id) for r in batch.recipients]
            except ProviderError as err:
                self._observe(started, str(err.status))
                if isinstance(err, RequestRejected):
                    return [Outcome(r.delivery_id, FAILED, error=str(err)) for r in batch.recipients]
                if isinstance(err, ProviderUnavailable):
                    attempts.last_error = str(err)
                    if attempts.count > self.retry.max_retries:
                        break
                    self.retry.sleep(self.retry.backoff(attempts.count - 1))
                    continue
                if not isinstance(err, RateLimited):
                    raise
                attempts.rate_limited += 1
                attempts.last_error = str(err)
                if attempts.rate_limited > self.retry.max_rate_limit_waits:
                    break
                self.retry.sleep(err.retry_after)
                attempts.count -= 1  # pacing is not a failed attempt
                continue
            except TransportError as err:
                self._observe(started, "transport")
                attempts.last_error = str(err)
                if err.ambiguous:  # it may have arrived: posting it again could send it twice
                    attempts.ambiguous = True
                    break
                if attempts.count > self.retry.max_retries:
                    break
                self.retry.sleep(self.retry.backoff(attempts.count - 1))
        return [
            Outcome(r.delivery_id, DEFERRED, error=attempts.last_error, ambiguous=attempts.ambiguous)
            for r in batch.recipients
        ]

    def _observe(self, started: float, status: str) -> None:
        if self.observer is not None:
            self.observer(time.perf_counter() - started, status)

    def send_all(self, batches: Iterable[Batch], on_outcomes: Callable[[Batch, list[Outcome]], None]) -> None:
        """Send every batch, `max_in_flight` at a time, calling `on_outcomes` (in this thread) as each ends.

        Requests are prepared in this thread (`prepare`) and handed to worker threads, at most
        `2 * max_in_flight` ahead. Any error (a `ProviderAuthError`, a batch that cannot be prepared, or an
        error from `batches` itself) stops the loop: no further batch is taken from `batches`, every batch
        already handed over is still sent and its outcomes reported, and then the error propagates. A
        handed-over batch whose own send raised (a second `ProviderAuthError`) reports nothing: its rows were
        not sent, and its caller releases them.
        """
        workers = max(1, self.settings.max_in_flight)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"send-{self.name}") as pool:
            pending: dict[Future[list[Outcome]], Batch] = {}
            try:
                iterator = iter(batches)
                exhausted = False
                while pending or not exhausted:
                    while not exhausted and len(pending) < workers * 2:
                        batch = next(iterator, None)
                        if batch is None:
                            exhausted = True
                            break
                        started = time.perf_counter()
                        request = self.prepare(batch)
                        self.prepare_seconds += time.perf_counter() - started
                        pending[pool.submit(self.send_one, batch, request)] = batch
                    if not pending:
                        break
                    done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        batch = pending.pop(future)
                        error = future.exception()
                        if error is not None:
                            raise error
                        on_outcomes(batch, future.result())
            except BaseException:
                # What was handed over is sent (a worker may already be posting it): wait, and report it,
                # so that its rows are recorded instead of being released and sent a second time.
                wait(pending)
                for other, other_batch in pending.items():
                    if other.exception() is None:
                        on_outcomes(other_batch, other.result())
                raise


__all__ = [
    "Backend",
    "BackendFactory",
    "Batch",
    "BeforePost",
    "DeliveryError",
    "Outcome",
    "RateLimiter",
    "Recipient",
    "RetryPolicy",
]
