"""Read a journey's graph from its campaign file (`kind: journey`); every error names the file, the field and
the fix. The campaign loader (`needlecast.campaign.definition.loader`) reads the send nodes as steps and
calls `read_journey` for the rest.

The shape (a complete example is in the README's Journeys section):

    kind: journey
    entry: {segment: true}                  # or {signup: confirmed} | {event: enquired} | {manual: true}
                                            # or {date: last_treatment_at, after: 90d,
                                            #     where: [{field: last_treatment, equals: anti-wrinkle}],
                                            #     unless: future_appointment}
    reentry: never                          # or {after: 30d} | each_event
    goal: {event: booked}                   # exits the person wherever they are, as a conversion
    steps:
      - {id: welcome, template: emails/welcome}                    # kind: send (the default)
      - {id: pause, kind: wait, delay: 2d}                         # or until_time: "09:00"
                                                                   # or until_date: birthday, offset: -7d,
                                                                   #    at: "09:00", yearly: true
      - {id: booked-yet, kind: wait_until, event: booked, timeout: 7d, next: thanks, on_timeout: nudge}
      - {id: opened-yet, kind: wait_until, engagement: {node: welcome, action: clicked, link: "/book"},
         timeout: 3d, on_timeout: nudge}
      - {id: route, kind: branch, paths: [{when: [{concern: acne}], next: acne-tips}], default: nudge}
      - {id: ab, kind: split, paths: [{percent: 50, next: a}, {percent: 50, next: b}]}
      - {id: again, kind: goto, next: pause}
      - {id: done, kind: exit}

A node's `next` defaults to the node after it in the file (the last one's: exit). Contract: `read_journey`
returns a `Journey` whose every successor exists, or raises `CampaignFileError`; a cycle of nodes through
which a person could go round without ever waiting (a goto back with no wait or wait-until on the way) is
refused, naming the node and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import time, timedelta
from pathlib import Path as FilePath
from typing import Any

from needlecast.campaign.journeys.model import (
    AFTER,
    BRANCH,
    CLICKED,
    EACH_EVENT,
    ENTRY_DATE,
    ENTRY_EVENT,
    ENTRY_MANUAL,
    ENTRY_SEGMENT,
    ENTRY_SIGNUP,
    EXIT,
    GOTO,
    NEVER,
    NODE_KINDS,
    OPENED,
    SEND,
    SPLIT,
    WAIT,
    WAIT_UNTIL,
    BranchNode,
    Condition,
    Engagement,
    Entry,
    ExitNode,
    GotoNode,
    Journey,
    Node,
    Path,
    Reentry,
    SendNode,
    SplitNode,
    WaitNode,
    WaitUntilNode,
)
from needlecast.errors import CampaignFileError

MAX_NODE_ID = 48  # the ledger's step id is `node#entry`, at most 64 characters
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")
_DELAY = re.compile(r"^\s*(-?)(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# The keys a step may carry in a journey, beyond a campaign step's own (send nodes).
NODE_KEYS = {
    "kind",
    "next",
    "delay",
    "until_time",
    "until_date",
    "offset",
    "at",
    "timeout",
    "on_timeout",
    "event",
    "engagement",
    "paths",
    "default",
    "yearly",
}
JOURNEY_TOP_KEYS = {"entry", "reentry", "goal"}
_KEYS_OF = {
    WAIT: {"id", "kind", "next", "delay", "until_time", "until_date", "offset", "at", "yearly"},
    WAIT_UNTIL: {"id", "kind", "next", "timeout", "on_timeout", "event", "engagement"},
    BRANCH: {"id", "kind", "paths", "default"},
    SPLIT: {"id", "kind", "paths"},
    GOTO: {"id", "kind", "next"},
    EXIT: {"id", "kind"},
}
CONDITION_KEYS = {"field", "equals", "exists", "concern", "tag", "consent", "event", "within", "engagement"}
ENGAGEMENT_KEYS = {"node", "action", "link"}
ENTRY_KEYS = {"segment", "signup", "event", "date", "after", "before", "where", "unless", "manual"}


class _Reader:
    def __init__(self, path: FilePath) -> None:
        self.path = path

    def fail(self, field: str, problem: str, fix: str) -> CampaignFileError:
        return CampaignFileError(str(self.path), field, problem, fix)

    def keys(self, data: Any, allowed: set[str], where: str, example: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(where, "must be a mapping", f"write it like {example}")
        for key in data:
            if key not in allowed:
                raise self.fail(
                    f"{where}.{key}", f"is not a field of '{where}'", f"use one of: {', '.join(sorted(allowed))}"
                )
        return data

    def delay(self, value: Any, where: str, *, signed: bool = False) -> timedelta:
        match = _DELAY.match(str(value))
        if not match or (match.group(1) and not signed):
            sign = "an optional minus, " if signed else ""
            raise self.fail(
                where, f"'{value}' is not a length of time", f"write {sign}a number and a unit: 12h, 3d, 2w"
            )
        amount = timedelta(**{_UNITS[match.group(3)]: int(match.group(2))})
        return -amount if match.group(1) else amount

    def time_of_day(self, value: Any, where: str) -> time:
        if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 09:00 unquoted as minutes
            return time(value // 60 % 24, value % 60)
        try:
            return time.fromisoformat(str(value).strip())
        except ValueError:
            raise self.fail(where, f"'{value}' is not a time of day", 'write it like "09:00"') from None

    def text(self, data: dict[str, Any], key: str, where: str) -> str:
        value = data.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, str | int | float) or value == "":
            raise self.fail(f"{where}.{key}", "must be text", f"write {key}: ...")
        return str(value)


def read_journey(
    path: FilePath, raw: dict[str, Any], send_ids: Collection[str], event_types: Collection[str] | None = None
) -> Journey:
    """The journey of a campaign file's `raw` mapping; `send_ids` are the steps read as send nodes."""
    reader = _Reader(path)
    items = raw.get("steps")
    assert isinstance(items, list)  # the campaign loader checked it
    ids = [str(item.get("id", "")) for item in items]
    for index, node_id in enumerate(ids):
        if not _ID.match(node_id):
            raise reader.fail(
                f"steps[{index}].id",
                f"'{node_id}' is not a node id (letters, digits, - and _, at most {MAX_NODE_ID} characters)",
                "use a short id such as 'welcome'",
            )
    nodes: dict[str, Node] = {}
    for index, item in enumerate(items):
        following = ids[index + 1] if index + 1 < len(ids) else ""
        node = _node(reader, item, index, following, set(ids))
        if node.id in nodes:
            raise reader.fail(
                f"steps[{index}].id", f"'{node.id}' is used by another node", "give every node its own id"
            )
        nodes[node.id] = node
    assert set(send_ids) <= set(nodes)
    for node in nodes.values():
        for condition in _conditions_of(node):
            if condition.engagement is not None:
                _check_engagement(reader, condition.engagement, nodes, node.field)
    refuse_cycles_without_wait(reader.path, nodes)
    return Journey(
        nodes,
        _entry(reader, raw.get("entry")),
        _reentry(reader, raw.get("reentry"), raw.get("entry")),
        _goal(reader, raw.get("goal")),
    )


def _conditions_of(node: Node) -> list[Condition]:
    if isinstance(node, BranchNode):
        return [c for p in node.paths for c in p.conditions]
    if isinstance(node, WaitUntilNode) and node.engagement is not None:
        return [Condition(engagement=node.engagement)]
    return []


def _check_engagement(reader: _Reader, engagement: Engagement, nodes: dict[str, Node], where: str) -> None:
    target = nodes.get(engagement.node)
    if not isinstance(target, SendNode):
        sends = ", ".join(n.id for n in nodes.values() if isinstance(n, SendNode)) or "none"
        raise reader.fail(
            f"{where}.engagement.node", f"'{engagement.node}' is not a send node", f"name one of: {sends}"
        )


def _target(reader: _Reader, value: Any, where: str, ids: set[str]) -> str:
    target = str(value or "")
    if target not in ids:
        raise reader.fail(where, f"'{target}' is not a node of this journey", f"name one of: {', '.join(sorted(ids))}")
    return target


def _node(reader: _Reader, item: dict[str, Any], index: int, following: str, ids: set[str]) -> Node:
    where = f"steps[{index}]"
    kind = str(item.get("kind", SEND))
    if kind not in NODE_KINDS:
        raise reader.fail(f"{where}.kind", f"'{kind}' is not a kind of node", f"use one of: {', '.join(NODE_KINDS)}")
    node_id = str(item["id"])
    if kind == SEND:
        return SendNode(
            node_id, index, _target(reader, item["next"], f"{where}.next", ids) if "next" in item else following
        )
    reader.keys(item, _KEYS_OF[kind], where, "{id: pause, kind: wait, delay: 2d}")
    nxt = _target(reader, item["next"], f"{where}.next", ids) if "next" in item else following
    if kind == WAIT:
        return _wait(reader, item, node_id, index, nxt)
    if kind == WAIT_UNTIL:
        return _wait_until(reader, item, node_id, index, nxt, ids)
    if kind == BRANCH:
        paths = _paths(reader, item, where, ids, branch=True)
        default = _target(reader, item["default"], f"{where}.default", ids) if "default" in item else following
        return BranchNode(node_id, index, default, paths)
    if kind == SPLIT:
        paths = _paths(reader, item, where, ids, branch=False)
        if sum(p.percent for p in paths) != 100:
            raise reader.fail(f"{where}.paths", "the percentages do not add up to 100", "e.g. 50 and 50")
        return SplitNode(node_id, index, "", paths)
    if kind == GOTO:
        if "next" not in item:
            raise reader.fail(f"{where}.next", "is missing: a goto names where it goes", "write next: <a node id>")
        return GotoNode(node_id, index, nxt)
    return ExitNode(node_id, index, "")


def _wait(reader: _Reader, item: dict[str, Any], node_id: str, index: int, nxt: str) -> WaitNode:
    where = f"steps[{index}]"
    given = [k for k in ("delay", "until_time", "until_date") if k in item]
    if len(given) != 1:
        raise reader.fail(
            where,
            "a wait needs exactly one of delay, until_time, until_date",
            'write delay: 2d, or until_time: "09:00", or until_date: birthday (with offset: -7d)',
        )
    if "delay" in item:
        return WaitNode(node_id, index, nxt, delay=reader.delay(item["delay"], f"{where}.delay"))
    if "until_time" in item:
        return WaitNode(node_id, index, nxt, until_time=reader.time_of_day(item["until_time"], f"{where}.until_time"))
    offset = reader.delay(item["offset"], f"{where}.offset", signed=True) if "offset" in item else timedelta(0)
    at = reader.time_of_day(item["at"], f"{where}.at") if "at" in item else time(9, 0)
    yearly = item.get("yearly", False)
    if not isinstance(yearly, bool):
        raise reader.fail(f"{where}.yearly", f"must be true or false, not {yearly!r}", "write yearly: true")
    field = reader.text(item, "until_date", where)
    return WaitNode(node_id, index, nxt, until_date=field, offset=offset, at=at, yearly=yearly)


def _wait_until(
    reader: _Reader, item: dict[str, Any], node_id: str, index: int, nxt: str, ids: set[str]
) -> WaitUntilNode:
    where = f"steps[{index}]"
    if ("event" in item) == ("engagement" in item):
        raise reader.fail(
            where,
            "a wait_until waits for one thing: an event or an engagement",
            "write event: booked, or engagement: {node: welcome, action: clicked}",
        )
    if "timeout" not in item:
        raise reader.fail(f"{where}.timeout", "is missing: nobody waits for ever", "write timeout: 7d")
    timeout = reader.delay(item["timeout"], f"{where}.timeout")
    on_timeout = _target(reader, item["on_timeout"], f"{where}.on_timeout", ids) if "on_timeout" in item else nxt
    engagement = _engagement(reader, item["engagement"], f"{where}.engagement") if "engagement" in item else None
    event = reader.text(item, "event", where) if "event" in item else ""
    return WaitUntilNode(node_id, index, nxt, timeout, on_timeout, event, engagement)


def _engagement(reader: _Reader, raw: Any, where: str) -> Engagement:
    spec = reader.keys(raw, ENGAGEMENT_KEYS, where, "{node: welcome, action: clicked, link: /book}")
    action = str(spec.get("action", ""))
    if action not in (OPENED, CLICKED):
        raise reader.fail(f"{where}.action", f"'{action}' is not an engagement", f"use {OPENED} or {CLICKED}")
    if spec.get("link") and action != CLICKED:
        raise reader.fail(f"{where}.link", "only a click has a link", "write action: clicked")
    return Engagement(reader.text(spec, "node", where), action, str(spec.get("link") or ""))


def _paths(reader: _Reader, item: dict[str, Any], where: str, ids: set[str], *, branch: bool) -> tuple[Path, ...]:
    raw = item.get("paths")
    example = "[{when: [{concern: acne}], next: acne-tips}]" if branch else "[{percent: 50, next: a}, ...]"
    if not isinstance(raw, list) or not raw:
        raise reader.fail(f"{where}.paths", "must list at least one path", f"write paths: {example}")
    paths = []
    for number, spec in enumerate(raw):
        at = f"{where}.paths[{number}]"
        spec = reader.keys(spec, {"when", "next"} if branch else {"percent", "next"}, at, example)
        target = _target(reader, spec.get("next"), f"{at}.next", ids)
        if branch:
            paths.append(Path(target, conditions(reader.path, spec.get("when"), f"{at}.when")))
            continue
        percent = spec.get("percent")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 < percent <= 100:
            raise reader.fail(f"{at}.percent", f"{percent!r} is not a whole percentage", "e.g. percent: 50")
        paths.append(Path(target, percent=percent))
    return tuple(paths)


def conditions(path: FilePath, raw: Any, where: str) -> tuple[Condition, ...]:
    """A list of conditions (all must hold), each a mapping with one test (see `Condition`)."""
    reader = _Reader(path)
    if not isinstance(raw, list) or not raw:
        raise reader.fail(where, "must list at least one condition", "write when: [{concern: acne}]")
    found = []
    for number, spec in enumerate(raw):
        at = f"{where}[{number}]"
        spec = reader.keys(spec, CONDITION_KEYS, at, "{field: booked, equals: 'yes'}")
        groups = [g for g in ("field", "concern", "tag", "consent", "event", "engagement") if g in spec]
        if len(groups) != 1:
            raise reader.fail(
                at, "must test exactly one thing", "write one of field, concern, tag, consent, event, engagement"
            )
        group = groups[0]
        if group == "field":
            equals = spec.get("equals")
            exists = spec.get("exists")
            if (equals is None) == (exists is None):
                raise reader.fail(at, "a field test needs equals or exists", "write {field: booked, equals: 'yes'}")
            found.append(
                Condition(
                    field=reader.text(spec, "field", at),
                    equals=None if equals is None else str(equals).lower(),
                    exists=None if exists is None else bool(exists),
                )
            )
        elif group == "engagement":
            found.append(Condition(engagement=_engagement(reader, spec["engagement"], f"{at}.engagement")))
        elif group == "event":
            within = reader.delay(spec["within"], f"{at}.within") if "within" in spec else None
            found.append(Condition(event=reader.text(spec, "event", at), within=within))
        elif group == "consent":
            if spec["consent"] != "concern":
                raise reader.fail(
                    f"{at}.consent", f"'{spec['consent']}' is not a consent a branch can test", "write consent: concern"
                )
            found.append(Condition(consent="concern"))
        elif group == "concern":
            found.append(Condition(concern=reader.text(spec, "concern", at)))
        else:
            found.append(Condition(tag=reader.text(spec, "tag", at)))
    return tuple(found)


def _entry(reader: _Reader, raw: Any) -> Entry:
    if raw is None:
        return Entry()
    spec = reader.keys(raw, ENTRY_KEYS, "entry", "{segment: true}")
    kinds = [k for k in ("segment", "signup", "event", "date", "manual") if k in spec]
    if len(kinds) != 1:
        raise reader.fail("entry", "must name one way in", "write one of segment, signup, event, date, manual")
    kind = kinds[0]
    extra = set(spec) - {kind} - ({"after", "before", "where", "unless"} if kind == ENTRY_DATE else set())
    if extra:
        raise reader.fail(f"entry.{sorted(extra)[0]}", f"does not go with entry {kind}", "remove it")
    if kind == ENTRY_SIGNUP and spec["signup"] != "confirmed":
        raise reader.fail("entry.signup", f"'{spec['signup']}' is not a signup state", "write signup: confirmed")
    if kind == ENTRY_EVENT:
        return Entry(ENTRY_EVENT, event=reader.text(spec, "event", "entry"))
    if kind != ENTRY_DATE:
        return Entry({"segment": ENTRY_SEGMENT, "signup": ENTRY_SIGNUP, "manual": ENTRY_MANUAL}[kind])
    if "after" in spec and "before" in spec:
        raise reader.fail("entry", "gives both after and before", "keep one")
    offset = timedelta(0)
    if "after" in spec:
        offset = reader.delay(spec["after"], "entry.after")
    elif "before" in spec:
        offset = -reader.delay(spec["before"], "entry.before")
    unless = spec.get("unless")
    if unless not in (None, "future_appointment"):
        raise reader.fail("entry.unless", f"'{unless}' is not a rule", "write unless: future_appointment")
    where = conditions(reader.path, spec["where"], "entry.where") if "where" in spec else ()
    return Entry(
        ENTRY_DATE,
        date_field=reader.text(spec, "date", "entry"),
        offset=offset,
        where=where,
        unless_appointment=bool(unless),
    )


def _reentry(reader: _Reader, raw: Any, entry: Any) -> Reentry:
    if raw is None or raw == NEVER:
        return Reentry()
    if raw in (EACH_EVENT, "each event"):
        if isinstance(entry, dict) and ("segment" in entry or "manual" in entry or not entry):
            raise reader.fail(
                "reentry", "each_event needs an entry by event, signup or date", "write reentry: {after: 30d}"
            )
        return Reentry(EACH_EVENT)
    if isinstance(raw, dict) and set(raw) == {"after"}:
        return Reentry(AFTER, reader.delay(raw["after"], "reentry.after"))
    raise reader.fail("reentry", f"{raw!r} is not a re-entry rule", "write never, each_event or {after: 30d}")


def _goal(reader: _Reader, raw: Any) -> str:
    if raw is None:
        return ""
    spec = reader.keys(raw, {"event"}, "goal", "{event: booked}")
    return reader.text(spec, "event", "goal")


def _edge_field(node: Node, target: str) -> str:
    """The field of `node` that names `target`: `steps[2].next`, `steps[2].paths[1].next`, `steps[2].default`."""
    if isinstance(node, BranchNode | SplitNode):
        for number, path in enumerate(node.paths):
            if path.target == target:
                return f"{node.field}.paths[{number}].next"
        return f"{node.field}.default"
    if isinstance(node, WaitUntilNode) and node.next != target:
        return f"{node.field}.on_timeout"
    return f"{node.field}.next"


def refuse_cycles_without_wait(path: FilePath, nodes: dict[str, Node]) -> None:
    """Refuse a loop through which a person could go round in one sweep: every cycle of the graph must pass
    a wait with a delay, or a wait-until (Mautic #16262: a deleted decision looped a send 11,500 times)."""

    def holds(node: Node) -> bool:
        return (isinstance(node, WaitNode) and node.breaks_cycle) or isinstance(node, WaitUntilNode)

    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node_id: str, trail: list[str]) -> None:
        state[node_id] = 1
        trail.append(node_id)
        for target in nodes[node_id].targets():
            if holds(nodes[target]):
                continue
            if state.get(target) == 1:
                loop = [*trail[trail.index(target) :], target]
                culprit = nodes[trail[-1]]
                raise CampaignFileError(
                    str(path),
                    _edge_field(culprit, target),
                    f"'{culprit.id}' leads back to '{target}' with no wait on the way ({' -> '.join(loop)}): "
                    "a person would go round without end",
                    f"add a wait node on the loop (e.g. {{id: pause, kind: wait, delay: 1d}} before '{target}'), "
                    "or point it elsewhere",
                )
            if state.get(target) is None:
                visit(target, trail)
        trail.pop()
        state[node_id] = 2

    for node_id, node in nodes.items():
        if state.get(node_id) is None and not holds(node):
            visit(node_id, [])
