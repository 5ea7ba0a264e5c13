"""Load and validate campaign files: every error names the file, the field and the fix.

The shape (see campaigns/*.yaml for complete examples):

    id: spring-guide                 # letters, digits, - and _; unique across the workspace
    name: Spring guide
    kind: broadcast | sequence | journey   # journey: steps are the nodes of a graph, with entry:, reentry:
                                     #   and goal: (`needlecast.campaign.journeys.loader`; README "Journeys")
    draft: true                      # optional: planned and previewed, never scheduled or sent
    segment: all-leads               # from audiences/segments.yaml
    time_zone: Europe/London
    sender: {email: ..., name: ...}  # optional; default [clinic] sender_email / sender_name
    reply_to: ...                    # optional
    article: peels                   # optional: the article every step draws on (content/peels.md);
                                     #   default [content] article
    steps:
      - id: guide
        template: emails/broadcast   # templates/emails/broadcast.html + .txt
        subject: "..."               # optional; default the template's subject block
        preheader: "..."             # optional
        variants: [acne, general]    # optional; default every concern and general
        ab: {split: [50, 50], subjects: ["...", "..."]}   # optional A/B subject arms; broadcasts may test
                                     #   a slice first: test_fraction: 0.2, decide_after: 4h,
                                     #   metric: opens | clicks | conversions, confidence: 0.95,
                                     #   fallback: A | better (then the rest gets the winner)
        delay: 3d                    # sequences: after enrolment (0d, 12h, 3d, 2w)
        optimise: true               # sequences: the best hour within 24h of the delay (window, holdout,
                                     #   min_events as for a broadcast's schedule)
        article: peels               # optional: this step's article (default the campaign's)
        sections: {concern: auto, from: all}   # optional: each variant gets its concern's sections from
                                     #   every article of the library (from: article, the default, only its own)
    schedule:                        # broadcasts: one of
      send_at: "2026-12-01 09:00"    #   a moment in the campaign's zone
      local_time: "09:00"            #   or that hour in each recipient's zone
      date: "2026-12-01"             #   on this date
      optimise: true                 # optional: each recipient's best hour within `window` (24h) after
                                     #   that; holdout: 0.1 go at the plain time; min_events: 5
    enrol: {joined_after: "2026-01-01", tag: nurture}   # sequences: who enrols (or {event: enquired}:
                                     #   whoever the clinic's systems report an `enquired` event for)
    exits: [{event: booked}, {field: booked, equals: "yes"}]   # sequences: who leaves early
    signoff: {reviewer: "...", date: 2026-11-20, note: "..."}  # required when lint finds errors; the console
                                     # adds `covers`: the digests of the files it reviewed

Contract: `load_campaign(path, variants, templates=..., segments=...)` returns a `Campaign` or raises
`CampaignFileError`. Every mapping, at every level, is checked against its known keys, so a misspelt
option is an error listing the valid ones, never ignored. When `templates` (the emails that exist) and
`segments` (the segments defined) and `articles` (the article ids of content/) are given, every step's
template, the segment and every article named must be among them.
`load_campaigns(folder, ...)` reads every file on its own: a file that fails is reported in `problems`
and the others still load.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from needlecast.audience.events import KNOWN_TYPES
from needlecast.audience.events import TYPE as EVENT_TYPE
from needlecast.campaign.definition.model import (
    BROADCAST,
    FALLBACKS,
    JOURNEY,
    SEQUENCE,
    WINNER_METRICS,
    Arm,
    BroadcastSchedule,
    Campaign,
    Enrolment,
    ExitRule,
    Optimise,
    SignOff,
    Step,
    WinnerTest,
)
from needlecast.campaign.journeys.loader import JOURNEY_TOP_KEYS, read_journey
from needlecast.campaign.journeys.straight import straight_line
from needlecast.errors import CampaignFileError
from needlecast.yamlfile import parse_yaml

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"  # a campaign's or a step's id
_ID = re.compile(ID_PATTERN)
_DELAY = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def is_campaign_id(text: str) -> bool:
    """Whether `text` can be a campaign's id at all (what the loader takes): anything else names none, and is
    never sent to the store (PostgreSQL refuses a NUL in a query with an error, not a miss)."""
    return _ID.fullmatch(text) is not None


TOP_KEYS = {
    "id",
    "name",
    "kind",
    "draft",
    "segment",
    "time_zone",
    "sender",
    "reply_to",
    "article",
    "steps",
    "schedule",
    "enrol",
    "exits",
    "signoff",
    *JOURNEY_TOP_KEYS,
}
STEP_KEYS = {
    "id",
    "template",
    "subject",
    "preheader",
    "variants",
    "ab",
    "delay",
    "article",
    "sections",
    "optimise",
    "window",
    "holdout",
    "min_events",
}
SECTIONS_KEYS = {"concern", "from"}
SECTIONS_FROM = ("article", "all")
AB_KEYS = {"split", "subjects", "test_fraction", "decide_after", "metric", "confidence", "fallback"}
WINNER_KEYS = {"test_fraction", "decide_after", "metric", "confidence", "fallback"}
SCHEDULE_KEYS = {"send_at", "local_time", "date", "optimise", "window", "holdout", "min_events"}
OPTIMISE_KEYS = {"optimise", "window", "holdout", "min_events"}
MAX_WINDOW = timedelta(days=7)
ENROL_KEYS = {"joined_after", "tag", "event"}
EXIT_KEYS = {"field", "equals", "event"}
SENDER_KEYS = {"email", "name"}
SIGNOFF_KEYS = {"reviewer", "date", "note", "covers"}


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
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(f"{where}{key}", f"must be text, not {type(value).__name__}", fix or "write it as text")
        return str(value)

    def mapping(self, value: Any, where: str, allowed: set[str], example: str) -> dict[str, Any]:
        """`value` as a mapping whose keys are all in `allowed` (`where` names it, e.g. 'steps[0].ab')."""
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping", f"write {where.rsplit('.', 1)[-1]}: {example}")
        self.unknown(value, allowed, f"{where}.")
        return value

    def unknown(self, data: dict[str, Any], allowed: set[str], where: str) -> None:
        for key in data:
            if key not in allowed:
                what = "campaign field" if not where else f"field of '{where.rstrip('.')}'"
                raise self.fail(
                    f"{where}{key}", f"is not a {what}", f"remove it, or use one of: {', '.join(sorted(allowed))}"
                )


def parse_delay(text: str) -> timedelta:
    """'3d' -> 3 days (units m, h, d, w); `ValueError` for anything else (the loader names the field)."""
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
    if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 09:00 unquoted as minutes (base 60)
        return time(value // 60 % 24, value % 60)
    try:
        return time.fromisoformat(str(value).strip())
    except ValueError:
        raise reader.fail(field, f"'{value}' is not a time of day", 'write it like "09:00"') from None


def _arms(reader: _Reader, raw: Any, where: str) -> tuple[Arm, ...]:
    ab = reader.mapping(raw, f"{where}ab", AB_KEYS, '{split: [50, 50], subjects: ["First", "Second"]}')
    subjects = ab.get("subjects")
    if not isinstance(subjects, list) or len(subjects) < 2 or not all(isinstance(s, str) and s for s in subjects):
        raise reader.fail(
            f"{where}ab.subjects",
            "needs two or more subject lines",
            'write ab: {split: [50, 50], subjects: ["First", "Second"]}',
        )
    if len(subjects) > 26:
        raise reader.fail(f"{where}ab.subjects", "has more than 26 subject lines", "test at most 26 arms (A to Z)")
    split = ab.get("split") or [100 // len(subjects)] * len(subjects)
    if not ab.get("split") and 100 % len(subjects):
        split[-1] += 100 - sum(split)
    if (
        not isinstance(split, list)
        or len(split) != len(subjects)
        or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in split)
        or sum(split) != 100
    ):
        raise reader.fail(
            f"{where}ab.split",
            f"{split!r} must be one whole percentage per subject, adding up to 100",
            "e.g. split: [50, 50]",
        )
    return tuple(Arm(chr(ord("A") + i), s, p) for i, (s, p) in enumerate(zip(subjects, split, strict=True)))


def _winner_test(reader: _Reader, raw: Any, where: str, kind: str) -> WinnerTest | None:
    ab = raw if isinstance(raw, dict) else {}
    if not WINNER_KEYS & set(ab):
        return None
    field = f"{where}ab"
    example = "test_fraction: 0.2, decide_after: 4h"
    if kind != BROADCAST:
        raise reader.fail(
            f"{field}.test_fraction",
            "a winner test needs one audience to split: only broadcasts have one",
            "remove test_fraction and decide_after (a sequence's arms split every enrolment), or use a broadcast",
        )
    for key in ("test_fraction", "decide_after"):
        if key not in ab:
            raise reader.fail(f"{field}.{key}", "is missing: a winner test needs both", f"write ab: {{..., {example}}}")
    fraction = ab["test_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise reader.fail(
            f"{field}.test_fraction",
            f"{fraction!r} is not a share of the audience between 0 and 1",
            "e.g. test_fraction: 0.2 (a fifth is tested, the rest gets the winner)",
        )
    try:
        decide_after = parse_delay(str(ab["decide_after"]))
    except ValueError:
        raise reader.fail(
            f"{field}.decide_after", f"'{ab['decide_after']}' is not a delay", "write a number and a unit: 4h, 1d"
        ) from None
    if decide_after <= timedelta(0):
        raise reader.fail(f"{field}.decide_after", "must be longer than 0", "give the test time: e.g. 4h")
    metric = str(ab.get("metric", "clicks"))
    if metric not in WINNER_METRICS:
        raise reader.fail(f"{field}.metric", f"'{metric}' is not a metric", f"use one of: {', '.join(WINNER_METRICS)}")
    confidence = ab.get("confidence", 0.95)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0.5 <= confidence < 1:
        raise reader.fail(
            f"{field}.confidence",
            f"{confidence!r} is not a confidence level",
            "e.g. confidence: 0.95 (from 0.5 to 0.99)",
        )
    fallback = str(ab.get("fallback", "A"))
    if fallback not in FALLBACKS:
        raise reader.fail(
            f"{field}.fallback",
            f"'{fallback}' is not a fallback",
            "write fallback: A (arm A when no arm wins clearly) or fallback: better (the better rate)",
        )
    return WinnerTest(float(fraction), decide_after, metric, float(confidence), fallback)


def _article(reader: _Reader, data: dict[str, Any], where: str, articles: Collection[str] | None) -> str:
    article = reader.text(data, "article", where, required=False)
    if article and articles is not None and article not in articles:
        raise reader.fail(
            f"{where}article",
            f"'{article}' is not an article in content/ (its id is the file name without .txt, .md or .html)",
            f"use one of: {', '.join(sorted(articles)) or 'none'} (`needlecast content list`)",
        )
    return article


def _library_wide(reader: _Reader, item: dict[str, Any], where: str) -> bool:
    if item.get("sections") is None:
        return False
    spec = reader.mapping(item["sections"], f"{where}sections", SECTIONS_KEYS, "{concern: auto, from: all}")
    if spec.get("concern", "auto") != "auto":
        raise reader.fail(
            f"{where}sections.concern",
            f"'{spec.get('concern')}' is not a choice of sections",
            "write concern: auto (each variant gets its own concern's sections)",
        )
    source = spec.get("from", "article")
    if source not in SECTIONS_FROM:
        raise reader.fail(
            f"{where}sections.from",
            f"'{source}' is not where sections come from",
            "write from: all (every article of the library) or from: article (the step's article)",
        )
    return bool(source == "all")


def _steps(
    reader: _Reader,
    raw: Any,
    kind: str,
    variants_known: tuple[str, ...],
    templates: Collection[str] | None,
    articles: Collection[str] | None,
    campaign_article: str,
) -> tuple[Step, ...]:
    """Every step, checked in file order (the first problem is the one reported); a sequence's steps must
    come in order of their delay."""
    if not isinstance(raw, list) or not raw:
        raise reader.fail("steps", "must list at least one step", "add 'steps:' with '- id: ...' and 'template: ...'")
    steps: list[Step] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise reader.fail(f"steps[{index}]", "must be a mapping", "give each step 'id:' and 'template:'")
        if kind == JOURNEY and item.get("kind", "send") != "send":
            continue  # a journey's other nodes: `needlecast.campaign.journeys.loader`
        step_id = _step_id(reader, item, f"steps[{index}].", steps, kind)
        steps.append(_step(reader, item, index, step_id, kind, variants_known, templates, articles, campaign_article))
    if kind == SEQUENCE:
        delays = [s.delay for s in steps]
        if delays != sorted(delays):
            raise reader.fail("steps", "sequence steps are not in order of their delay", "order them 0d, 3d, 7d ...")
    return tuple(steps)


def _step_id(reader: _Reader, item: dict[str, Any], where: str, earlier: list[Step], kind: str) -> str:
    """The step's keys are known and its `id` is well formed and not taken by an `earlier` step (a journey's
    send node has no delay and may name its `kind` and `next`)."""
    reader.unknown(item, STEP_KEYS - {"delay"} | {"kind", "next"} if kind == JOURNEY else STEP_KEYS, where)
    step_id = reader.text(item, "id", where)
    if not _ID.match(step_id):
        raise reader.fail(
            f"{where}id",
            f"'{step_id}' has characters other than letters, digits, - and _",
            "use a short id such as 'welcome'",
        )
    if any(s.id == step_id for s in earlier):
        raise reader.fail(f"{where}id", f"'{step_id}' is used by another step", "give every step its own id")
    return step_id


def _step(
    reader: _Reader,
    item: dict[str, Any],
    index: int,
    step_id: str,
    kind: str,
    variants_known: tuple[str, ...],
    templates: Collection[str] | None,
    articles: Collection[str] | None,
    campaign_article: str,
) -> Step:
    """One step after its id: template, variants, texts, A/B arms and winner test, delay, optimise, article."""
    where = f"steps[{index}]."
    template = reader.text(item, "template", where, fix="name an email such as 'emails/welcome'")
    if templates is not None and template not in templates:
        known = ", ".join(sorted(templates)) or "none"
        raise reader.fail(
            f"{where}template",
            f"'{template}' is not a template in templates/ (it needs {template}.html and {template}.txt)",
            f"use one of: {known}",
        )
    variants = item.get("variants") or []
    if not isinstance(variants, list) or any(v not in variants_known for v in variants):
        raise reader.fail(
            f"{where}variants",
            f"{variants!r} names an unknown variant",
            f"use some of: {', '.join(variants_known)}",
        )
    for key in ("subject", "preheader"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise reader.fail(f"{where}{key}", "must be text", f'write {key}: "..." in quotes')
    arms = _arms(reader, item["ab"], where) if item.get("ab") is not None else ()
    winner_test = _winner_test(reader, item.get("ab"), where, kind)
    delay = _step_delay(reader, item, where, kind)
    optimise = _optimise(reader, item, where)
    if optimise is not None and kind != SEQUENCE:
        raise reader.fail(
            f"{where}optimise",
            "a broadcast optimises its send time in its schedule",
            "move it to schedule: {..., optimise: true}",
        )
    article = _article(reader, item, where, articles) or campaign_article
    return Step(
        step_id,
        template,
        item.get("subject"),
        item.get("preheader"),
        tuple(variants),
        arms,
        delay,
        index,
        article,
        _library_wide(reader, item, where),
        winner_test,
        optimise,
    )


def _step_delay(reader: _Reader, item: dict[str, Any], where: str, kind: str) -> timedelta:
    """A sequence step's `delay` (required); a broadcast step has none (zero)."""
    if kind == SEQUENCE:
        try:
            return parse_delay(reader.text(item, "delay", where, fix="add 'delay: 0d' (or 3d, 12h, 2w)"))
        except ValueError:
            raise reader.fail(
                f"{where}delay",
                f"'{item.get('delay')}' is not a delay",
                "write a number and a unit: 0d, 3d, 12h, 2w",
            ) from None
    if "delay" in item:
        raise reader.fail(f"{where}delay", "only sequence steps have a delay", "remove it, or use kind: sequence")
    return timedelta(0)


def _optimise(reader: _Reader, spec: dict[str, Any], where: str) -> Optimise | None:
    """`optimise: true` with its `window`, `holdout` and `min_events` (None when not asked for)."""
    given = OPTIMISE_KEYS & set(spec)
    flag = spec.get("optimise", False)
    if not isinstance(flag, bool):
        raise reader.fail(f"{where}optimise", f"must be true or false, not {flag!r}", "write optimise: true")
    if not flag:
        if given - {"optimise"}:
            key = sorted(given - {"optimise"})[0]
            raise reader.fail(f"{where}{key}", "is set without optimise: true", "add optimise: true, or remove it")
        return None
    window = timedelta(hours=24)
    if "window" in spec:
        try:
            window = parse_delay(str(spec["window"]))
        except ValueError:
            raise reader.fail(
                f"{where}window", f"'{spec['window']}' is not a length of time", "write e.g. window: 24h"
            ) from None
        if not timedelta(hours=1) <= window <= MAX_WINDOW:
            raise reader.fail(f"{where}window", "must be from 1h to 7d", "write e.g. window: 24h")
    holdout = spec.get("holdout", 0.1)
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0 <= holdout < 1:
        raise reader.fail(
            f"{where}holdout",
            f"{holdout!r} is not a share from 0 to 1",
            "e.g. holdout: 0.1 (a tenth at the plain time)",
        )
    min_events = spec.get("min_events", 5)
    if isinstance(min_events, bool) or not isinstance(min_events, int) or min_events < 1:
        raise reader.fail(f"{where}min_events", f"{min_events!r} is not a whole number of events", "e.g. min_events: 5")
    return Optimise(window, float(holdout), min_events)


def _schedule(reader: _Reader, raw: dict[str, Any], zone: ZoneInfo) -> BroadcastSchedule:
    example = '{send_at: "2026-12-01 09:00"} or {local_time: "09:00", date: "2026-12-01"}'
    if raw.get("schedule") is None:
        raise reader.fail("schedule", "a broadcast needs a send time", f"add schedule: {example}")
    spec = reader.mapping(raw["schedule"], "schedule", SCHEDULE_KEYS, example)
    if "send_at" in spec:
        if {"local_time", "date"} & set(spec):
            raise reader.fail(
                "schedule", "gives both send_at and local_time/date", "keep one: send_at, or local_time with date"
            )
        return BroadcastSchedule(
            send_at=_moment(reader, spec["send_at"], "schedule.send_at", zone),
            optimise=_optimise(reader, spec, "schedule."),
        )
    if not {"local_time", "date"} <= set(spec):
        missing = "schedule.date" if "local_time" in spec else "schedule.local_time"
        raise reader.fail(missing, "is missing", f"write schedule: {example}")
    return BroadcastSchedule(
        local_time=_time(reader, spec["local_time"], "schedule.local_time"),
        on=_date(reader, spec["date"], "schedule.date"),
        optimise=_optimise(reader, spec, "schedule."),
    )


def _enrolment(reader: _Reader, raw: dict[str, Any], zone: ZoneInfo) -> tuple[Enrolment, tuple[ExitRule, ...]]:
    if raw.get("schedule") is not None:
        raise reader.fail(
            "schedule",
            "a sequence is timed by each step's delay, not a schedule",
            "remove 'schedule:' and give each step 'delay:'",
        )
    spec = reader.mapping(
        raw.get("enrol") or {}, "enrol", ENROL_KEYS, '{joined_after: "2026-01-01"}, {tag: nurture} or {event: enquired}'
    )
    joined = spec.get("joined_after")
    tag = reader.text(spec, "tag", "enrol.", required=False)
    event = _event_type(reader, spec, "enrol.event") if "event" in spec else ""
    if tag and event:
        raise reader.fail("enrol.event", "is given with a tag", "keep one: {tag: nurture} or {event: enquired}")
    enrol = Enrolment(
        joined_after=_moment(reader, joined, "enrol.joined_after", zone) if joined else None,
        tag=tag,
        event=event,
        explicit=bool(spec),
    )
    exits_raw = raw.get("exits") or []
    if not isinstance(exits_raw, list):
        raise reader.fail(
            "exits", "must be a list", 'write exits: [{event: booked}] or [{field: booked, equals: "yes"}]'
        )
    exits: list[ExitRule] = []
    for index, item in enumerate(exits_raw):
        where = f"exits[{index}]"
        rule = reader.mapping(item, where, EXIT_KEYS, '{event: booked} or {field: booked, equals: "yes"}')
        if "event" in rule:
            if "field" in rule or "equals" in rule:
                raise reader.fail(
                    where,
                    "names an event and a field",
                    "split it in two: - {event: booked} and - {field: ..., equals: ...}",
                )
            exits.append(ExitRule(event=_event_type(reader, rule, f"{where}.event")))
            continue
        if "field" not in rule or "equals" not in rule:
            raise reader.fail(
                where,
                "needs 'event', or 'field' and 'equals'",
                'write - {event: booked} or - {field: booked, equals: "yes"} '
                "(unsubscribes, bounces and complaints always exit)",
            )
        exits.append(ExitRule(str(rule["field"]), str(rule["equals"]).lower()))
    return enrol, tuple(exits)


def _event_type(reader: _Reader, spec: dict[str, Any], where: str) -> str:
    value = spec.get("event")
    if not isinstance(value, str) or not EVENT_TYPE.match(value):
        raise reader.fail(
            where,
            f"{value!r} is not an event type",
            f"use {', '.join(KNOWN_TYPES)} or a custom name of lower-case letters, digits and _ (as the events "
            "your booking system posts)",
        )
    return value


def _signoff(reader: _Reader, raw: Any) -> SignOff | None:
    if raw is None:
        return None
    spec = reader.mapping(raw, "signoff", SIGNOFF_KEYS, "{reviewer: NAME, date: YYYY-MM-DD, note: WHAT WAS ACCEPTED}")
    covers = spec.get("covers") or {}
    if not isinstance(covers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in covers.items()):
        raise reader.fail("signoff.covers", "must map files to their digests", "let the console write it")
    return SignOff(
        reader.text(spec, "reviewer", "signoff."),
        _date(reader, spec.get("date"), "signoff.date"),
        reader.text(spec, "note", "signoff."),
        tuple(sorted(covers.items())),
    )


def load_campaign(
    path: Path,
    variants_known: Iterable[str],
    *,
    templates: Collection[str] | None = None,
    segments: Collection[str] | None = None,
    articles: Collection[str] | None = None,
    source: bytes | None = None,
) -> Campaign:
    """Read and validate one campaign file (see the module contract); with `source`, validate that text as
    the file at `path` (the console checks an edit before it writes it)."""
    reader = _Reader(path)
    source, raw = _read_source(reader, path, source)
    reader.unknown(raw, TOP_KEYS, "")
    known = tuple(variants_known)
    campaign_id, kind, draft = _identity(reader, raw)
    zone_name, zone = _zone(reader, raw)
    segment = reader.text(raw, "segment", "", fix="name a segment from audiences/segments.yaml")
    if segments is not None and segment not in segments:
        raise reader.fail(
            "segment",
            f"'{segment}' is not defined",
            f"use one of: {', '.join(sorted(segments)) or 'none'} (audiences/segments.yaml)",
        )
    sender = reader.mapping(raw.get("sender") or {}, "sender", SENDER_KEYS, "{email: ..., name: ...}")
    steps = _steps(reader, raw.get("steps"), kind, known, templates, articles, _article(reader, raw, "", articles))
    schedule, enrol, exits = _timing(reader, raw, kind, zone)
    journey = read_journey(path, raw, [s.id for s in steps]) if kind == JOURNEY else None
    if kind == SEQUENCE:  # one engine: a sequence runs as a straight line of waits and sends
        journey = straight_line(steps)
    return Campaign(
        id=campaign_id,
        name=reader.text(raw, "name", "", required=False) or campaign_id,
        kind=kind,
        segment=segment,
        time_zone=zone_name,
        steps=steps,
        path=path,
        sender_email=reader.text(sender, "email", "sender.", required=False),
        sender_name=reader.text(sender, "name", "sender.", required=False),
        reply_to=reader.text(raw, "reply_to", "", required=False),
        schedule=schedule,
        enrol=enrol,
        exits=exits,
        signoff=_signoff(reader, raw.get("signoff")),
        digest=hashlib.sha256(source).hexdigest()[:16],
        draft=draft,
        journey=journey,
    )


def _read_source(reader: _Reader, path: Path, source: bytes | None) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes (or the given `source`) and its YAML mapping; a `CampaignFileError` on `(file)` when
    it cannot be read, is not YAML, or is not a mapping."""
    try:
        source = path.read_bytes() if source is None else source
        raw = parse_yaml(source)
    except OSError as err:
        raise reader.fail("(file)", f"cannot be read: {err.strerror}", "check the path") from err
    except yaml.YAMLError as err:
        raise reader.fail("(file)", f"is not valid YAML: {err}", "fix the indentation or quoting shown") from err
    if not isinstance(raw, dict):
        raise reader.fail("(file)", "is not a mapping of fields", "start with 'id: my-campaign'")
    return source, raw


def _identity(reader: _Reader, raw: dict[str, Any]) -> tuple[str, str, bool]:
    """The campaign's `id`, `kind` and `draft` flag, checked in that order."""
    campaign_id = reader.text(raw, "id", "")
    if not _ID.match(campaign_id):
        raise reader.fail(
            "id",
            f"'{campaign_id}' has characters other than letters, digits, - and _",
            "use a short id such as 'spring-guide'",
        )
    kind = reader.text(raw, "kind", "", fix="add 'kind: broadcast' or 'kind: sequence'")
    if kind not in (BROADCAST, SEQUENCE, JOURNEY):
        raise reader.fail(
            "kind",
            f"'{kind}' is not a kind of campaign",
            "use 'broadcast' or 'sequence' (or 'journey': steps as a graph of nodes)",
        )
    if kind != JOURNEY and JOURNEY_TOP_KEYS & set(raw):
        key = sorted(JOURNEY_TOP_KEYS & set(raw))[0]
        raise reader.fail(key, "only journeys have an entry, a re-entry rule and a goal", "use kind: journey")
    draft = raw.get("draft", False)
    if not isinstance(draft, bool):
        raise reader.fail("draft", f"must be true or false, not {draft!r}", "write draft: true (or remove the line)")
    return campaign_id, kind, draft


def _zone(reader: _Reader, raw: dict[str, Any]) -> tuple[str, ZoneInfo]:
    """The `time_zone` as written and as a zone; a name that is no IANA zone is the file's error."""
    zone_name = reader.text(raw, "time_zone", "", fix="add 'time_zone: Europe/London' (an IANA zone)")
    try:
        return zone_name, ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise reader.fail(
            "time_zone",
            f"'{zone_name}' is not a time zone",
            "use an IANA name such as Europe/London or America/New_York",
        ) from None


def _timing(
    reader: _Reader, raw: dict[str, Any], kind: str, zone: ZoneInfo
) -> tuple[BroadcastSchedule, Enrolment, tuple[ExitRule, ...]]:
    """A broadcast's schedule, or a sequence's enrolment and exits (the other kind's keys are an error); a
    journey has neither (it starts by its entry and ends at its goal)."""
    if kind == JOURNEY:
        for key in ("enrol", "exits"):
            if raw.get(key) is not None:
                raise reader.fail(
                    key, "a journey starts by its entry and ends at its goal", f"replace '{key}:' by entry: / goal:"
                )
        return BroadcastSchedule(), Enrolment(), ()
    if kind == BROADCAST:
        for key in ("enrol", "exits"):
            if raw.get(key) is not None:
                raise reader.fail(key, "only sequences enrol and exit", f"remove '{key}:', or use kind: sequence")
        return _schedule(reader, raw, zone), Enrolment(), ()
    enrol, exits = _enrolment(reader, raw, zone)
    return BroadcastSchedule(), enrol, exits


@dataclass
class CampaignFiles:
    """What a campaigns folder holds: the campaigns that load, by id, and the files that do not."""

    campaigns: dict[str, Campaign] = field(default_factory=dict)
    problems: list[CampaignFileError] = field(default_factory=list)


def _raw_id(path: Path) -> str:
    """The `id:` of a file that failed to validate, when it can be read at all ('' otherwise)."""
    try:
        raw = parse_yaml(path.read_bytes())
    except (OSError, yaml.YAMLError):
        return ""
    value = raw.get("id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and _ID.match(value) else ""


def campaign_paths(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_campaigns(
    folder: Path,
    variants_known: Iterable[str],
    *,
    templates: Collection[str] | None = None,
    segments: Collection[str] | None = None,
    articles: Collection[str] | None = None,
) -> CampaignFiles:
    """Every `*.yaml` / `*.yml` campaign in `folder`; a file that fails (or repeats an id) is a problem."""
    known = tuple(variants_known)
    found = CampaignFiles()
    for path in campaign_paths(folder):
        try:
            campaign = load_campaign(path, known, templates=templates, segments=segments, articles=articles)
        except CampaignFileError as err:
            err.campaign_id = _raw_id(path)
            found.problems.append(err)
            continue
        if campaign.id in found.campaigns:
            other = found.campaigns[campaign.id].path.name
            found.problems.append(
                CampaignFileError(
                    str(path), "id", f"'{campaign.id}' is also the id of {other}", "give each campaign its own id"
                )
            )
            continue
        found.campaigns[campaign.id] = campaign
    return found
