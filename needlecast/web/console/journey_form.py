"""The journey form of the console: a journey file's fields as form fields (nodes as rows), and back.

Contract:
- `form_values(document)` turns a journey mapping (its file's YAML) into the form's values: the journey's
  fields, the entry's, and one row per node (`rows`, each with its kind's fields and its `paths`), plus
  `SPARE_ROWS` empty rows for a browser without JavaScript;
- `unshown(document)` names what of the file the form cannot show (a branch path or an entry with more
  conditions than the form has slots): such a journey is edited as text only;
- `document_from_form(form, previous)` turns a submitted form into a journey mapping, keeping what the form
  does not edit from `previous` (a send node's article, preheader or A/B test; the draft flag, the sender,
  the sign-off); rows without an id and a kind are empty and skipped, so the document's `steps[i]` is the
  i-th filled row;
- `field_of(error_field)` names the form field a `CampaignFileError` is about (`steps[2].paths[1].next` ->
  `n-2-p-1-next`), so the error shows beside it; `line_of(text, error_field)` is the line of the YAML text
  where that field is (for the text editor).
The loader validates the mapping, never this module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

SPARE_ROWS = 2  # empty node rows after the journey's own, for a browser without JavaScript
SPARE_PATHS = 1  # empty path slots after a node's own paths
MIN_PATHS = 2  # a branch or a split shows at least two path slots
WHERE_SLOTS = 2  # conditions of a date entry the form shows
PATH_CONDITIONS = 2  # conditions of a branch path the form shows (the second: "and", optional)
NODE_KINDS = {
    "send": "Send an email",
    "wait": "Wait",
    "wait_until": "Wait until they act",
    "branch": "Branch on conditions",
    "split": "Split by percentages",
    "goto": "Go to another step",
    "exit": "Leave the journey",
}
CONDITIONS = {
    "": "(no condition)",
    "equals": "A field equals a value",
    "exists": "A field is filled in",
    "concern": "Has a skin concern",
    "tag": "Carries a tag",
    "consent": "Agreed to use of concern",
    "event": "Had an event (within)",
    "opened": "Opened a step's email",
    "clicked": "Clicked in a step's email",
}
ENTRIES = {
    "segment": "Everyone in the segment",
    "signup": "Whoever confirms a signup",
    "event": "Whoever has an event (e.g. enquired)",
    "date": "A number of days after (or before) a date they have",
    "manual": "Only people put in by hand",
}
REENTRIES = {"never": "Never: once only", "after": "Again after a number of days", "each_event": "Each new event"}
FORM_FIELDS = ("id", "name", "kind", "segment", "time_zone", "entry", "reentry", "goal", "steps")
SEND_EDITED = ("id", "kind", "next", "template", "subject", "variants")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, bool) else str(value)


def _clock(value: Any) -> str:
    """A time of day as the form shows it ("09:00"); YAML reads an unquoted 09:00 as minutes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value // 60 % 24:02d}:{value % 60:02d}"
    return _text(value)


def _condition_values(spec: Any) -> dict[str, str]:
    """One condition mapping as the form's (type, name, value)."""
    if not isinstance(spec, dict):
        return {"type": "", "name": "", "value": ""}
    if "field" in spec:
        if "exists" in spec:
            return {"type": "exists", "name": _text(spec["field"]), "value": ""}
        return {"type": "equals", "name": _text(spec["field"]), "value": _text(spec.get("equals"))}
    if "concern" in spec:
        return {"type": "concern", "name": "", "value": _text(spec["concern"])}
    if "tag" in spec:
        return {"type": "tag", "name": "", "value": _text(spec["tag"])}
    if "consent" in spec:
        return {"type": "consent", "name": "", "value": ""}
    if "event" in spec:
        return {"type": "event", "name": _text(spec["event"]), "value": _text(spec.get("within"))}
    engagement = _mapping(spec.get("engagement"))
    action = _text(engagement.get("action")) or "opened"
    return {"type": action, "name": _text(engagement.get("node")), "value": _text(engagement.get("link"))}


def _condition_of(kind: str, name: str, value: str) -> dict[str, Any] | None:
    """The form's (type, name, value) as a condition mapping (None for no condition)."""
    if kind == "equals":
        return {"field": name, "equals": value}
    if kind == "exists":
        return {"field": name, "exists": True}
    if kind in ("concern", "tag"):
        return {kind: value}
    if kind == "consent":
        return {"consent": "concern"}
    if kind == "event":
        return {"event": name, **({"within": value} if value else {})}
    if kind in ("opened", "clicked"):
        engagement = {"node": name, "action": kind}
        if kind == "clicked" and value:
            engagement["link"] = value
        return {"engagement": engagement}
    return None


def _empty_row() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(
        (
            "id",
            "kind",
            "next",
            "template",
            "subject",
            "delay",
            "until_time",
            "until_date",
            "offset",
            "at",
            "event",
            "eng_node",
            "eng_link",
            "timeout",
            "on_timeout",
            "default",
        ),
        "",
    )
    row |= {"wait_mode": "delay", "yearly": False, "wu_mode": "event", "eng_action": "opened", "variants": []}
    row["paths"] = [_empty_path() for _ in range(MIN_PATHS)]
    return row


def _empty_path() -> dict[str, str]:
    return {"type": "", "name": "", "value": "", "and-type": "", "and-name": "", "and-value": ""} | {
        "percent": "",
        "next": "",
    }


def _row_of(step: Mapping[str, Any]) -> dict[str, Any]:
    row = _empty_row()
    kind = _text(step.get("kind")) or "send"
    row |= {"id": _text(step.get("id")), "kind": kind, "next": _text(step.get("next"))}
    if kind == "send":
        row |= {"template": _text(step.get("template")), "subject": _text(step.get("subject"))}
        row["variants"] = [str(v) for v in step.get("variants") or []]
    elif kind == "wait":
        mode = next((k for k in ("delay", "until_time", "until_date") if k in step), "delay")
        row |= {"wait_mode": mode, "delay": _text(step.get("delay")), "until_time": _clock(step.get("until_time"))}
        row |= {"until_date": _text(step.get("until_date")), "offset": _text(step.get("offset"))}
        row |= {"at": _clock(step.get("at")), "yearly": step.get("yearly") is True}
    elif kind == "wait_until":
        engagement = _mapping(step.get("engagement"))
        row |= {"wu_mode": "engagement" if engagement else "event", "event": _text(step.get("event"))}
        row |= {"timeout": _text(step.get("timeout")), "on_timeout": _text(step.get("on_timeout"))}
        if engagement:
            row |= {"eng_node": _text(engagement.get("node")), "eng_action": _text(engagement.get("action"))}
            row["eng_link"] = _text(engagement.get("link"))
    elif kind in ("branch", "split"):
        paths = []
        for path in step.get("paths") or []:
            path = _mapping(path)
            when = _list(path.get("when"))
            shown = _condition_values(when[0] if when else None)
            second = {f"and-{k}": v for k, v in _condition_values(when[1] if len(when) > 1 else None).items()}
            paths.append(shown | second | {"percent": _text(path.get("percent")), "next": _text(path.get("next"))})
        spare = max(SPARE_PATHS, MIN_PATHS - len(paths))
        row["paths"] = paths + [_empty_path() for _ in range(spare)]
        row["default"] = _text(step.get("default"))
    return row


def form_values(document: Mapping[str, Any]) -> dict[str, Any]:
    """The form's values of a journey mapping (see the module contract)."""
    entry = _mapping(document.get("entry"))
    kind = next((k for k in ENTRIES if k in entry), "segment")
    reentry = document.get("reentry")
    goal = _mapping(document.get("goal"))
    where = _list(entry.get("where"))
    values: dict[str, Any] = {
        "id": _text(document.get("id")),
        "name": _text(document.get("name")),
        "segment": _text(document.get("segment")),
        "time_zone": _text(document.get("time_zone")) or "Europe/London",
        "entry_kind": kind,
        "entry_event": _text(entry.get("event")),
        "entry_date": _text(entry.get("date")),
        "entry_when": "before" if "before" in entry else "after",
        "entry_offset": _text(entry.get("before") or entry.get("after")),
        "entry_unless": entry.get("unless") == "future_appointment",
        "where": [_condition_values(c) for c in where[:WHERE_SLOTS]],
        "reentry": "after" if isinstance(reentry, dict) else (_text(reentry) or "never").replace(" ", "_"),
        "reentry_after": _text(reentry.get("after")) if isinstance(reentry, dict) else "",
        "goal_event": _text(goal.get("event")),
        "rows": [_row_of(s) for s in document.get("steps") or [] if isinstance(s, dict)],
    }
    values["where"] += [_condition_values(None) for _ in range(WHERE_SLOTS - len(values["where"]))]
    values["rows"] += [_empty_row() | {"kind": ""} for _ in range(SPARE_ROWS)]
    return values


def unshown(document: Mapping[str, Any]) -> list[str]:
    """What of the file the form cannot show, in words (empty: the form shows all of it)."""
    found = []
    entry = _mapping(document.get("entry"))
    if len(_list(entry.get("where"))) > WHERE_SLOTS:
        found.append(f"the entry has more than {WHERE_SLOTS} conditions")
    for step in document.get("steps") or []:
        if not isinstance(step, dict) or step.get("kind") != "branch":
            continue
        for path in step.get("paths") or []:
            if len(_list(_mapping(path).get("when"))) > PATH_CONDITIONS:
                found.append(f"a path of '{step.get('id')}' tests more than {PATH_CONDITIONS} conditions at once")
                break
    return found


def _indexes(form: Any) -> list[int]:
    return sorted({int(m.group(1)) for key in form for m in [re.match(r"n-(\d+)-", key)] if m})


def _path_indexes(form: Any, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"p-(\d+)-")
    return sorted({int(m.group(1)) for key in form for m in [pattern.match(key)] if m})


def _node_from_form(form: Any, prefix: str, kind: str) -> dict[str, Any]:
    def text(name: str) -> str:
        return str(form.get(prefix + name) or "").strip()

    node: dict[str, Any] = {"id": text("id")}
    if kind != "send":
        node["kind"] = kind
    if kind == "send":
        node["template"] = text("template")
        if text("subject"):
            node["subject"] = text("subject")
        variants = [str(v) for v in form.getlist(prefix + "variants")]
        if variants:
            node["variants"] = variants
    elif kind == "wait":
        mode = text("wait_mode") or "delay"
        if mode == "until_time":
            node["until_time"] = text("until_time")
        elif mode == "until_date":
            node["until_date"] = text("until_date")
            for key in ("offset", "at"):
                if text(key):
                    node[key] = text(key)
            if form.get(prefix + "yearly"):
                node["yearly"] = True
        else:
            node["delay"] = text("delay")
    elif kind == "wait_until":
        if text("wu_mode") == "engagement":
            engagement = {"node": text("eng_node"), "action": text("eng_action") or "opened"}
            if engagement["action"] == "clicked" and text("eng_link"):
                engagement["link"] = text("eng_link")
            node["engagement"] = engagement
        else:
            node["event"] = text("event")
        node["timeout"] = text("timeout")
        if text("on_timeout"):
            node["on_timeout"] = text("on_timeout")
    elif kind in ("branch", "split"):
        node["paths"] = _paths_from_form(form, prefix, kind)
        if kind == "branch" and text("default"):
            node["default"] = text("default")
    if kind in ("send", "wait", "wait_until", "goto") and text("next"):
        node["next"] = text("next")
    return node


def _paths_from_form(form: Any, prefix: str, kind: str) -> list[dict[str, Any]]:
    paths: list[dict[str, Any]] = []
    for number in _path_indexes(form, prefix):
        at = f"{prefix}p-{number}-"

        def text(name: str, at: str = at) -> str:
            return str(form.get(at + name) or "").strip()

        if kind == "split":
            if not text("percent") and not text("next"):
                continue
            percent = text("percent").rstrip("%").strip()
            paths.append({"percent": int(percent) if percent.isdigit() else percent, "next": text("next")})
            continue
        conditions = [
            _condition_of(text(f"{part}type"), text(f"{part}name"), text(f"{part}value")) for part in ("", "and-")
        ]
        when = [c for c in conditions if c is not None]
        if not when and not text("next"):
            continue
        paths.append({"when": when, "next": text("next")})
    return paths


def _entry_from_form(form: Any) -> dict[str, Any]:
    def text(name: str) -> str:
        return str(form.get(name) or "").strip()

    kind = text("entry_kind") or "segment"
    if kind == "signup":
        return {"signup": "confirmed"}
    if kind == "event":
        return {"event": text("entry_event")}
    if kind == "manual":
        return {"manual": True}
    if kind != "date":
        return {"segment": True}
    entry: dict[str, Any] = {"date": text("entry_date")}
    if text("entry_offset"):
        entry["before" if text("entry_when") == "before" else "after"] = text("entry_offset")
    where = []
    for number in range(WHERE_SLOTS):
        at = f"where-{number}-"
        condition = _condition_of(text(at + "type"), text(at + "name"), text(at + "value"))
        if condition is not None:
            where.append(condition)
    if where:
        entry["where"] = where
    if form.get("entry_unless"):
        entry["unless"] = "future_appointment"
    return entry


def document_from_form(form: Any, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A journey mapping from a submitted form (`form` has `get` and `getlist`, like Starlette's)."""

    def text(name: str) -> str:
        return str(form.get(name) or "").strip()

    document: dict[str, Any] = {"id": text("id"), "name": text("name") or text("id"), "kind": "journey"}
    document |= {"segment": text("segment"), "time_zone": text("time_zone") or "Europe/London"}
    document["entry"] = _entry_from_form(form)
    reentry = text("reentry") or "never"
    document["reentry"] = {"after": text("reentry_after")} if reentry == "after" else reentry
    if text("goal_event"):
        document["goal"] = {"event": text("goal_event")}
    steps = []
    for index in _indexes(form):
        prefix = f"n-{index}-"
        kind = str(form.get(prefix + "kind") or "").strip()
        if not kind and not str(form.get(prefix + "id") or "").strip():
            continue  # an empty row
        steps.append(_node_from_form(form, prefix, kind or "send"))
    document["steps"] = steps
    if previous:
        _keep_unedited(document, previous)
    return document


def _keep_unedited(document: dict[str, Any], previous: Mapping[str, Any]) -> None:
    """What the form does not show, kept from the file being edited (see the module contract)."""
    kept = {k: v for k, v in previous.items() if k not in FORM_FIELDS}
    document.update(kept)
    before = {s.get("id"): s for s in previous.get("steps") or [] if isinstance(s, dict)}
    for step in document["steps"]:
        old = before.get(step["id"])
        if old is None or step.get("kind", "send") != "send" or old.get("kind", "send") != "send":
            continue
        step.update({k: v for k, v in old.items() if k not in SEND_EDITED})


def dump(document: Mapping[str, Any]) -> str:
    """The journey mapping as the YAML text of its file."""
    return yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=110)


_STEP_FIELD = re.compile(r"^steps\[(\d+)\](?:\.(.*))?$")
_NODE_KEYS = {
    "engagement.node": "eng_node",
    "engagement.action": "eng_action",
    "engagement.link": "eng_link",
    "engagement": "eng_node",
    "paths": "p-0-next",
}


def _node_field(index: str, rest: str) -> str:
    path = re.match(r"^paths\[(\d+)\](?:\.(\w+))?(?:\[(\d+)\])?", rest)
    if path:
        key = path.group(2) or "next"
        if key == "when":
            key = "and-type" if path.group(3) and int(path.group(3)) > 0 else "type"
        return f"n-{index}-p-{path.group(1)}-{key}"
    if rest.startswith("paths[") or rest.startswith("engagement") or rest in _NODE_KEYS:
        return f"n-{index}-{_NODE_KEYS.get(rest, _NODE_KEYS.get(rest.split('.')[0], 'id'))}"
    key = rest.split(".")[0]
    known = set(_empty_row()) - {"paths"}
    return f"n-{index}-{key}" if key in known else f"n-{index}"


def field_of(error_field: str) -> str:
    """The form field a loader error is about (see the module contract); `general` when none fits."""
    step = _STEP_FIELD.match(error_field)
    if step:
        return _node_field(step.group(1), step.group(2) or "") if step.group(2) else f"n-{step.group(1)}"
    if error_field == "steps":
        return "n-0-id"
    where = re.match(r"^entry\.where\[(\d+)\]", error_field)
    if where:
        return f"where-{where.group(1)}-type"
    return {
        "entry": "entry_kind",
        "entry.where": "where-0-type",
        "entry.event": "entry_event",
        "entry.date": "entry_date",
        "entry.after": "entry_offset",
        "entry.before": "entry_offset",
        "entry.unless": "entry_unless",
        "reentry": "reentry",
        "reentry.after": "reentry_after",
        "goal": "goal_event",
        "goal.event": "goal_event",
    }.get(error_field, error_field if error_field in ("id", "name", "segment", "time_zone") else "general")


def line_of(text: str, error_field: str) -> int | None:
    """The line (from 1) of `text` where `error_field` (`steps[2].paths[0].next`) is, or its nearest enclosing
    part; None when the text is not YAML or the field is not there."""
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = None
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", error_field):
        if isinstance(node, yaml.SequenceNode) and part.startswith("["):
            number = int(part[1:-1])
            if number >= len(node.value):
                break
            node = node.value[number]
        elif isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if getattr(k, "value", None) == part]
            if not found:
                break
            key, node = found[0]
            line = key.start_mark.line + 1
            continue
        else:
            break
        line = node.start_mark.line + 1
    return line
