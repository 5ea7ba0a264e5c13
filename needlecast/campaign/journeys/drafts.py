"""Clinic journeys drafted from an article: `needlecast content draft ARTICLE --kind recall|aftercare|no-show|win-back`.

Contract: `clinic_steps(kind, article, variants, course)` returns the journey's fields (entry, reentry, goal,
steps) and the notes that explain them; every send node has the article's `variants` (its concerns and
general), and every draft ends each path at an exit. Booking (`goal: booked`) ends a recall, a no-show and a
win-back wherever the person is, as the conversion (aftercare goes on after a booking).
- recall: `course.sessions` sessions `course.every_weeks` weeks apart, then maintenance
  `course.maintenance_months` months after the last one; it starts from `last_treatment_at` for this
  treatment (`last_treatment` = the article's id) and stays silent while a future appointment exists.
- aftercare: on `attended` for this treatment, day 0, 2 and 7; it draws on the article's aftercare or recovery
  section when it has one (named in the subject and the notes), else says that it has none.
- no-show: on `no_show`, at once, then a nudge 3 days later unless they booked.
- win-back: no visit in 90 days (`last_visit_at` + 90 days, unless a future appointment exists), then a
  second email 14 days later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from needlecast.content.model import Article, Section

RECALL, AFTERCARE, NO_SHOW, WIN_BACK = "recall", "aftercare", "no-show", "win-back"
CLINIC_KINDS = (RECALL, AFTERCARE, NO_SHOW, WIN_BACK)
_AFTERCARE = re.compile(r"after[\s-]?care|recovery|after (your|the) (treatment|session)|downtime|healing", re.I)
TREATMENT = "{{ article.treatment | midsentence }}"


@dataclass(frozen=True)
class Course:
    """A recall's course: `sessions` sessions `every_weeks` weeks apart, maintenance after `maintenance_months`."""

    sessions: int = 3
    every_weeks: int = 4
    maintenance_months: int = 6


def aftercare_section(article: Article) -> Section | None:
    """The article's aftercare or recovery section (by its title), if it has one."""
    return next((s for s in article.sections if _AFTERCARE.search(s.title)), None)


def _send(node_id: str, template: str, subject: str, variants: list[str]) -> dict[str, Any]:
    return {"id": node_id, "template": template, "subject": subject, "variants": variants}


def clinic_steps(kind: str, article: Article, variants: list[str], course: Course) -> tuple[dict[str, Any], list[str]]:
    """The journey's fields and notes (see the module contract)."""
    if kind == RECALL:
        return _recall(article, variants, course)
    if kind == AFTERCARE:
        return _aftercare(article, variants)
    if kind == NO_SHOW:
        steps = [
            _send("missed-you", "emails/consultation", "We missed you today", variants),
            {"id": "booked-yet", "kind": "wait_until", "event": "booked", "timeout": "3d", "on_timeout": "nudge"},
            {"id": "rebooked", "kind": "exit"},
            _send("nudge", "emails/consultation", f"Shall we find you a new time for {TREATMENT}?", variants),
            {"id": "done", "kind": "exit"},
        ]
        fields = {"entry": {"event": "no_show"}, "reentry": "each_event", "goal": {"event": "booked"}, "steps": steps}
        return fields, ["Starts on each `no_show` from the booking system; booking again ends it."]
    steps = [
        _send("miss-you", "emails/welcome", f"It has been a while: time for {TREATMENT}?", variants),
        {"id": "pause", "kind": "wait", "delay": "14d"},
        _send("last-call", "emails/consultation", f"Your skin after {TREATMENT}: book a check-in", variants),
        {"id": "done", "kind": "exit"},
    ]
    entry = {"date": "last_visit_at", "after": "90d", "unless": "future_appointment"}
    fields = {"entry": entry, "reentry": "each_event", "goal": {"event": "booked"}, "steps": steps}
    return fields, [
        "Starts 90 days after `last_visit_at` (an attribute your imports or bookings keep), "
        "unless a future appointment exists; booking ends it."
    ]


def _recall(article: Article, variants: list[str], course: Course) -> tuple[dict[str, Any], list[str]]:
    every = f"{course.every_weeks * 7}d"
    maintenance = f"{course.maintenance_months * 30}d"
    steps = [
        {
            "id": "course",
            "kind": "branch",
            "paths": [
                {"when": [{"field": "sessions_done", "equals": str(course.sessions)}], "next": "maintenance-wait"}
            ],
            "default": "next-session",
        },
        _send("next-session", "emails/consultation", f"Time for your next {TREATMENT} session", variants),
        {"id": "course-done", "kind": "exit"},
        {"id": "maintenance-wait", "kind": "wait", "until_date": "last_treatment_at", "offset": maintenance},
        _send("maintenance", "emails/consultation", f"Keeping up the results of {TREATMENT}", variants),
        {"id": "done", "kind": "exit"},
    ]
    entry = {
        "date": "last_treatment_at",
        "after": every,
        "where": [{"field": "last_treatment", "equals": article.id}],
        "unless": "future_appointment",
    }
    notes = [
        f"A course of {course.sessions} sessions {course.every_weeks} weeks apart: {every} after "
        f"`last_treatment_at` (for `last_treatment` {article.id}) the next session is due; after the "
        f"{course.sessions}th (`sessions_done` {course.sessions}) a maintenance visit {course.maintenance_months} "
        "months on. Silent while a future appointment exists; booking ends it.",
    ]
    fields = {"entry": entry, "reentry": "each_event", "goal": {"event": "booked"}, "steps": steps}
    return fields, notes


def _aftercare(article: Article, variants: list[str]) -> tuple[dict[str, Any], list[str]]:
    section = aftercare_section(article)
    topic = section.title if section is not None else f"your skin after {TREATMENT}"
    steps = [
        {
            "id": "this-treatment",
            "kind": "branch",
            "paths": [{"when": [{"field": "last_treatment", "equals": article.id}], "next": "day-0"}],
            "default": "other-treatment",
        },
        {"id": "other-treatment", "kind": "exit"},
        _send("day-0", "emails/deep_dive", f"Aftercare: {topic}", variants),
        {"id": "wait-day-2", "kind": "wait", "delay": "2d"},
        _send("day-2", "emails/deep_dive", f"Two days on: {topic}", variants),
        {"id": "wait-day-7", "kind": "wait", "delay": "5d"},
        _send("day-7", "emails/consultation", f"One week after {TREATMENT}: how is your skin?", variants),
        {"id": "done", "kind": "exit"},
    ]
    notes = [f"Starts on each `attended` for {article.id} (`last_treatment` {article.id}): day 0, 2 and 7."]
    if section is not None:
        notes.append(f"Draws on the article's section '{section.title}' (line {section.line}).")
    else:
        notes.append("The article has no aftercare or recovery section: add one, or the emails give its general text.")
    fields = {"entry": {"event": "attended"}, "reentry": "each_event", "steps": steps}
    return fields, notes
