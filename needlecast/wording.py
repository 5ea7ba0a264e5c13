"""A note about a campaign in two forms: the command line's, and the clinic's words for the console.

Contract: a `Note` is a `str` whose value is the command line's form (unchanged: commands, flags and times
in UTC, as `needlecast plan` and `needlecast campaign` print them), and whose `words` is the same note for
people (no command, flag or file; times in the campaign's zone). `for_people(text)` is a note's `words`, or
`text` itself for a plain string (a note that says nothing of the command line). `duration_words(delta)` is a
duration as people say it ("3 days", "1 day 6 hours", "at once"), never Python's "3 days, 0:00:00".
`placeholders_in_words(source)` is a subject line's template source with each `{{ first_name }}` shown as
"[first name]" and its tags left out, for lists that show a subject without rendering it for a person.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


class Note(str):
    """A note whose `str` is the command line's form and whose `words` is the console's (see the module)."""

    words: str

    def __new__(cls, cli: str, words: str | None = None) -> Note:
        # `words` may be left out only by copy and pickle, which restore it from the instance's state.
        note = super().__new__(cls, cli)
        note.words = cli if words is None else words
        return note


def for_people(text: str) -> str:
    """The note as the console says it: its `words` for a `Note`, else `text` unchanged."""
    return text.words if isinstance(text, Note) else text


def local_time(moment: datetime, time_zone: str) -> str:
    """`moment` on the clock of `time_zone` as the console writes times: "1 Mar 2027, 22:00 GMT"."""
    local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(ZoneInfo(time_zone))
    return f"{local.day} {local.strftime('%b %Y')}, {local.strftime('%H:%M')} {local.tzname()}"


def duration_words(delta: timedelta) -> str:
    """`delta` in days, hours and minutes, the parts that are not zero ("3 days", "1 day 6 hours"); "at once"
    for no time at all (seconds are dropped: no campaign delay is that fine)."""
    minutes = int(delta.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute")]
    said = " ".join(f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in parts if n)
    return said or "at once"


_EXPRESSION = re.compile(r"\{\{\s*([\w.]+)[^}]*\}\}")
_TAG = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.S)


def placeholders_in_words(source: str) -> str:
    """`source` (a subject line's Jinja) with each expression as "[its name in words]" ("{{ first_name }}" ->
    "[first name]", "{{ clinic.name | upper }}" -> "[clinic name]") and each tag or comment left out."""
    said = _EXPRESSION.sub(lambda m: "[" + m.group(1).replace("_", " ").replace(".", " ") + "]", source)
    return " ".join(_TAG.sub("", said).split())
