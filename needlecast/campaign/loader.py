"""Load and validate campaign files: every error names the file, the field and the fix.

The shape (see campaigns/*.yaml for complete examples):

    id: spring-guide                 # letters, digits, - and _; unique across the workspace
    name: Spring guide
    kind: broadcast | sequence
    segment: all-leads               # from audiences/segments.yaml
    time_zone: Europe/London
    sender: {email: ..., name: ...}  # optional; default [clinic] sender_email / sender_name
    reply_to: ...                    # optional
    steps:
      - id: guide
        template: emails/broadcast
        subject: "..."               # optional; default the template's subject block
        preheader: "..."             # optional
        variants: [acne, general]    # optional; default every concern and general
        ab: {split: [50, 50], subjects: ["...", "..."]}   # optional A/B subject arms
        delay: 3d                    # sequences: after enrolment (0d, 12h, 3d, 2w)
    schedule:                        # broadcasts: one of
      send_at: "2026-12-01 09:00"    #   a moment in the campaign's zone
      local_time: "09:00"            #   or that hour in each recipient's zone
      date: "2026-12-01"             #   on this date
    enrol: {joined_after: "2026-01-01", tag: nurture}   # sequences: who enrols
    exits: [{field: booked, equals: "yes"}]             # sequences: who leaves early
    signoff: {reviewer: "...", date: 2026-11-20, note: "..."}  # required when lint finds errors
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from needlecast.campaign.model import (
    BROADCAST,
    SEQUENCE,
    Arm,
    BroadcastSchedule,
    Campaign,
    Enrolment,
    ExitRule,
    SignOff,
    Step,
)
from needlecast.errors import CampaignFileError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_DELAY = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TOP_KEYS = {
    "id",
    "name",
    "kind",
    "segment",
    "time_zone",
    "sender",
    "reply_to",
    "steps",
    "schedule",
    "enrol",
    "exits",
    "signoff",
}
STEP_KEYS = {"id", "template", "subject", "preheader", "variants", "ab", "delay"}


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str, fix: str) -> CampaignFileError:
        return CampaignFileError(str(self.path), field, problem, fix)

    def text(self, data: dict[str, Any], key: str, where: str, *, required: bool = True, fix: str = "") -> str:
        value = data.get(key)
        if value is None or value == "":
            if required:
                raise self.fail(f"{where}{key}", "is missing", fix or f"add '{key}: ...'")
            return ""
        if not isinstance(value, str | int | float):
            raise self.fail(f"{where}{key}", f"must be text, not {type(value).__name__}", fix or "write it as text")
        return str(value)

    def unknown(self, data: dict[str, Any], allowed: set[str], where: str) -> None:
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"{where}{key}",
                    "is not a campaign field",
                    f"remove it, or use one of: {', '.join(sorted(allowed))}",
                )


def parse_delay(text: str) -> timedelta:
    match = _DELAY.match(str(text))
    if not match:
        raise ValueError(text)
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _moment(reader: _Reader, value: Any, field: str, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise reader.fail(
                field,
                f"'{value}' is not a date and time",
                'write it like "2026-12-01 09:00" (in the campaign\'s time_zone)',
            ) from None
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed


def _date(reader: _Reader, value: Any, field: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise reader.fail(field, f"'{value}' is not a date", 'write it like "2026-12-01"') from None


def _time(reader: _Reader, value: Any, field: str) -> time:
    if isinstance(value, int):  # YAML reads 09:00 unquoted as a number of minutes (sexagesimal)
        return time(value // 60 % 24, value % 60)
    try:
        return time.fromisoformat(str(value).strip())
    except ValueError:
        raise reader.fail(field, f"'{value}' is not a time of day", 'write it like "09:00"') from None


def _steps(reader: _Reader, raw: Any, kind: str, variants_known: tuple[str, ...]) -> tuple[Step, ...]:
    if not isinstance(raw, list) or not raw:
        raise reader.fail("steps", "must list at least one step", "add 'steps:' with '- id: ...' and 'template: ...'")
    steps: list[Step] = []
    for index, item in enumerate(raw):
        where = f"steps[{index}]."
        if not isinstance(item, dict):
            raise reader.fail(f"steps[{index}]", "must be a mapping", "give each step 'id:' and 'template:'")
        reader.unknown(item, STEP_KEYS, where)
        step_id = reader.text(item, "id", where)
        if not _ID.match(step_id):
            raise reader.fail(
                f"{where}id",
                f"'{step_id}' has characters other than letters, digits, - and _",
                "use a short id such as 'welcome'",
            )
        if any(s.id == step_id for s in steps):
            raise reader.fail(f"{where}id", f"'{step_id}' is used by another step", "give every step its own id")
        template = reader.text(item, "template", where, fix="name an email such as 'emails/welcome'")
        variants = item.get("variants") or []
        if not isinstance(variants, list) or any(v not in variants_known for v in variants):
            raise reader.fail(
                f"{where}variants",
                f"{variants!r} names an unknown variant",
                f"use some of: {', '.join(variants_known)}",
            )
        arms: list[Arm] = []
        if item.get("ab") is not None:
            ab = item["ab"]
            subjects = ab.get("subjects") if isinstance(ab, dict) else None
            split = ab.get("split") if isinstance(ab, dict) else None
            if (
                not isinstance(subjects, list)
                or len(subjects) < 2
                or not all(isinstance(s, str) and s for s in subjects)
            ):
                raise reader.fail(
                    f"{where}ab.subjects",
                    "needs two or more subject lines",
                    'write ab: {split: [50, 50], subjects: ["First", "Second"]}',
                )
            split = split or [100 // len(subjects)] * len(subjects)
            if (
                not isinstance(split, list)
                or len(split) != len(subjects)
                or sum(split) != 100
                or any(not isinstance(s, int) or s <= 0 for s in split)
            ):
                raise reader.fail(
                    f"{where}ab.split",
                    f"{split!r} must be one whole percentage per subject, adding up to 100",
                    "e.g. split: [50, 50]",
                )
            arms = [Arm(chr(ord("A") + i), s, p) for i, (s, p) in enumerate(zip(subjects, split, strict=True))]
        delay = timedelta(0)
        if kind == SEQUENCE:
            try:
                delay = parse_delay(reader.text(item, "delay", where, fix="add 'delay: 0d' (or 3d, 12h, 2w)"))
            except ValueError:
                raise reader.fail(
                    f"{where}delay",
                    f"'{item.get('delay')}' is not a delay",
                    "write a number and a unit: 0d, 3d, 12h, 2w",
                ) from None
        elif "delay" in item:
            raise reader.fail(f"{where}delay", "only sequence steps have a delay", "remove it, or use kind: sequence")
        steps.append(
            Step(step_id, template, item.get("subject"), item.get("preheader"), tuple(variants), tuple(arms), delay)
        )
    if kind == SEQUENCE:
        delays = [s.delay for s in steps]
        if delays != sorted(delays):
            raise reader.fail("steps", "sequence steps are not in order of their delay", "order them 0d, 3d, 7d ...")
    return tuple(steps)


def load_campaign(path: Path, variants_known: Iterable[str]) -> Campaign:
    """Read and validate one campaign file."""
    reader = _Reader(path)
    try:
        source = path.read_bytes()
        raw = yaml.safe_load(source)
    except OSError as err:
        raise reader.fail("(file)", f"cannot be read: {err.strerror}", "check the path") from err
    except yaml.YAMLError as err:
        raise reader.fail("(file)", f"is not valid YAML: {err}", "fix the indentation or quoting shown") from err
    if not isinstance(raw, dict):
        raise reader.fail("(file)", "is not a mapping of fields", "start with 'id: my-campaign'")
    reader.unknown(raw, TOP_KEYS, "")
    known = tuple(variants_known)
    campaign_id = reader.text(raw, "id", "")
    if not _ID.match(campaign_id):
        raise reader.fail(
            "id",
            f"'{campaign_id}' has characters other than letters, digits, - and _",
            "use a short id such as 'spring-guide'",
        )
    kind = reader.text(raw, "kind", "", fix="add 'kind: broadcast' or 'kind: sequence'")
    if kind not in (BROADCAST, SEQUENCE):
        raise reader.fail("kind", f"'{kind}' is not a kind of campaign", "use 'broadcast' or 'sequence'")
    zone_name = reader.text(raw, "time_zone", "", fix="add 'time_zone: Europe/London' (an IANA zone)")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise reader.fail(
            "time_zone",
            f"'{zone_name}' is not a time zone",
            "use an IANA name such as Europe/London or America/New_York",
        ) from None
    sender = raw.get("sender") or {}
    if not isinstance(sender, dict):
        raise reader.fail("sender", "must be a mapping", "write sender: {email: ..., name: ...}")
    steps = _steps(reader, raw.get("steps"), kind, known)

    schedule = BroadcastSchedule()
    enrol = Enrolment()
    exits: list[ExitRule] = []
    if kind == BROADCAST:
        spec = raw.get("schedule")
        if not isinstance(spec, dict) or not ({"send_at"} <= set(spec) or {"local_time", "date"} <= set(spec)):
            raise reader.fail(
                "schedule",
                "a broadcast needs a send time",
                'add schedule: {send_at: "2026-12-01 09:00"} or {local_time: "09:00", date: "2026-12-01"}',
            )
        if "send_at" in spec:
            schedule = BroadcastSchedule(send_at=_moment(reader, spec["send_at"], "schedule.send_at", zone))
        else:
            schedule = BroadcastSchedule(
                local_time=_time(reader, spec["local_time"], "schedule.local_time"),
                on=_date(reader, spec["date"], "schedule.date"),
            )
    else:
        if raw.get("schedule"):
            raise reader.fail(
                "schedule",
                "a sequence is timed by each step's delay, not a schedule",
                "remove 'schedule:' and give each step 'delay:'",
            )
        spec = raw.get("enrol") or {}
        if not isinstance(spec, dict):
            raise reader.fail("enrol", "must be a mapping", 'write enrol: {joined_after: "2026-01-01"} or {tag: ...}')
        joined = spec.get("joined_after")
        enrol = Enrolment(
            joined_after=_moment(reader, joined, "enrol.joined_after", zone) if joined else None,
            tag=str(spec.get("tag") or ""),
        )
        for index, item in enumerate(raw.get("exits") or []):
            if not isinstance(item, dict) or "field" not in item or "equals" not in item:
                raise reader.fail(
                    f"exits[{index}]",
                    "needs 'field' and 'equals'",
                    'write - {field: booked, equals: "yes"} (unsubscribes, bounces and complaints always exit)',
                )
            exits.append(ExitRule(str(item["field"]), str(item["equals"]).lower()))

    signoff = None
    if raw.get("signoff") is not None:
        spec = raw["signoff"]
        if not isinstance(spec, dict):
            raise reader.fail("signoff", "must be a mapping", "write signoff: {reviewer: ..., date: ..., note: ...}")
        signoff = SignOff(
            reader.text(spec, "reviewer", "signoff."),
            _date(reader, spec.get("date"), "signoff.date"),
            reader.text(spec, "note", "signoff."),
        )
    return Campaign(
        id=campaign_id,
        name=reader.text(raw, "name", "", required=False) or campaign_id,
        kind=kind,
        segment=reader.text(raw, "segment", "", fix="name a segment from audiences/segments.yaml"),
        time_zone=zone_name,
        steps=steps,
        path=path,
        sender_email=str(sender.get("email") or ""),
        sender_name=str(sender.get("name") or ""),
        reply_to=str(raw.get("reply_to") or ""),
        schedule=schedule,
        enrol=enrol,
        exits=tuple(exits),
        signoff=signoff,
        digest=hashlib.sha256(source).hexdigest()[:16],
    )


def load_campaigns(folder: Path, variants_known: Iterable[str]) -> dict[str, Campaign]:
    """Every `*.yaml` / `*.yml` campaign in `folder`, by id; two files with one id is an error."""
    known = tuple(variants_known)
    campaigns: dict[str, Campaign] = {}
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        campaign = load_campaign(path, known)
        if campaign.id in campaigns:
            raise CampaignFileError(
                str(path),
                "id",
                f"'{campaign.id}' is also the id of {campaigns[campaign.id].path.name}",
                "give each campaign its own id",
            )
        campaigns[campaign.id] = campaign
    return campaigns
