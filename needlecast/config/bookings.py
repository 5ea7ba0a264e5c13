"""`[bookings]` in needlecast.toml: which booking systems may post to `/hooks/bookings/<provider>`.

Contract: `load_booking_settings(path, raw)` turns the `[bookings]` table into `BookingSettings` (by the
shared loader, `config.tables.load_table`, with a reader for each nested key), or raises a
`ConfigurationError` naming the file, the key and the fix. Secrets are never in the file: the file names the
environment variables that hold them (`*_env` keys), read by `secret_of` when the web app starts, so a
provider that is on without its secret stops the app with the variable to set.

    [bookings]
    providers = ["calendly", "acuity", "generic"]      # the hooks that answer; the others are 404
    calendly_signing_key_env = "CALENDLY_WEBHOOK_SIGNING_KEY"
    calendly_tolerance_seconds = 180                    # how old a signed `t=` may be (replays)
    acuity_base_url = "https://acuityscheduling.com/api/v1"
    acuity_user_id = "12345"
    acuity_api_key_env = "ACUITY_API_KEY"
    generic_secret_env = "NEEDLECAST_BOOKINGS_SECRET"
    generic_signature_header = "X-Needlecast-Signature"

    [bookings.treatments]    # the booking system's appointment type (id, URI or name) -> treatment
    "5532921" = "microneedling"

    [bookings.generic]       # where each value is in a generic system's JSON (dotted paths)
    items = "appointments"   # the list of items ("" when the body is one item or a list)
    id = "id"
    email = "client.email"
    kind = "status"
    occurred_at = "updated_at"
    starts_at = "start"
    appointment_id = "appointment_id"
    appointment_type = "service"
    [bookings.generic.kinds] # the system's own words -> booked, rescheduled, cancelled_booking, attended, no_show
    Booked = "booked"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from needlecast.config.tables import Reader, coerce, load_table
from needlecast.errors import ConfigurationError

PROVIDERS = ("calendly", "acuity", "generic")
KINDS = ("booked", "rescheduled", "cancelled_booking", "attended", "no_show")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
TREATMENT = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
HEADER = re.compile(r"^[A-Za-z0-9-]{1,100}$")
PATH = re.compile(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class GenericMapping:
    """Where a generic system's values are (dotted paths into each item), and its words for our kinds."""

    items: str = ""
    id: str = ""
    email: str = ""
    kind: str = ""
    occurred_at: str = ""
    starts_at: str = ""
    appointment_id: str = ""
    appointment_type: str = ""
    kinds: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BookingSettings:
    providers: tuple[str, ...] = ()
    max_body_bytes: int = 1_000_000
    calendly_signing_key_env: str = "CALENDLY_WEBHOOK_SIGNING_KEY"
    calendly_tolerance_seconds: int = 180
    acuity_base_url: str = "https://acuityscheduling.com/api/v1"
    acuity_user_id: str = ""
    acuity_api_key_env: str = "ACUITY_API_KEY"
    acuity_timeout_seconds: float = 10.0
    generic_secret_env: str = "NEEDLECAST_BOOKINGS_SECRET"
    generic_signature_header: str = "X-Needlecast-Signature"
    treatments: dict[str, str] = field(default_factory=dict)
    generic: GenericMapping = field(default_factory=GenericMapping)


_GENERIC_PATHS = ("items", "id", "email", "kind", "occurred_at", "starts_at", "appointment_id", "appointment_type")
_GENERIC_REQUIRED = ("id", "email", "kind", "occurred_at")


def _fail(path: Path, key: str, fix: str) -> ConfigurationError:
    return ConfigurationError(f"{path}: [bookings] {key} {fix}")


def _text_table(path: Path, key: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise _fail(path, key, 'must be a table of text = text, like "5532921" = "microneedling"')
    return dict(raw)


def _providers(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, key, 'must be a list of text, like ["calendly", "acuity"]')
    for name in value:
        if name not in PROVIDERS:
            raise _fail(path, key, f"names '{name}', which is not one of {', '.join(PROVIDERS)}")
    return tuple(dict.fromkeys(value))


def _treatments(path: Path, key: str, value: Any) -> dict[str, str]:
    treatments = _text_table(path, key, value)
    for source, name in treatments.items():
        if not TREATMENT.match(name):
            raise _fail(path, f"{key}.{source}", f"must be a treatment name of lower-case letters, not {name!r}")
    return treatments


def _generic_path(path: Path, key: str, value: Any) -> str:
    text = coerce(path, "bookings", f"generic.{key}", value, str)
    if text and not PATH.match(text):
        raise _fail(path, f"generic.{key}", f'must be a dotted path such as "client.email", not {text!r}')
    return str(text)


def _generic_kinds(path: Path, key: str, value: Any) -> dict[str, str]:
    kinds = _text_table(path, f"generic.{key}", value)
    for word, kind in kinds.items():
        if kind not in KINDS:
            raise _fail(path, f"generic.{key}.{word}", f"must be one of {', '.join(KINDS)}, not {kind!r}")
    return kinds


def _generic(path: Path, key: str, raw: Any) -> GenericMapping:
    if not isinstance(raw, dict):
        raise _fail(path, key, 'must be a table of field paths, like email = "client.email"')
    readers: dict[str, Reader] = {name: partial(_generic_path, path) for name in _GENERIC_PATHS}
    readers["kinds"] = partial(_generic_kinds, path)
    return load_table(path, "bookings.generic", GenericMapping, raw, readers=readers)


def load_booking_settings(path: Path, raw: Any) -> BookingSettings:
    """The `[bookings]` table, checked (see the module contract)."""
    readers = {name: partial(read, path) for name, read in _NESTED.items()}
    settings = load_table(path, "bookings", BookingSettings, raw, readers=readers)
    _check(path, settings)
    return settings


# The keys read by a reader of their own (`config.tables`); every other key is read by its field's type.
_NESTED = {"providers": _providers, "treatments": _treatments, "generic": _generic}


def _check(path: Path, settings: BookingSettings) -> None:
    for key in ("calendly_signing_key_env", "acuity_api_key_env", "generic_secret_env"):
        if not ENV_NAME.match(getattr(settings, key)):
            raise _fail(path, key, "must name an environment variable, like CALENDLY_WEBHOOK_SIGNING_KEY")
    if not HEADER.match(settings.generic_signature_header):
        raise _fail(path, "generic_signature_header", "must be a header name such as X-Needlecast-Signature")
    if settings.max_body_bytes < 1024:
        raise _fail(path, "max_body_bytes", "must be at least 1024")
    if not 10 <= settings.calendly_tolerance_seconds <= 3600:
        raise _fail(path, "calendly_tolerance_seconds", "must be from 10 to 3600 seconds (Calendly suggests 180)")
    if not 0.5 <= settings.acuity_timeout_seconds <= 120:
        raise _fail(path, "acuity_timeout_seconds", "must be from 0.5 to 120 seconds")
    if "acuity" in settings.providers:
        url = urlsplit(settings.acuity_base_url)
        loopback = url.scheme == "http" and url.hostname in LOOPBACK
        if not (url.scheme == "https" and url.hostname) and not loopback:
            raise _fail(
                path,
                "acuity_base_url",
                'must be an https:// address such as "https://acuityscheduling.com/api/v1" (the API key is sent to it)',
            )
        if not settings.acuity_user_id.strip().isdigit():
            raise _fail(path, "acuity_user_id", "must be your Acuity user id (a number, under Integrations > API)")
    if "generic" in settings.providers:
        for key in _GENERIC_REQUIRED:
            if not getattr(settings.generic, key):
                raise _fail(path, f"generic.{key}", "is needed: the path of that value in your system's JSON")
        if not settings.generic.kinds:
            raise _fail(path, "generic.kinds", 'is needed: your system\'s words for each kind, like Booked = "booked"')


def secret_of(settings: BookingSettings, provider: str, environ: dict[str, str]) -> bytes:
    """The provider's secret from the environment variable the settings name; a `ConfigurationError` naming
    the variable when it is unset (a hook that cannot check signatures must not take anything)."""
    name = {
        "calendly": settings.calendly_signing_key_env,
        "acuity": settings.acuity_api_key_env,
        "generic": settings.generic_secret_env,
    }[provider]
    value = environ.get(name, "")
    if not value:
        raise ConfigurationError(
            f"[bookings] providers includes {provider}, but the environment variable {name} is not set: set it "
            f"to the {'API key' if provider == 'acuity' else 'signing secret'} (or take {provider} out of providers)"
        )
    return value.encode()
