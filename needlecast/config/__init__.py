"""Settings: `needlecast.toml` in the workspace, plus the environment.

Contract:
- `find_workspace(start)` walks up from `start` to the first folder holding `needlecast.toml`
  (or takes `NEEDLECAST_WORKSPACE`); it raises `WorkspaceNotFound` with the command that creates one.
- `load_settings(workspace)` reads the TOML file into typed sections. An unknown section or key, or a value
  of the wrong type, is a `ConfigurationError` that names the file, the key and the expected type.
- Secrets (the SendGrid API key, the signing secret, the database password inside a URL) come only from the
  environment, never from the TOML file.

Every flat table is read by one loader (`config.tables.load_table`: unknown keys, types, choices, floors). A
section with nested tables has a module of its own beside this one (`config.bookings`: `[bookings]`, read by
the same loader with a reader for each nested key; `config.deliverability`: `[deliverability]`, with its
warm-up table and bounded thresholds); the package imports nothing of needlecast's but `errors`, so every
other package may read its settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from needlecast.config.bookings import BookingSettings, load_booking_settings
from needlecast.config.deliverability import DeliverabilitySettings, load_deliverability_settings
from needlecast.config.tables import load_table
from needlecast.errors import ConfigurationError, WorkspaceNotFound

CONFIG_FILE = "needlecast.toml"
STATE_DIR = ".needlecast"
# Used only when NEEDLECAST_SECRET is unset and the backend cannot reach anyone (outbox): links signed with
# it are forgeable, which is harmless for a dry run and refused for real sending (see `signing_secret`).
DEV_SECRET = "needlecast-insecure-development-secret"
T = TypeVar("T")


@dataclass(frozen=True)
class ClinicSettings:
    name: str = "CHANGE ME: clinic name"
    postal_address: str = "CHANGE ME: clinic postal address"
    website: str = "https://CHANGE-ME.example.com"
    booking_url: str = "https://CHANGE-ME.example.com/book"
    sender_email: str = "change-me@example.com"
    sender_name: str = "CHANGE ME: sender name"
    reply_to: str = ""
    unsubscribe_mailto: str = ""
    language: str = "en"
    logo_url: str = ""  # an https:// image shown in the email header ("" for none)
    time_zone: str = "Europe/London"  # the clinic's own zone: reports and pages show times in it


@dataclass(frozen=True)
class ContentSettings:
    article: str = "content/microneedling.txt"
    vocabulary: str = "content/vocabulary.yaml"
    overrides: str = "content/tags.yaml"


@dataclass(frozen=True)
class TemplateSettings:
    first_name_fallback: str = "there"


@dataclass(frozen=True)
class DeliverySettings:
    backend: str = "outbox"
    api_host: str = "https://api.sendgrid.com"
    timeout_seconds: float = 10.0
    max_in_flight: int = 4
    requests_per_second: float = 10.0
    emails_per_hour: int = 0  # 0: no hourly cap
    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    sandbox_mode: bool = False
    asm_group_id: int = 0  # 0: no unsubscribe group
    batch_size: int = 1000
    # Extra processes that dispatch a large send alongside the job's own (claims keep them disjoint). They
    # read the workspace and environment afresh, so they only run for sends of at least `parallel_from` rows.
    sender_processes: int = 1
    parallel_from: int = 50_000
    # Scale-out (README "Workers"): a sender whose heartbeat is older than this is dead and its rows are
    # recovered; an unknown request with no event after this long, while later ones have events, is lost.
    lease_seconds: float = 30.0
    reconcile_after_minutes: float = 30.0


@dataclass(frozen=True)
class TrackingSettings:
    public_base_url: str = "https://CHANGE-ME.example.com/nc"
    # SendGrid's Event Webhook verification key (base64 DER, public). SENDGRID_WEBHOOK_PUBLIC_KEY overrides it.
    webhook_public_key: str = ""
    webhook_max_age_seconds: int = 600
    max_body_bytes: int = 5_000_000
    # Without a verification key, SendGrid's events are refused (403) unless the backend is the outbox or
    # this is set on purpose: unsigned events could settle unknown rows or suppress real leads.
    accept_unsigned_events: bool = False


@dataclass(frozen=True)
class ScheduleSettings:
    quiet_hours: str = "21:00-08:00"
    max_per_day: int = 1
    max_per_week: int = 3
    sweep_interval_seconds: int = 300
    max_consecutive_failures: int = 5
    takeover_seconds: float = 15.0  # a standby scheduler leads within this long after the leader's connection dies


@dataclass(frozen=True)
class ConsoleSettings:
    """The web console: sessions, the log-in throttle, and who receives test sends."""

    test_recipients: tuple[str, ...] = ()  # seed addresses for "send a test" (never the audience)
    session_idle_minutes: int = 60
    session_hours: int = 12
    # The log-in throttle (README, "Logging in"): refused per (account, address) and per address, only
    # ever paced per account, and never for an address that logged in to the account before.
    login_refuse_after: int = 10  # attempts for an account from one address within 15 minutes (then 429)
    login_address_refuse_after: int = 30  # attempts from one address, for any accounts, within 15 minutes
    login_slow_after: int = 3  # attempts on an account from new addresses before each waits its turn
    login_slow_seconds: float = 1.0  # the first wait; it doubles with each further attempt
    login_slow_max_seconds: float = 60.0  # the longest wait


@dataclass(frozen=True)
class SignupSettings:
    """The signup form: the consent wording shown (and its version, stored with each consent), double opt-in,
    and the limits that keep bots out."""

    marketing_wording: str = "Yes, email me news and advice about skin treatments. I can unsubscribe at any time."
    marketing_wording_version: str = "marketing-v1"
    concern_wording: str = (
        "Yes, you may use the skin concerns I chose to pick the content you send me (this is health data; "
        "without it I get your general emails)."
    )
    concern_wording_version: str = "concern-v1"
    double_opt_in: bool = True
    per_address_per_hour: int = 3
    per_ip_per_hour: int = 20
    max_body_bytes: int = 16_384


@dataclass(frozen=True)
class ApiSettings:
    requests_per_minute: int = 600  # per key
    max_body_bytes: int = 2_000_000


@dataclass(frozen=True)
class AttributionSettings:
    """Which contact events are conversions, and how long after an email one is credited to it."""

    conversions: tuple[str, ...] = ("booked",)
    window_days: int = 7


@dataclass(frozen=True)
class ImportSettings:
    """Limits on an audience file, far above any clinic's export, that stop a hostile file early."""

    max_rows: int = 5_000_000
    max_columns: int = 500
    max_cell_chars: int = 100_000
    max_xlsx_uncompressed_bytes: int = 512 * 1024 * 1024
    max_xlsx_compression_ratio: int = 100  # uncompressed / compressed size of the sheets (zip bombs: hundreds)
    # The order of day, month and year in numeric dates (29/11/2026): "DMY", "MDY" or "YMD"; "" reads each
    # date column's order from its values (`needlecast.audience.dates`).
    date_order: str = ""


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True)
class DigestSettings:
    """The weekly digest (`reports.digest`): who gets it, and when on the clinic's clock."""

    recipients: tuple[str, ...] = ()  # none: no digest
    day: str = "monday"
    time: str = "08:00"


@dataclass(frozen=True)
class ReportSettings:
    digest: DigestSettings = field(default_factory=DigestSettings)


@dataclass(frozen=True)
class Settings:
    clinic: ClinicSettings = field(default_factory=ClinicSettings)
    content: ContentSettings = field(default_factory=ContentSettings)
    templates: TemplateSettings = field(default_factory=TemplateSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    imports: ImportSettings = field(default_factory=ImportSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    signup: SignupSettings = field(default_factory=SignupSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    attribution: AttributionSettings = field(default_factory=AttributionSettings)
    bookings: BookingSettings = field(default_factory=BookingSettings)  # nested tables: its own loader
    deliverability: DeliverabilitySettings = field(default_factory=DeliverabilitySettings)
    reports: ReportSettings = field(default_factory=ReportSettings)  # a nested table: its own loader


@dataclass(frozen=True)
class Workspace:
    """A folder a user edits: content/, templates/, audiences/, campaigns/ and needlecast.toml.

    A workspace made by `open_workspace` follows its needlecast.toml: when the file changes on disk (the
    console's settings pages write it), the next read of `settings` loads it afresh (plus the environment),
    so a running web app or sender sees the change at its next request or send, without a restart. A file
    that no longer loads keeps the last settings that did (the console never writes one; a hand edit might).
    A workspace built with given settings (tests, `dataclasses.replace` with other settings) keeps them."""

    root: Path
    settings: Settings

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def content_dir(self) -> Path:
        return self.root / "content"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def audiences_dir(self) -> Path:
        return self.root / "audiences"

    @property
    def campaigns_dir(self) -> Path:
        return self.root / "campaigns"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def state_dir(self) -> Path:
        """Machine-written state (the default SQLite file, lock files); never edited by hand."""
        return self.root / STATE_DIR

    def path(self, relative: str) -> Path:
        """A path from the config, resolved against the workspace root."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.root / candidate

    @property
    def database_url(self) -> str:
        """`NEEDLECAST_DATABASE_URL`, or a SQLite file in the workspace's state folder."""
        url = os.environ.get("NEEDLECAST_DATABASE_URL", "").strip()
        if url:
            return url
        return f"sqlite:///{(self.state_dir / 'needlecast.db').as_posix()}"


def find_workspace(start: Path | None = None) -> Path:
    """The workspace root: `NEEDLECAST_WORKSPACE`, else the nearest folder at or above `start` with a config."""
    env_root = os.environ.get("NEEDLECAST_WORKSPACE", "").strip()
    if env_root:
        root = Path(env_root).expanduser().resolve()
        if not (root / CONFIG_FILE).is_file():
            raise WorkspaceNotFound(
                f"NEEDLECAST_WORKSPACE={root} has no {CONFIG_FILE}. "
                f"Create a workspace there with: needlecast init {root}"
            )
        return root
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise WorkspaceNotFound(
        f"no {CONFIG_FILE} in {here} or any folder above it. "
        "Create a workspace with: needlecast init DIR (then cd DIR), or pass --workspace DIR."
    )


def _load_section(path: Path, name: str, cls: type[T], raw: Any) -> T:
    """A flat section (or `reports.digest`) by the shared loader, with its choices and floors."""
    return load_table(path, name, cls, raw, choices=_CHOICES.get(name), floors=_AT_LEAST.get(name))


# Settings that take one of a few words (any case), and what each means, by section.
_CHOICES: dict[str, dict[str, dict[str, str]]] = {
    "imports": {"date_order": {"DMY": "29/11/2026", "MDY": "11/29/2026", "YMD": "2026/11/29"}},
}

# Settings with a floor, and why (a zero lease would declare every sender dead at once), by section.
_AT_LEAST: dict[str, dict[str, tuple[float, str]]] = {
    "delivery": {
        "lease_seconds": (2, "a sender silent this long is dead; it beats every quarter of it"),
        "reconcile_after_minutes": (0, "how long an unknown request waits for events"),
        "sender_processes": (1, "processes that send on this machine"),
        "max_in_flight": (1, "requests in flight at once"),
    },
    "schedule": {"takeover_seconds": (1, "how fast a standby scheduler takes over")},
}


def _env_overrides(settings: Settings) -> Settings:
    """A few operational settings may be overridden from the environment (documented in the README)."""
    quiet = os.environ.get("NEEDLECAST_QUIET_HOURS")
    backend = os.environ.get("NEEDLECAST_BACKEND")
    api_host = os.environ.get("NEEDLECAST_SENDGRID_HOST")
    if quiet is not None:
        settings = dataclasses.replace(settings, schedule=dataclasses.replace(settings.schedule, quiet_hours=quiet))
    if backend or api_host:
        delivery = settings.delivery
        delivery = dataclasses.replace(
            delivery, backend=backend or delivery.backend, api_host=api_host or delivery.api_host
        )
        settings = dataclasses.replace(settings, delivery=delivery)
    return settings


def load_settings(root: Path) -> Settings:
    """Read `root/needlecast.toml` (plus environment overrides); a missing file gives the defaults.

    The password hash's cost (`password_hash_cost`) is checked here too, so that a bad value stops every
    command and the server as they start, not a log-in later."""
    password_hash_cost()
    return _env_overrides(_read_settings(root))


def _read_settings(root: Path) -> Settings:
    path = root / CONFIG_FILE
    if not path.is_file():
        return Settings()
    return settings_from_text(path, path.read_text(encoding="utf-8"))


def settings_from_text(path: Path, text: str) -> Settings:
    """The settings `text` would give as the file `path` (the loader's every check, no environment): how a
    change is validated before it is written (`config.writing`)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigurationError(f"{path}: not valid TOML: {err}") from err
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    loaded: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in sections:
            known = ", ".join(sorted(sections))
            raise ConfigurationError(f"{path}: unknown section [{name}]. Known sections: {known}")
        if name == "bookings":
            loaded[name] = load_booking_settings(path, value)
            continue
        if name == "deliverability":  # a nested warm-up table and bounded thresholds: its own loader
            loaded[name] = load_deliverability_settings(path, value)
            continue
        if name == "reports":
            loaded[name] = _load_reports(path, value)
            continue
        section_cls = sections[name].default_factory
        loaded[name] = _load_section(path, name, section_cls, value)  # type: ignore[arg-type]
    settings = Settings(**loaded)
    _check_zone(path, settings.clinic.time_zone)
    return settings


def _load_reports(path: Path, raw: Any) -> ReportSettings:
    """`[reports] digest = {recipients = [...], day = "monday", time = "08:00"}`, checked: each recipient an
    address, the day a weekday, the time HH:MM (on the clinic's clock)."""
    from email_validator import EmailNotValidError, validate_email

    if not isinstance(raw, dict) or set(raw) - {"digest"}:
        raise ConfigurationError(f"{path}: [reports] takes one key, digest = {{recipients = [...], day, time}}")
    digest = _load_section(path, "reports.digest", DigestSettings, raw.get("digest", {}))
    for number, address in enumerate(digest.recipients, start=1):
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError:  # named by its place: the message may reach a log
            raise ConfigurationError(f"{path}: [reports] digest.recipients: entry {number} is not an address") from None
    day = digest.day.strip().lower()
    if day not in WEEKDAYS:
        raise ConfigurationError(f'{path}: [reports] digest.day must be a weekday such as "monday", not {digest.day!r}')
    hour, _, minute = digest.time.partition(":")
    if not (hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60 and len(minute) == 2):
        raise ConfigurationError(f'{path}: [reports] digest.time must be HH:MM such as "08:00", not {digest.time!r}')
    return ReportSettings(dataclasses.replace(digest, day=day))


def _check_zone(path: Path, name: str) -> None:
    """A `[clinic] time_zone` that names no IANA zone is a `ConfigurationError` saying what to write."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f'{path}: [clinic] time_zone must be an IANA time zone such as "Europe/London", not {name!r}'
        ) from None


def open_workspace(root: Path | None = None) -> Workspace:
    """Find and load the workspace at or above `root` (or the current folder); it follows its file (see
    `Workspace`)."""
    found = find_workspace(root)
    stamp = _stamp(found / CONFIG_FILE)
    workspace = Workspace(root=found, settings=load_settings(found))
    object.__setattr__(workspace, "_follow", _Follower(found, stamp))
    return workspace


_WRITES = [0]  # files this process wrote (`note_written`): a write within one tick of the clock still counts


def note_written() -> None:
    """Called by `config.writing` after it replaces a needlecast.toml: every workspace of this process looks
    again at its next use, even when the file's size and time (a clock tick of a few ms) look unchanged."""
    _WRITES[0] += 1


def _stamp(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a changed file from the one read: this process's writes, and the file's inode (a write
    replaces the file), size and time."""
    try:
        found = path.stat()
    except OSError:
        return None
    return (_WRITES[0], found.st_ino, found.st_size, found.st_mtime_ns)


class _Follower:
    """The file stamp a workspace's settings were read at; `fresh(held)` re-reads them when it changed."""

    def __init__(self, root: Path, stamp: tuple[int, int, int, int] | None) -> None:
        self.root = root
        self.stamp = stamp
        self.lock = threading.Lock()

    def fresh(self, workspace: Workspace, held: Settings) -> Settings:
        stamp = _stamp(self.root / CONFIG_FILE)
        if stamp == self.stamp:
            return held
        with self.lock:
            if stamp != self.stamp:
                with contextlib.suppress(ConfigurationError):  # a hand edit that does not load: the last good
                    held = load_settings(self.root)  # settings stay in force
                workspace.__dict__["settings"] = held
                self.stamp = stamp
            return workspace.__dict__["settings"]


def _settings_of(workspace: Workspace) -> Settings:
    held: Settings = workspace.__dict__["settings"]
    follower: _Follower | None = workspace.__dict__.get("_follow")
    return held if follower is None else follower.fresh(workspace, held)


def _keep_settings(workspace: Workspace, value: Settings) -> None:
    workspace.__dict__["settings"] = value


# `Workspace.settings` reads through the follower (a data descriptor wins over the instance's own field, which
# the dataclass's __init__ sets through it); `dataclasses.replace` makes a workspace without one.
Workspace.settings = property(_settings_of, _keep_settings)  # type: ignore[assignment]


def test_recipients(workspace: Workspace) -> tuple[str, ...]:
    """The seed addresses of `[console] test_recipients`, read from needlecast.toml when asked (a long-running
    web app sees an edit at once, without a restart); the loaded settings' when the file cannot be read now."""
    try:
        return tuple(load_settings(workspace.root).console.test_recipients)
    except ConfigurationError:
        return tuple(workspace.settings.console.test_recipients)


def signing_secret(*, required: bool) -> bytes:
    """The HMAC key for unsubscribe and confirmation tokens, from `NEEDLECAST_SECRET`.

    With `required` (a backend that really sends), a missing or short secret is a configuration error,
    because links signed with the development secret could be forged by anyone who reads this code.
    """
    secret = os.environ.get("NEEDLECAST_SECRET", "")
    if secret:
        if required and len(secret) < 32:
            raise ConfigurationError("NEEDLECAST_SECRET must be at least 32 characters for real sending.")
        return secret.encode()
    if required:
        raise ConfigurationError(
            "NEEDLECAST_SECRET is not set. Real sending signs unsubscribe links with it: "
            "set it to a random string of at least 32 characters (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'`)."
        )
    return DEV_SECRET.encode()


# argon2id's cost parameters for console passwords, each settable from the environment (the README's
# workspace section). Unset ones stay argon2-cffi's own defaults: production hashes at the library's cost.
PASSWORD_COST_VARIABLES = {
    "time_cost": "NEEDLECAST_ARGON2_TIME_COST",
    "memory_cost": "NEEDLECAST_ARGON2_MEMORY_COST",
    "parallelism": "NEEDLECAST_ARGON2_PARALLELISM",
}
_ARGON2_MAX = 2**32 - 1  # argon2's parameters are 32-bit


def password_hash_cost() -> tuple[tuple[str, int], ...]:
    """The argon2id parameters the environment sets, as (name, value) pairs for `argon2.PasswordHasher`.

    Contract: an unset (or empty) variable gives no pair, so the hasher keeps argon2-cffi's default for it;
    with none set the result is empty and the hasher is `PasswordHasher()`. A value that is not a whole number
    from 1 to 2**32 - 1, or a memory cost below argon2's floor of 8 KiB per lane, is a `ConfigurationError` naming
    the variable. Read on every call, so a test or a restarted process sees a change at once.
    """
    cost: dict[str, int] = {}
    for name, variable in PASSWORD_COST_VARIABLES.items():
        raw = os.environ.get(variable, "").strip()
        if not raw:
            continue
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _ARGON2_MAX:
            raise ConfigurationError(f"{variable} must be a whole number from 1 to {_ARGON2_MAX}, not {raw!r}")
        cost[name] = int(raw)
    from argon2 import PasswordHasher

    default = PasswordHasher()
    memory, lanes = cost.get("memory_cost", default.memory_cost), cost.get("parallelism", default.parallelism)
    if memory < 8 * lanes:
        raise ConfigurationError(
            f"{PASSWORD_COST_VARIABLES['memory_cost']} must be at least 8 KiB per lane "
            f"(8 x {lanes} = {8 * lanes}), not {memory}"
        )
    return tuple(cost.items())
