"""One delivery from a booking system, end to end: verify -> parse (-> fetch, for Acuity) -> store -> audit.

Contract:
- `BookingHooks.from_settings(settings, engine, environ)` holds what the hooks need: the store, the settings,
  and each enabled provider's secret from the environment (a `ConfigurationError` naming the variable when
  one is missing).
- `verify(hooks, provider, headers, body, now)` raises `WebhookRejected` unless the delivery is signed by the
  provider (see `needlecast.bookings.providers`); nothing is read or stored before it passes.
- `take(hooks, provider, body, now)` parses the delivery, fetches an Acuity appointment's details from its
  API (outside any transaction), then stores the bookings and writes one audit entry (`bookings.received`,
  by the system actor `bookings:<provider>`, with counts and appointment type ids only) in one transaction.
  `EventFormatError` for a body that is not the provider's format; `BookingSystemUnavailable` when Acuity's
  API fails (nothing is stored: the provider's retry brings it again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor
from needlecast.bookings import providers as p
from needlecast.bookings.record import BookingResult, record_bookings
from needlecast.config.bookings import BookingSettings, secret_of
from needlecast.errors import WebhookRejected


@dataclass(frozen=True)
class BookingHooks:
    engine: Engine
    settings: BookingSettings
    secrets: dict[str, bytes]

    @classmethod
    def from_settings(cls, settings: BookingSettings, engine: Engine, environ: Mapping[str, str]) -> BookingHooks:
        secrets = {name: secret_of(settings, name, dict(environ)) for name in settings.providers}
        return cls(engine, settings, secrets)


def verify(hooks: BookingHooks, provider: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """Whether the delivery is the provider's own (see the module contract)."""
    secret = hooks.secrets[provider]
    if provider == "calendly":
        tolerance = hooks.settings.calendly_tolerance_seconds
        p.verify_calendly(secret, headers.get(p.CALENDLY_HEADER), body, now, tolerance)
    elif provider == "acuity":
        p.verify_acuity(secret, headers.get(p.ACUITY_HEADER), body)
    elif provider == "generic":
        p.verify_generic(secret, headers.get(hooks.settings.generic_signature_header), body)
    else:  # pragma: no cover - the routes answer only the enabled providers
        raise WebhookRejected("no such booking provider")


@dataclass
class Taken:
    result: BookingResult
    ignored: int = 0  # notices that are no booking change (Acuity's "changed", "order.completed")


def _parse(
    hooks: BookingHooks, provider: str, body: bytes, now: datetime
) -> tuple[list[p.Booking | p.BookingProblem], int]:
    settings = hooks.settings
    if provider == "calendly":
        return p.parse_calendly(body), 0
    if provider == "generic":
        return p.parse_generic(body, settings.generic), 0
    notice = p.acuity_notice(body)
    if notice.action not in p.ACUITY_ACTIONS:
        return [], 1
    details = p.fetch_acuity(
        settings.acuity_base_url,
        settings.acuity_user_id.strip(),
        hooks.secrets["acuity"],
        notice.appointment_id,
        settings.acuity_timeout_seconds,
    )
    if details is None:
        return [p.BookingProblem(0, "id", "Acuity has no appointment with this id")], 0
    return [p.acuity_booking(notice, details, now)], 0


def take(hooks: BookingHooks, provider: str, body: bytes, now: datetime | None = None) -> Taken:
    """Parse, fetch, store and audit one verified delivery (see the module contract)."""
    moment = now or datetime.now(UTC)
    items, ignored = _parse(hooks, provider, body, moment)
    with hooks.engine.begin() as conn:
        result = record_bookings(conn, items, hooks.settings.treatments, f"bookings:{provider}", moment)
        audit.record(
            conn,
            Actor("system", f"bookings:{provider}"),
            "bookings.received",
            f"bookings:{provider}",
            **result.counts(),
        )
    return Taken(result, ignored)
