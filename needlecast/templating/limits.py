"""The resource limits of a template rendering, and the checks the sandbox makes against them.

Jinja's sandbox keeps a template away from Python's internals but not from the machine's memory and time:
`{{ ('a' * 100000000) | length }}` allocates 100 MB, two nested loops run for hours. needlecast bounds:

- `MAX_TEXT_CHARS`: any string a template builds (by `*`, `+`, `~`, `%`, a filter or a method), and the text
  of any list it builds (what printing it would take);
- `MAX_ITEMS`: any list a template builds, and `range()`;
- `MAX_NUMBER_BITS`: the integers `*` and `**` make;
- `MAX_OUTPUT_CHARS`: the text one rendered part (subject, preheader, text, HTML) makes: the values it
  outputs and the text its loops repeat (its own literal text aside: that is no bigger than its file);
- `MAX_PRODUCED_CHARS`: all the text one email's rendering produces, text captured by `{% set %}` blocks,
  macros and calls included (so a loop inside a captured block is bounded too);
- `RENDER_SECONDS`: one email's rendering, all its parts: a deadline checked at every loop iteration and
  every call (no thread is killed, no signal used: it works in any thread, and the rendering stops at the
  template line it was running).

A size is checked before the allocation wherever the result's size can be known beforehand (repetition,
padding widths, `join`, `replace`, format widths); otherwise right after, so growth stops at the limit.

Contract: `render_budget(limits)` opens a rendering's budget (the deadline and the produced-text count) for
the current context, or joins the one already open; the checks raise `TemplateLimitExceeded` without a
place, and `environment.describe_render_error` gives it the template and line from the traceback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from itertools import islice
from string import Formatter
from typing import Any

from needlecast.errors import TemplateLimitExceeded

MAX_TEXT_CHARS = 1_000_000
MAX_ITEMS = 100_000
MAX_NUMBER_BITS = 4_096
MAX_OUTPUT_CHARS = 1_000_000
MAX_PRODUCED_CHARS = 10_000_000
RENDER_SECONDS = 5.0


@dataclass(frozen=True)
class RenderLimits:
    """The limits one environment enforces; `clock` is the deadline's clock (tests pass a fake one)."""

    seconds: float = RENDER_SECONDS
    text_chars: int = MAX_TEXT_CHARS
    items: int = MAX_ITEMS
    number_bits: int = MAX_NUMBER_BITS
    output_chars: int = MAX_OUTPUT_CHARS
    produced_chars: int = MAX_PRODUCED_CHARS
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)


class RenderBudget:
    """One rendering's deadline, and the text it has produced: in all (`MAX_PRODUCED_CHARS`) and in the part
    being rendered (`MAX_OUTPUT_CHARS`). `ceiling` is the lower of the two bounds of `produced`, so that
    counting costs one comparison."""

    __slots__ = ("ceiling", "deadline", "limits", "produced")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = limits.clock() + limits.seconds
        self.produced = 0
        self.ceiling = limits.produced_chars

    def tick(self) -> None:
        """Raise when the deadline has passed."""
        if self.limits.clock() > self.deadline:
            raise TemplateLimitExceeded(
                f"the rendering took longer than {self.limits.seconds:g} seconds (a loop or a macro that runs "
                "far longer than an email needs?)"
            )

    def start_part(self) -> int:
        """Start counting a part's output (a subject, a text, an HTML); returns what `end_part` restores."""
        before = self.ceiling
        self.ceiling = min(self.limits.produced_chars, self.produced + self.limits.output_chars)
        return before

    def end_part(self, before: int) -> None:
        self.ceiling = before

    def charge(self, chars: int) -> None:
        """Count `chars` more characters of produced text; raise past a limit or the deadline."""
        self.produced += chars
        if self.produced > self.ceiling:
            self.overflow()
        self.tick()

    def overflow(self) -> None:
        """Raise for the limit `produced` passed."""
        if self.produced > self.limits.produced_chars:
            raise TemplateLimitExceeded(
                f"the rendering produces more than {self.limits.produced_chars:,} characters of text in all"
            )
        raise TemplateLimitExceeded(f"the rendered text passes the limit of {self.limits.output_chars:,} characters")


_ACTIVE: ContextVar[RenderBudget | None] = ContextVar("needlecast_render_budget", default=None)


def active_budget() -> RenderBudget | None:
    """The budget of the rendering running in this context, if any."""
    return _ACTIVE.get()


def open_budget(limits: RenderLimits) -> Token[RenderBudget | None] | None:
    """Open a rendering's budget unless one is open in this context; pass the result to `close_budget`."""
    return _ACTIVE.set(RenderBudget(limits)) if _ACTIVE.get() is None else None


def close_budget(opened: Token[RenderBudget | None] | None) -> None:
    if opened is not None:
        _ACTIVE.reset(opened)


@contextmanager
def render_budget(limits: RenderLimits) -> Iterator[RenderBudget]:
    """Open a rendering's budget, or join the one already open in this context (one email, one deadline)."""
    opened = open_budget(limits)
    try:
        budget = _ACTIVE.get()
        assert budget is not None
        yield budget
    finally:
        close_budget(opened)


def tick() -> None:
    budget = _ACTIVE.get()
    if budget is not None:
        budget.tick()


def charge(chars: int) -> None:
    budget = _ACTIVE.get()
    if budget is not None:
        budget.charge(chars)


# -- sizes --------------------------------------------------------------------------------------------------------
def too_long(chars: int, limits: RenderLimits, what: str = "builds a text") -> TemplateLimitExceeded:
    return TemplateLimitExceeded(f"this {what} of {chars:,} characters; the limit is {limits.text_chars:,}")


def check_chars(chars: int, limits: RenderLimits) -> None:
    """A text that would be `chars` long: at most `MAX_TEXT_CHARS`."""
    if chars > limits.text_chars:
        raise too_long(chars, limits)


def too_many(items: int, limits: RenderLimits, what: str = "a list") -> TemplateLimitExceeded:
    return TemplateLimitExceeded(f"this builds {what} of {items:,} items; the limit is {limits.items:,}")


def text_weight(value: Any, stop: int) -> int:
    """How many characters printing `value` takes, at least; counting stops once past `stop` (so a huge or
    self-containing list costs at most `stop` steps). Objects of other kinds count their `repr`."""
    total = 0
    pending = [value]
    reprs: dict[int, int] = {}
    while pending and total <= stop:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, float) or item is None:
            total += 8
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            pending.extend(islice(item, stop))
        elif isinstance(item, dict):
            total += 2 + 4 * len(item)
            pending.extend(islice(item.items(), stop))
        else:
            if id(item) not in reprs:
                reprs[id(item)] = len(repr(item))
            total += reprs[id(item)]
    return total


def check_text(value: Any, limits: RenderLimits, what: str = "prints a text") -> None:
    """Raise unless printing `value` stays within `MAX_TEXT_CHARS`."""
    chars = len(value) if isinstance(value, str) else text_weight(value, limits.text_chars)
    if chars > limits.text_chars:
        raise too_long(chars, limits, what)


def check_built(value: Any, limits: RenderLimits) -> Any:
    """Return `value` (a result a template made) when its size is within the limits; raise otherwise."""
    if isinstance(value, str):
        if len(value) > limits.text_chars:
            raise too_long(len(value), limits)
    elif isinstance(value, (list, tuple, dict, set, frozenset)) and len(value) > limits.items:
        raise too_many(len(value), limits)
    return value


def check_width(width: Any, limits: RenderLimits, what: str = "a width") -> None:
    """A padding width, a tab size, a count: at most `MAX_TEXT_CHARS`."""
    if isinstance(width, int) and width > limits.text_chars:
        raise TemplateLimitExceeded(f"{what} of {width:,} is over the limit of {limits.text_chars:,}")


def take(values: Iterable[Any], limits: RenderLimits) -> list[Any]:
    """`values` as a list, refusing more than `MAX_ITEMS` (a generator is read only that far)."""
    items = list(islice(values, limits.items + 1))
    if len(items) > limits.items:
        raise too_many(len(items), limits, "a sequence")
    return items


def check_join(separator: str, items: list[Any], limits: RenderLimits) -> None:
    """Raise when joining `items` with `separator` would pass `MAX_TEXT_CHARS`."""
    chars = text_weight(items, limits.text_chars) + len(separator) * max(0, len(items) - 1)
    if chars > limits.text_chars:
        raise too_long(chars, limits)


def check_replace(text: str, old: str, new: str, count: int | None, limits: RenderLimits) -> None:
    """Raise when `text.replace(old, new, count)` would pass `MAX_TEXT_CHARS`."""
    if len(new) <= len(old):
        return
    found = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        found = min(found, count)
    chars = len(text) + found * (len(new) - len(old))
    if chars > limits.text_chars:
        raise too_long(chars, limits)


# -- operators ----------------------------------------------------------------------------------------------------
def check_repeat(sequence: Any, times: int, limits: RenderLimits) -> None:
    """`sequence * times`, before it is made."""
    if times <= 0:
        return
    if isinstance(sequence, str):
        if len(sequence) * times > limits.text_chars:
            raise too_long(len(sequence) * times, limits)
        return
    if len(sequence) * times > limits.items:
        raise too_many(len(sequence) * times, limits)
    chars = text_weight(sequence, limits.text_chars // times + 1) * times
    if chars > limits.text_chars:
        raise too_long(chars, limits, "builds a list with a text")


def check_numbers(operator: str, left: int, right: int, limits: RenderLimits) -> None:
    """`left * right` or `left ** right` on integers, before they are made."""
    if operator == "*":
        bits = left.bit_length() + right.bit_length()
    elif right < 0 or abs(left) < 2:
        return
    else:
        bits = (abs(left).bit_length() - 1) * right
    if bits > limits.number_bits:
        raise TemplateLimitExceeded(f"this makes a number of about {bits:,} bits; the limit is {limits.number_bits:,}")


def check_sum(left: Any, right: Any, limits: RenderLimits) -> None:
    """`left + right` on strings or lists, before it is made."""
    if isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > limits.text_chars:
            raise too_long(len(left) + len(right), limits)
    elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        if len(left) + len(right) > limits.items:
            raise too_many(len(left) + len(right), limits)
        chars = text_weight(left, limits.text_chars) + text_weight(right, limits.text_chars)
        if chars > limits.text_chars:
            raise too_long(chars, limits, "builds a list with a text")


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?")


def check_printf(template: str, values: Any, limits: RenderLimits) -> None:
    """`template % values`, before it is made: the widths and precisions, and the values printed per field."""
    fields = _PRINTF.findall(template)
    args = values if isinstance(values, tuple) else (values,)
    starred = any("*" in (width, precision) for width, precision in fields)
    widths = [int(n) for width, precision in fields for n in (width, precision) if n.isdigit()]
    if starred:
        widths += [a for a in args if isinstance(a, int)]
    printed = [*args, *(values.values() if isinstance(values, dict) else ())]
    _check_fields(template, len(fields), widths, printed, limits)


def check_format(template: str, args: tuple[Any, ...], kwargs: dict[str, Any], limits: RenderLimits) -> None:
    """`template.format(*args, **kwargs)`, before it is made (nested `{}` in a spec: every number counts)."""
    try:
        parsed = [(spec or "") for _, name, spec, _ in Formatter().parse(template) if name is not None]
    except ValueError:
        return  # a malformed format string: `str.format` says so itself
    printed = [*args, *kwargs.values()]
    widths: list[int] = []
    for spec in parsed:
        if "{" in spec:
            widths += [a for a in printed if isinstance(a, int)]
        elif match := _SPEC.match(spec):
            widths += [int(n) for n in match.groups() if n]
    _check_fields(template, len(parsed), widths, printed, limits)


def _check_fields(template: str, fields: int, widths: list[int], printed: list[Any], limits: RenderLimits) -> None:
    """At most `fields` times the widest of the values or widths, plus the template's own text."""
    for width in widths:
        check_width(width, limits)
    if not fields:
        return
    per_field = max([text_weight(value, limits.text_chars) for value in printed] + widths + [0])
    chars = len(template) + fields * per_field
    if chars > limits.text_chars:
        raise too_long(chars, limits)
