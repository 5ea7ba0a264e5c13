"""Settings actions: change the clinic's settings in needlecast.toml; upgrade the database's schema; make a
new workspace.

See `needlecast.actions` for the contract every action keeps. `change_settings(engine, workspace, actor,
group, form)` needs `settings.edit` (an admin, or the command line): it checks a group's fields (`GROUPS`:
the clinic's details, the sender, the consent wording, the sending limits, the test recipients), refuses
them with `SettingsRejected` (a problem in words per field, nothing written) or writes them to
needlecast.toml through `config.writing` (checked again by the loader itself; comments and every other
setting kept) and audits `settings.changed` on `settings:<group>` naming the keys that changed, never their
values (test recipients are addresses). The running app and the scheduler follow the file
(`config.Workspace`), so the change is in force at the next page, preview and send, without a restart.
`save_logo` stores an uploaded logo in the workspace's `images/` folder (served on the tracking host) and
points `[clinic] logo_url` at it, audited as `settings.changed` on `settings:logo`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.config import Workspace
from needlecast.errors import ConfigurationError, SettingsRejected

MAX_TEXT = 300
MAX_WORDING = 1000
MAX_TEST_RECIPIENTS = 20
MAX_LOGO_BYTES = 1_000_000
IMAGES_DIR = "images"  # the workspace's images, served on the tracking host at /images/<name>
# What a logo file starts with, and the extension it is stored with (no SVG: it can carry script).
LOGO_KINDS = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpg", b"GIF87a": "gif", b"GIF89a": "gif"}


def _text(value: str, *, required: str = "", limit: int = MAX_TEXT) -> str:
    text = value.strip()
    if required and not text:
        raise ValueError(required)
    if len(text) > limit:
        raise ValueError(f"keep it under {limit} characters")
    if "\n" in text or "\r" in text:
        raise ValueError("write it on one line")
    return text


def _address(value: str, *, required: bool) -> str:
    from email_validator import EmailNotValidError, validate_email

    text = value.strip()
    if not text and not required:
        return ""
    if not text:
        raise ValueError("enter an email address")
    try:
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError:
        raise ValueError(f"{text[:80]!r} is not an email address") from None


def _web_address(value: str) -> str:
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname or " " in text:
        raise ValueError("enter a web address starting with https://, such as https://www.yourclinic.com")
    return text


def _whole(value: str) -> int:
    text = value.strip()
    if not text.isdigit() or len(text) > 4:
        raise ValueError("enter a whole number, 0 or more (0: no limit)")
    return int(text)


def _clock(value: str) -> str:
    text = value.strip()
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
        raise ValueError("enter a time such as 21:00")
    return text


def _zone(value: str) -> str:
    """An IANA time zone name as the config loader accepts it ("Europe/London")."""
    from zoneinfo import available_timezones

    text = value.strip()
    if text not in available_timezones():
        raise ValueError("choose the clinic's time zone from the list, such as Europe/London")
    return text


def _version(value: str) -> str:
    text = value.strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        raise ValueError("a short name of letters, digits, dots or dashes, such as marketing-v2")
    return text


@dataclass(frozen=True)
class Field:
    """One form field: the TOML section and key it is written to, and how its text is checked and read."""

    section: str
    key: str
    read: Callable[[str], Any]


GROUPS: dict[str, dict[str, Field]] = {
    "clinic": {
        "name": Field("clinic", "name", lambda v: _text(v, required="enter the clinic's name")),
        "postal_address": Field(
            "clinic", "postal_address", lambda v: _text(v, required="every email must show a postal address")
        ),
        "website": Field("clinic", "website", _web_address),
        "booking_url": Field("clinic", "booking_url", _web_address),
        "time_zone": Field("clinic", "time_zone", _zone),
    },
    "sender": {
        "sender_name": Field("clinic", "sender_name", lambda v: _text(v, required="enter the name people see")),
        "sender_email": Field("clinic", "sender_email", lambda v: _address(v, required=True)),
        "reply_to": Field("clinic", "reply_to", lambda v: _address(v, required=False)),
    },
    "consent": {
        "marketing_wording": Field(
            "signup", "marketing_wording", lambda v: _text(v, required="enter the wording", limit=MAX_WORDING)
        ),
        "marketing_wording_version": Field("signup", "marketing_wording_version", _version),
        "concern_wording": Field(
            "signup", "concern_wording", lambda v: _text(v, required="enter the wording", limit=MAX_WORDING)
        ),
        "concern_wording_version": Field("signup", "concern_wording_version", _version),
    },
    "sending": {
        "quiet_from": Field("schedule", "quiet_hours", lambda v: _clock(v) if v.strip() else ""),
        "quiet_to": Field("schedule", "quiet_hours", lambda v: _clock(v) if v.strip() else ""),
        "max_per_day": Field("schedule", "max_per_day", _whole),
        "max_per_week": Field("schedule", "max_per_week", _whole),
    },
    "tests": {
        "test_recipients": Field("console", "test_recipients", lambda v: v),  # checked line by line below
    },
}
# A wording and the version stored with each consent given to it: a new wording needs a new version.
_WORDING_VERSIONS = {"marketing_wording": "marketing_wording_version", "concern_wording": "concern_wording_version"}


def _checked(workspace: Workspace, group: str, form: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The group's new values by TOML section and key; `SettingsRejected` naming every bad field."""
    if group not in GROUPS:
        raise SettingsRejected({"general": f"there are no settings called {group!r}"})
    problems: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, field_ in GROUPS[group].items():
        try:
            values[name] = field_.read(str(form.get(name) or ""))
        except ValueError as err:
            problems[name] = str(err)
    if group == "tests":
        values["test_recipients"] = _recipients(str(form.get("test_recipients") or ""), problems)
    quiet_read = group == "sending" and not {"quiet_from", "quiet_to"} & set(problems)
    if quiet_read and bool(values["quiet_from"]) != bool(values["quiet_to"]):
        problems["quiet_to" if values["quiet_from"] else "quiet_from"] = "give both times, or neither for none"
    if group == "consent":
        signup = workspace.settings.signup
        for wording, version in _WORDING_VERSIONS.items():
            if (
                wording in values
                and values[wording] != getattr(signup, wording)
                and values.get(version) == getattr(signup, version)
            ):
                problems[version] = "the wording changed: give it a new version, so each consent records what was shown"
    if problems:
        raise SettingsRejected(problems)
    changes: dict[str, dict[str, Any]] = {}
    for name, field_ in GROUPS[group].items():
        changes.setdefault(field_.section, {})[field_.key] = values[name]
    if group == "sending":
        quiet = f"{values['quiet_from']}-{values['quiet_to']}" if values["quiet_from"] else "off"
        changes["schedule"]["quiet_hours"] = quiet
    return changes


def _recipients(text: str, problems: dict[str, str]) -> list[str]:
    lines = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    if len(lines) > MAX_TEST_RECIPIENTS:
        problems["test_recipients"] = f"at most {MAX_TEST_RECIPIENTS} addresses"
        return []
    found: list[str] = []
    for line in lines:
        try:
            found.append(_address(line, required=True))
        except ValueError as err:
            problems["test_recipients"] = str(err)
    return list(dict.fromkeys(found))


def change_settings(
    engine: Engine, workspace: Workspace, actor: Actor, group: str, form: Mapping[str, str]
) -> list[str]:
    """Check and write one group of settings (see the module contract); returns the keys that changed."""
    from needlecast.config.writing import write_settings

    require(actor, "settings.edit")
    changes = _checked(workspace, group, form)
    before = workspace.settings
    changed = [
        f"{section}.{key}"
        for section, values in changes.items()
        for key, value in values.items()
        if _as_toml(getattr(getattr(before, section), key)) != value
    ]
    if not changed:
        return []
    try:
        write_settings(workspace.root, changes)
    except ConfigurationError as err:  # the loader's words, without the file's path (a page shows them)
        raise SettingsRejected({"general": str(err).split(": ", 1)[-1]}) from None
    with engine.begin() as conn:
        audit.record(conn, actor, "settings.changed", f"settings:{group}", keys=changed)
    return changed


def _as_toml(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def save_logo(engine: Engine, workspace: Workspace, actor: Actor, data: bytes) -> str:
    """Store an uploaded logo (PNG, JPEG or GIF, at most 1 MB) as `images/logo-<digest>.<ext>` in the workspace
    and set `[clinic] logo_url` to its address on the tracking host; returns that address. `SettingsRejected`
    on the `logo` field for another kind of file or a larger one, and nothing is written."""
    from needlecast.config.writing import write_settings

    require(actor, "settings.edit")
    kind = next((ext for magic, ext in LOGO_KINDS.items() if data.startswith(magic)), None)
    if kind is None:
        raise SettingsRejected({"logo": "choose a PNG, JPEG or GIF image"})
    if len(data) > MAX_LOGO_BYTES:
        raise SettingsRejected({"logo": "choose an image under 1 MB"})
    name = f"logo-{hashlib.sha256(data).hexdigest()[:16]}.{kind}"
    folder = workspace.root / IMAGES_DIR
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    url = f"{workspace.settings.tracking.public_base_url.rstrip('/')}/{IMAGES_DIR}/{name}"
    write_settings(workspace.root, {"clinic": {"logo_url": url}})
    with engine.begin() as conn:
        audit.record(conn, actor, "settings.changed", "settings:logo", keys=["clinic.logo_url"])
    return url


def upgrade_database(url: str, actor: Actor) -> tuple[str | None, str]:
    """Apply pending schema migrations (`store.engine.upgrade`); returns the revisions before and after. A
    change is audited as `database.upgraded`, right after it (the audit log is a table of that schema)."""
    from needlecast.store.engine import current_revision, make_engine, upgrade

    require(actor, "database.upgrade")
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        after = upgrade(engine)
        if before != after:
            with engine.begin() as conn:
                audit.record(conn, actor, "database.upgraded", "database", before=before or "empty", after=after)
    finally:
        engine.dispose()
    return before, after


def create_workspace(directory: Path, *, force: bool = False) -> list[Path]:
    """Make a new workspace in `directory` (`scaffold.init_workspace`): the sample article, templates and
    audience, and example campaigns as drafts; returns the files made. A folder that is a workspace already
    is refused (`ConfigurationError`) unless `force`.

    The one change outside the actions' contract: it takes no actor and writes no audit entry, because there
    is no store yet (the audit log is a table of the database the workspace's first command creates)."""
    from needlecast.scaffold import init_workspace

    return init_workspace(directory, force=force)
