"""Segments: their definitions, read from `audiences/segments.yaml`.

Contract: `load_segments(path, known_concerns)` returns the segments by name, or raises a ConfigurationError that
names the file, the segment and the key. A segment filters contacts by concern, list, tag, sign-up age and
`where` conditions on contact columns, attributes and the latest events; `audience.membership` evaluates it
over the contacts (pandas). This module imports no pandas: the sending processes read segment definitions with
their campaigns, and pandas with pyarrow cost each of them about 0.35 s of CPU at start.
`variant_for` is the rule of which content a contact receives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from needlecast.content.model import GENERAL
from needlecast.errors import ConfigurationError, NotFound
from needlecast.yamlfile import read_yaml

OPS = ("equals", "not_equals", "in", "not_in", "min", "max", "between", "before", "after", "within_days", "exists")
COLUMNS = ("first_name", "last_name", "time_zone", "locale", "status", "signed_up_at", "created_at", "concern_consent")
# A condition on `event:<type>` (`{field: event:booked, op: within_days, value: 90}`) reads when the contact
# last had that kind of event from the clinic's systems (`contact_events`).
EVENT_FIELD = "event:"


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Segment:
    name: str
    description: str = ""
    concerns: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    signed_up_within_days: int | None = None
    where: tuple[Condition, ...] = ()


def _strings(path: Path, name: str, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{path}: segment '{name}': '{key}' must be a list of names")
    return tuple(value)


def load_segments(path: Path, known_concerns: tuple[str, ...]) -> dict[str, Segment]:
    """Segment definitions; errors name the file, the segment and the key."""
    raw = read_yaml(path, "create audiences/segments.yaml with a 'segments:' mapping") or {}
    entries = raw.get("segments") if isinstance(raw, dict) else None
    if not isinstance(entries, dict):
        raise ConfigurationError(f"{path}: expected a top-level 'segments:' mapping of name -> filters")
    segments: dict[str, Segment] = {}
    allowed = {"description", "concerns", "lists", "tags", "signed_up_within_days", "where"}
    for name, spec in entries.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ConfigurationError(f"{path}: segment '{name}' must be a mapping of filters")
        unknown = set(spec) - allowed
        if unknown:
            raise ConfigurationError(
                f"{path}: segment '{name}' has unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        concerns = _strings(path, name, "concerns", spec.get("concerns"))
        bad = [c for c in concerns if c not in known_concerns]
        if bad:
            raise ConfigurationError(
                f"{path}: segment '{name}': unknown concern(s) {bad}; known: {', '.join(known_concerns)}"
            )
        days = spec.get("signed_up_within_days")
        if days is not None and (not isinstance(days, int) or days < 0):
            raise ConfigurationError(f"{path}: segment '{name}': signed_up_within_days must be a whole number")
        conditions = []
        for item in spec.get("where") or []:
            if not isinstance(item, dict) or "field" not in item or item.get("op") not in OPS:
                raise ConfigurationError(
                    f"{path}: segment '{name}': each 'where' item needs field, op ({', '.join(OPS)}) and value"
                )
            conditions.append(Condition(str(item["field"]), str(item["op"]), item.get("value")))
        segments[str(name)] = Segment(
            name=str(name),
            description=str(spec.get("description", "")),
            concerns=concerns,
            lists=_strings(path, name, "lists", spec.get("lists")),
            tags=_strings(path, name, "tags", spec.get("tags")),
            signed_up_within_days=days,
            where=tuple(conditions),
        )
    return segments


def get_segment(segments: dict[str, Segment], name: str) -> Segment:
    if name not in segments:
        raise NotFound(f"no segment named '{name}'; defined: {', '.join(sorted(segments))}")
    return segments[name]


@lru_cache(maxsize=65536)
def _decode_attributes(raw: str | None) -> dict[str, Any]:
    """Imported attributes repeat a lot ({"booked": "no"}): decode each distinct text once."""
    if not raw or raw == "{}":
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def attributes_of(value: Any) -> dict[str, Any]:
    """A contact's attributes from a frame cell (JSON text, or already a dict)."""
    return value if isinstance(value, dict) else _decode_attributes(value)


def variant_for(concerns: str, consent: bool, targeted: tuple[str, ...]) -> str:
    """The content variant of a contact: a targeted concern of theirs, their primary one, or general."""
    if not consent or not concerns:
        return GENERAL
    own = concerns.split(";")
    if targeted:
        return next((c for c in own if c in targeted), GENERAL)
    return own[0]
