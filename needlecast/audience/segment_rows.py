"""A segment as a form of rows (field, name, operator, value), and writing one into `audiences/segments.yaml`.

Contract: `rows_of(segment)` gives the rows that show `segment` (`load_segments`'s) in the console's builder;
`segment_of(name, description, rows, known_concerns)` turns posted rows back into a `Segment` and its YAML
mapping, or raises `SegmentRowsError` whose `problems` say, in words, what is wrong with which row (by its
index in `rows`) or with the name (`"name"`). Rows whose field is empty are ignored (the form's spare rows).
`write_segment(path, name, spec, replacing, known_concerns)` puts the mapping into the file under `name`
(in the place of `replacing` when renaming, else of `name`, else at the end), keeps every other segment and
the file's leading comment, checks the whole new text with `load_segments` before anything is written, and
replaces the file atomically; a `ConfigurationError` from the loader says what is wrong without the path.

Fields: `concern`, `tag` and `list` (is any of: names separated by commas; one row each), `consent` (consent
to use the concern: given or not given), `signed_up` and `event` (within the last N days; an event names
its kind: booked, attended...), `attribute` (a contact field or an imported column, with any operator).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from needlecast.audience.segments import EVENT_FIELD, OPS, Condition, Segment, load_segments
from needlecast.errors import ConfigurationError, NeedlecastError

FIELDS = {
    "concern": "Skin concern",
    "tag": "Tag",
    "list": "List",
    "consent": "Consent to use the concern",
    "signed_up": "Signed up",
    "event": "Event from the clinic's systems",
    "attribute": "Other field or imported column",
}
OPERATORS = {
    "in": "is one of",
    "not_in": "is none of",
    "equals": "is",
    "not_equals": "is not",
    "within_days": "within the last (days)",
    "min": "is at least",
    "max": "is at most",
    "between": "is between (low, high)",
    "before": "is before (date)",
    "after": "is after (date)",
    "exists": "is filled in",
}
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RESERVED = {"new", "count"}  # the console's own addresses under /segments/
_ANY_OF = {"concern": "concerns", "tag": "tags", "list": "lists"}


@dataclass(frozen=True)
class Row:
    field: str = ""
    name: str = ""  # the attribute's or the event's name
    op: str = "in"
    value: str = ""


class SegmentRowsError(NeedlecastError, ValueError):
    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__("; ".join(problems.values()))
        self.problems = problems


def _joined(values: Any) -> str:
    if isinstance(values, list | tuple):
        return ", ".join(str(v) for v in values)
    return "" if values is None else str(values).lower() if isinstance(values, bool) else str(values)


def rows_of(segment: Segment) -> list[Row]:
    """The builder's rows for `segment`, in a stable order."""
    rows = [Row(field, "", "in", ", ".join(getattr(segment, key))) for field, key in _ANY_OF.items()]
    rows = [row for row in rows if row.value]
    if segment.signed_up_within_days is not None:
        rows.append(Row("signed_up", "", "within_days", str(segment.signed_up_within_days)))
    for cond in segment.where:
        if cond.field == "concern_consent" and cond.op == "equals":
            rows.append(Row("consent", "", "equals", "given" if _joined(cond.value) == "true" else "not given"))
        elif cond.field.startswith(EVENT_FIELD):
            rows.append(Row("event", cond.field[len(EVENT_FIELD) :], cond.op, _joined(cond.value)))
        else:
            rows.append(Row("attribute", cond.field, cond.op, _joined(cond.value)))
    return rows


def row_words(row: Row) -> str:
    """One condition as a sentence for the segment's page ("Signed up within the last 30 days")."""
    if row.field == "concern":
        return f"Skin concern is one of {row.value}"
    if row.field == "tag":
        return f"Has any of the tags {row.value}"
    if row.field == "list":
        return f"On any of the lists {row.value}"
    if row.field == "consent":
        return f"Consent to use their concern: {row.value}"
    if row.field == "signed_up":
        return f"Signed up within the last {row.value} days"
    if row.op == "within_days":
        said = f"within the last {row.value} days"
    elif row.op == "exists":
        said = OPERATORS["exists"]
    else:
        said = f"{OPERATORS.get(row.op, row.op).split(' (')[0]} {row.value}"
    if row.field == "event":
        return f"Had a “{row.name}” event {said}"
    return f"“{row.name}” {said}"


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _days(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError("Give the number of days as a whole number, like 30.")
    return int(text.strip())


def _number(text: str) -> float | int:
    try:
        number = float(text.strip())
    except ValueError:
        raise ValueError(f"“{text.strip()}” is not a number.") from None
    return int(number) if number.is_integer() else number


def _condition_value(op: str, text: str) -> Any:
    """The YAML value of a condition with operator `op`, from the row's text (ValueError in words)."""
    if op == "exists":
        return None
    if not text.strip():
        raise ValueError("Give a value.")
    if op in ("in", "not_in"):
        return _names(text)
    if op == "within_days":
        return _days(text)
    if op in ("min", "max"):
        return _number(text)
    if op == "between":
        parts = _names(text)
        if len(parts) != 2:
            raise ValueError("Give two numbers separated by a comma, like 18, 65.")
        return [_number(parts[0]), _number(parts[1])]
    if op in ("before", "after") and not re.match(r"^\d{4}-\d{2}-\d{2}", text.strip()):
        raise ValueError("Give a date as year-month-day, like 2026-03-31.")
    return text.strip()


def _apply(row: Row, spec: dict[str, Any], known_concerns: tuple[str, ...]) -> None:
    """Add one row to the segment's mapping `spec` (ValueError in words)."""
    if row.field in _ANY_OF:
        key = _ANY_OF[row.field]
        if key in spec:
            raise ValueError(f"Only one {FIELDS[row.field].lower()} row: list several names in it, with commas.")
        names = _names(row.value)
        if not names:
            raise ValueError("Give at least one name.")
        unknown = [n for n in names if n not in known_concerns] if row.field == "concern" else []
        if unknown:
            raise ValueError(f"Unknown concern {', '.join(unknown)}; the clinic's are {', '.join(known_concerns)}.")
        spec[key] = names
    elif row.field == "signed_up":
        if "signed_up_within_days" in spec:
            raise ValueError("Only one row about signing up.")
        spec["signed_up_within_days"] = _days(row.value)
    elif row.field == "consent":
        if row.value.strip().lower() not in ("given", "not given"):
            raise ValueError("Choose “given” or “not given”.")
        given = row.value.strip().lower() == "given"
        spec.setdefault("where", []).append({"field": "concern_consent", "op": "equals", "value": given})
    elif row.field in ("event", "attribute"):
        name = row.name.strip()
        if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_ .-]{0,63}$", name):
            raise ValueError(f"Name the {'event (booked, attended...)' if row.field == 'event' else 'field'}.")
        if row.field == "event" and row.op != "within_days":
            raise ValueError("An event row asks for events within the last N days.")
        if row.op not in OPS:
            raise ValueError("Choose an operator.")
        field = EVENT_FIELD + name.lower() if row.field == "event" else name
        value = _condition_value(row.op, row.value)
        spec.setdefault("where", []).append({"field": field, "op": row.op, "value": value})
    else:
        raise ValueError("Choose what this row is about.")


def segment_of(
    name: str, description: str, rows: list[Row], known_concerns: tuple[str, ...], *, check_name: bool = True
) -> tuple[Segment, dict[str, Any]]:
    """The segment the form describes and its YAML mapping (see the module contract); `check_name=False`
    for counting rows whose segment has no name yet."""
    problems: dict[str, str] = {}
    if check_name and (not NAME.match(name) or name in RESERVED):
        problems["name"] = (
            "Give the segment a short name of lower-case letters, digits and dashes, like spring-acne"
            + (f" (“{name}” is taken by the console)." if name in RESERVED else ".")
        )
    spec: dict[str, Any] = {"description": description.strip()} if description.strip() else {}
    for index, row in enumerate(rows):
        if not row.field.strip():
            continue
        try:
            _apply(row, spec, known_concerns)
        except ValueError as err:
            problems[str(index)] = str(err)
    if problems:
        raise SegmentRowsError(problems)
    where = tuple(Condition(c["field"], c["op"], c["value"]) for c in spec.get("where", []))
    segment = Segment(
        name=name,
        description=spec.get("description", ""),
        concerns=tuple(spec.get("concerns", ())),
        lists=tuple(spec.get("lists", ())),
        tags=tuple(spec.get("tags", ())),
        signed_up_within_days=spec.get("signed_up_within_days"),
        where=where,
    )
    return segment, spec


def _leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.strip() or line.lstrip().startswith("#"):
            lines.append(line)
            continue
        break
    return "".join(lines)


def write_segment(
    path: Path, name: str, spec: dict[str, Any], replacing: str | None, known_concerns: tuple[str, ...]
) -> None:
    """Put `spec` into the segments file as `name` (see the module contract)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    document = yaml.safe_load(text) if text else None
    entries = dict((document or {}).get("segments") or {}) if isinstance(document, dict) else {}
    old = replacing or name
    if name != old and name in entries:
        raise SegmentRowsError({"name": f"There is already a segment called {name}: choose another name."})
    if replacing is None and name in entries:
        raise SegmentRowsError({"name": f"There is already a segment called {name}: edit it, or choose another name."})
    updated = {(name if key == old else key): (spec if key == old else value) for key, value in entries.items()}
    updated.setdefault(name, spec)
    new_text = _leading_comment(text) + yaml.safe_dump(
        {"segments": updated}, sort_keys=False, allow_unicode=True, width=110
    )
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".yaml", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(new_text)
        try:
            load_segments(Path(temporary), known_concerns)
        except ConfigurationError as err:  # the loader names the temporary file: a page shows no path
            raise ConfigurationError(str(err).replace(f"{temporary}: ", "")) from err
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
