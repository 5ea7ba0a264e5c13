"""The campaign form of the console: a campaign file's fields as form fields, and back.

Contract: `form_values(document)` turns a campaign mapping (a file's YAML) into the form's values;
`document_from_form(form, previous)` turns a submitted form into a campaign mapping (keeping what the form
does not edit from `previous`: the sign-off, a winner test's settings, send-time optimisation's);
`field_of(error_field)` names the form field a `CampaignFileError` is about, so the error shows beside it.
The loader validates the mapping, never this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

STEP_FIELDS = ("id", "template", "article", "subject", "preheader", "delay", "ab_subjects", "ab_split")
EXTRA_STEP_ROWS = 1  # empty step rows shown below the existing ones


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def form_values(document: Mapping[str, Any]) -> dict[str, Any]:
    schedule = document.get("schedule") or {}
    enrol = document.get("enrol") or {}
    sender = document.get("sender") or {}
    send_at = str(schedule.get("send_at") or "")
    values: dict[str, Any] = {
        "id": document.get("id", ""),
        "name": document.get("name", ""),
        "kind": document.get("kind", "broadcast"),
        "draft": bool(document.get("draft", False)),
        "segment": document.get("segment", ""),
        "time_zone": document.get("time_zone", "Europe/London"),
        "sender_email": sender.get("email", ""),
        "sender_name": sender.get("name", ""),
        "reply_to": document.get("reply_to", ""),
        "article": document.get("article", ""),
        "schedule_mode": "local" if "local_time" in schedule else "send_at",
        "send_at": send_at.replace(" ", "T")[:16],
        "local_time": str(schedule.get("local_time") or ""),
        "date": str(schedule.get("date") or ""),
        "enrol_joined_after": str(enrol.get("joined_after") or ""),
        "enrol_tag": enrol.get("tag", ""),
        "enrol_event": enrol.get("event", ""),
        "exits": "\n".join(
            f"event: {e['event']}" if "event" in e else f"{e.get('field')} = {e.get('equals')}"
            for e in document.get("exits") or []
            if isinstance(e, dict)
        ),
        "steps": [],
    }
    for step in document.get("steps") or []:
        ab = step.get("ab") or {}
        values["steps"].append(
            {
                "id": step.get("id", ""),
                "template": step.get("template", ""),
                "article": step.get("article") or "",
                "library": (step.get("sections") or {}).get("from") == "all",
                "subject": step.get("subject") or "",
                "preheader": step.get("preheader") or "",
                "delay": str(step.get("delay") or ""),
                "variants": list(step.get("variants") or []),
                "ab_subjects": "\n".join(ab.get("subjects") or []),
                "ab_split": ", ".join(str(x) for x in ab.get("split") or []),
            }
        )
    values["steps"] += [
        dict.fromkeys(STEP_FIELDS, "") | {"variants": [], "library": False} for _ in range(EXTRA_STEP_ROWS)
    ]
    return values


def _step_indexes(form: Mapping[str, Any]) -> list[int]:
    found = {int(m.group(1)) for key in form for m in [re.match(r"steps-(\d+)-", key)] if m}
    return sorted(found)


def document_from_form(form: Any, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A campaign mapping from a submitted form (`form` has `get` and `getlist`, like Starlette's)."""

    def text(name: str) -> str:
        return str(form.get(name) or "").strip()

    document: dict[str, Any] = {"id": text("id"), "name": text("name") or text("id"), "kind": text("kind")}
    if form.get("draft"):
        document["draft"] = True
    document["segment"] = text("segment")
    document["time_zone"] = text("time_zone")
    if text("sender_email") or text("sender_name"):
        document["sender"] = {k: v for k, v in (("email", text("sender_email")), ("name", text("sender_name"))) if v}
    if text("reply_to"):
        document["reply_to"] = text("reply_to")
    if text("article"):
        document["article"] = text("article")
    steps = []
    for index in _step_indexes(form):
        prefix = f"steps-{index}-"
        step: dict[str, Any] = {"id": text(prefix + "id"), "template": text(prefix + "template")}
        if not step["id"] and not step["template"]:
            continue  # an empty row
        for key in ("article", "subject", "preheader"):
            if text(prefix + key):
                step[key] = text(prefix + key)
        if form.get(prefix + "library"):
            step["sections"] = {"concern": "auto", "from": "all"}
        variants = [str(v) for v in form.getlist(prefix + "variants")]
        if variants:
            step["variants"] = variants
        subjects = _lines(str(form.get(prefix + "ab_subjects") or ""))
        if subjects:
            ab: dict[str, Any] = {"subjects": subjects}
            split = text(prefix + "ab_split")
            if split:
                try:
                    ab["split"] = [int(part) for part in re.split(r"[,\s]+", split) if part]
                except ValueError:
                    ab["split"] = split  # the loader names the field and the fix
            step["ab"] = ab
        if document["kind"] == "sequence":
            step["delay"] = text(prefix + "delay")
        steps.append(step)
    document["steps"] = steps
    if document["kind"] == "broadcast":
        if text("schedule_mode") == "local":
            document["schedule"] = {"local_time": text("local_time"), "date": text("date")}
        else:
            document["schedule"] = {"send_at": text("send_at").replace("T", " ")}
    else:
        chosen = (
            ("joined_after", text("enrol_joined_after")),
            ("tag", text("enrol_tag")),
            ("event", text("enrol_event")),
        )
        enrol = {k: v for k, v in chosen if v}
        if enrol:
            document["enrol"] = enrol
        exits: list[dict[str, str]] = []
        for line in _lines(str(form.get("exits") or "")):
            event = re.match(r"^event\s*:?\s*(\S+)$", line)
            if event:
                exits.append({"event": event.group(1)})
                continue
            field_name, _, equals = line.partition("=")
            exits.append({"field": field_name.strip(), "equals": equals.strip()})
        if exits:
            document["exits"] = exits
    if previous:
        _keep_unedited(document, previous)
    return document


# What the form does not show, kept from the file being edited: a winner test's and send-time optimisation's
# settings (set in the file), so that saving the form never drops them.
_AB_KEPT = ("test_fraction", "decide_after", "metric", "confidence", "fallback")
_OPTIMISE_KEPT = ("optimise", "window", "holdout", "min_events")


def _keep_unedited(document: dict[str, Any], previous: Mapping[str, Any]) -> None:
    if previous.get("signoff"):
        document["signoff"] = previous["signoff"]
    before = {s.get("id"): s for s in previous.get("steps") or [] if isinstance(s, dict)}
    for step in document["steps"]:
        old = before.get(step["id"]) or {}
        old_ab: dict[str, Any] = old["ab"] if isinstance(old.get("ab"), dict) else {}
        kept_ab = {k: old_ab[k] for k in _AB_KEPT if k in old_ab}
        if kept_ab and "ab" in step:
            step["ab"].update(kept_ab)
        if document["kind"] == "sequence":
            step.update({k: old[k] for k in _OPTIMISE_KEPT if k in old})
    old_schedule: dict[str, Any] = previous["schedule"] if isinstance(previous.get("schedule"), dict) else {}
    if "schedule" in document:
        document["schedule"].update({k: old_schedule[k] for k in _OPTIMISE_KEPT if k in old_schedule})


def field_of(error_field: str) -> str:
    """The form field a loader error is about (`steps[1].ab.subjects` -> `steps-1-ab_subjects`)."""
    step = re.match(r"steps\[(\d+)\](?:\.(\w+))?(?:\.(\w+))?", error_field)
    if step:
        index, key, sub = step.group(1), step.group(2) or "id", step.group(3)
        if key == "ab":
            key = f"ab_{sub or 'subjects'}"
        elif key == "sections":
            key = "library"
        return f"steps-{index}-{key}"
    if error_field == "steps":
        return "steps-0-id"
    if error_field.startswith("exits"):
        return "exits"
    return {
        "sender.email": "sender_email",
        "sender.name": "sender_name",
        "schedule.send_at": "send_at",
        "schedule.local_time": "local_time",
        "schedule.date": "date",
        "schedule": "schedule_mode",
        "enrol.joined_after": "enrol_joined_after",
        "enrol.tag": "enrol_tag",
        "enrol.event": "enrol_event",
        "enrol": "enrol_joined_after",
    }.get(
        error_field,
        error_field
        if error_field in ("id", "name", "kind", "segment", "time_zone", "reply_to", "draft")
        else "general",
    )
