"""The signup form's submissions, taken from the queue the form fills, and their confirmation emails sent
(never in the web request).

Contract: `process_signups(engine, workspace, secret)` first stores the signup request of each received
submission (`audience.signup.take_received`, BATCH at a time, each once), then sends the queued
confirmations (`send_queued_confirmations`) and returns its counts. The scheduler's `confirmations` job
calls it every few seconds.

`send_queued_confirmations(engine, workspace, secret)` claims the queued confirmations
(`store.confirmations.claim`: each is claimed by one sender only, so each goes out once), renders the
workspace's `emails/confirm` template once, and sends each as its own request through the configured
backend (one that the provider would refuse as it stands is `failed` and never costs the others), never
through a campaign or the ledger. Suppression is
checked again at sending: an address suppressed since it signed up is `skipped`. The provider's answer
settles each row: `sent`, `failed` (refused), `unknown` (it may have arrived: not sent again), or back to
`queued` when the provider was unavailable and nothing went out (the next run tries again), as are the rows
of a run stopped by an error before their request was posted. Returns the count per state. Logs carry
counts only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlalchemy import Engine

from needlecast import signing
from needlecast.audience.consent import CONFIRMATION_TTL_SECONDS
from needlecast.audience.signup import CONFIRM_PREFIX, take_received
from needlecast.config import Workspace
from needlecast.content.loader import load_article, load_vocabulary_for
from needlecast.delivery import get_backend
from needlecast.delivery.base import DEFERRED, FAILED, SENT, Backend, Batch, Outcome, Recipient
from needlecast.errors import PayloadError
from needlecast.store import confirmations as queue
from needlecast.store.helpers import utcnow
from needlecast.templating.context import email_context
from needlecast.templating.environment import build_environment
from needlecast.templating.recipient import RecipientValues, link_base
from needlecast.templating.render import RenderedEmail, render_email

CONFIRM_TEMPLATE = "emails/confirm"
BATCH = 100  # confirmations claimed per round


def _render(workspace: Workspace, secret: bytes) -> tuple[RenderedEmail, RecipientValues]:
    settings = workspace.settings
    vocabulary = load_vocabulary_for(workspace)
    rendered = render_email(
        build_environment(workspace.templates_dir),
        CONFIRM_TEMPLATE,
        email_context(load_article(workspace, vocabulary), vocabulary, settings.clinic, "general"),
    )
    values = RecipientValues(settings, secret, "signup")
    return values.with_links(rendered), values


def _batch(
    workspace: Workspace, secret: bytes, rendered: RenderedEmail, values: RecipientValues, row: queue.Claimed
) -> Batch:
    token = signing.sign(
        secret,
        signing.CONFIRM,
        row.contact_id,
        f"{CONFIRM_PREFIX}{row.request_id}",
        ttl_seconds=CONFIRMATION_TTL_SECONDS,
    )
    person, unsubscribe = values.for_request(row.contact_id, row.first_name or None)
    person["confirm_url"] = f"{link_base(workspace.settings)}/confirm/{token}"
    clinic = workspace.settings.clinic
    return Batch(
        "signup",
        "confirm",
        "general",
        rendered,
        clinic.sender_email,
        clinic.sender_name,
        (Recipient("", row.email, person, unsubscribe),),
        reply_to=clinic.reply_to,
    )


def _state(outcomes: Sequence[Outcome]) -> str:
    outcome = outcomes[0] if outcomes else None
    if outcome is None or (outcome.status == DEFERRED and not outcome.ambiguous):
        return queue.QUEUED  # nothing went out: the next run tries again
    if outcome.status == SENT:
        return queue.SENT
    if outcome.status == FAILED:
        return queue.FAILED
    return queue.UNKNOWN


def _send(backend: Backend, batches: dict[int, Batch], states: dict[int, str]) -> None:
    """Send each request's batch, writing its state into `states` as its outcome comes back. A batch the
    provider would refuse as it stands is `failed` at once, so it never stops the others (an error in
    `send_all` stops the whole round) nor comes back to block the queue."""
    for request_id, batch in list(batches.items()):
        try:
            backend.prepare(batch)
        except PayloadError:
            states[request_id] = queue.FAILED
            del batches[request_id]
    by_batch = {id(batch): request_id for request_id, batch in batches.items()}

    def record(batch: Batch, outcomes: list[Outcome]) -> None:
        states[by_batch[id(batch)]] = _state(outcomes)

    backend.send_all(batches.values(), record)


def send_queued_confirmations(engine: Engine, workspace: Workspace, secret: bytes) -> dict[str, int]:
    done: Counter[str] = Counter()
    message: tuple[RenderedEmail, RecipientValues] | None = None
    backend: Backend | None = None
    while True:
        with engine.begin() as conn:
            claimed = queue.claim(conn, utcnow(), BATCH)
        if not claimed:
            return dict(done)
        states = {row.request_id: queue.SKIPPED for row in claimed if row.suppressed}
        try:
            if backend is None or message is None:
                backend = get_backend(workspace)
                backend.check()
                message = _render(workspace, secret)
            _send(
                backend,
                {row.request_id: _batch(workspace, secret, *message, row) for row in claimed if not row.suppressed},
                states,
            )
        finally:  # a row whose request was never posted goes back to the queue, whatever stopped the run
            for row in claimed:
                states.setdefault(row.request_id, queue.QUEUED)
            with engine.begin() as conn:
                queue.settle(conn, states, utcnow())
            done.update(states.values())
        if len(claimed) < BATCH or queue.QUEUED in states.values():
            return dict(done)  # the queue is empty, or the provider is unavailable: the next run goes on


def process_signups(engine: Engine, workspace: Workspace, secret: bytes) -> dict[str, int]:
    while True:
        with engine.begin() as conn:
            taken = take_received(conn, workspace.settings.signup, utcnow(), BATCH)
        if taken < BATCH:
            break
    return send_queued_confirmations(engine, workspace, secret)
