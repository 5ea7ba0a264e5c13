"""The settings pages' values: what needlecast.toml says now, as the console's form fields show it.

Contract: `settings_values(workspace)` reads the workspace's settings as they are now (the workspace follows
its file: `config.Workspace`) and returns each settings form field's text by the field names of
`actions.settings.GROUPS`, plus `logo_url`, `logo_file` (the uploaded logo's file in the workspace's `images/`
folder, or None for a logo elsewhere or none) and `quiet_overridden` (True when the server's environment sets
the quiet hours, so the file's are not the ones in force).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from needlecast.config import Settings, Workspace, settings_from_text
from needlecast.errors import ConfigurationError


def settings_values(workspace: Workspace) -> dict[str, Any]:
    settings = workspace.settings
    clinic, signup, schedule = settings.clinic, settings.signup, settings.schedule
    overridden = os.environ.get("NEEDLECAST_QUIET_HOURS") is not None
    quiet = (_file_quiet_hours(workspace) if overridden else schedule.quiet_hours).strip()
    start, _, end = quiet.partition("-") if quiet.lower() not in ("", "off", "none") else ("", "", "")
    return {
        "name": clinic.name,
        "postal_address": clinic.postal_address,
        "website": clinic.website,
        "booking_url": clinic.booking_url,
        "time_zone": clinic.time_zone,
        "time_zones": time_zone_choices(),
        "sender_name": clinic.sender_name,
        "sender_email": clinic.sender_email,
        "reply_to": clinic.reply_to,
        "logo_url": clinic.logo_url,
        "logo_file": logo_file(workspace),
        "marketing_wording": signup.marketing_wording,
        "marketing_wording_version": signup.marketing_wording_version,
        "concern_wording": signup.concern_wording,
        "concern_wording_version": signup.concern_wording_version,
        "quiet_from": start.strip(),
        "quiet_to": end.strip(),
        "max_per_day": str(schedule.max_per_day),
        "max_per_week": str(schedule.max_per_week),
        "test_recipients": "\n".join(settings.console.test_recipients),
        "quiet_overridden": overridden,
    }


def time_zone_choices() -> list[str]:
    """Every IANA time zone a clinic can choose, sorted (the settings form's list)."""
    from zoneinfo import available_timezones

    return sorted(zone for zone in available_timezones() if "/" in zone and not zone.startswith(("Etc/", "SystemV/")))


def logo_file(workspace: Workspace) -> Path | None:
    """The uploaded logo `[clinic] logo_url` points at (`images/logo-*.png|jpg|gif` of the workspace), if any."""
    url = workspace.settings.clinic.logo_url
    name = url.rsplit("/", 1)[-1]
    if not url.startswith(workspace.settings.tracking.public_base_url.rstrip("/") + "/images/"):
        return None
    if not re.fullmatch(r"logo-[0-9a-f]{16}\.(png|jpg|gif)", name):
        return None
    path = workspace.root / "images" / name
    return path if path.is_file() else None


def _file_quiet_hours(workspace: Workspace) -> str:
    """The file's own quiet hours (the form edits the file's, whatever the environment puts in force)."""
    path = workspace.config_path
    if not path.is_file():
        return Settings().schedule.quiet_hours
    try:
        return settings_from_text(path, path.read_text(encoding="utf-8")).schedule.quiet_hours
    except ConfigurationError:
        return workspace.settings.schedule.quiet_hours
