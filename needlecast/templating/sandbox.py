"""`BoundedEnvironment`: Jinja's `SandboxedEnvironment` with needlecast's resource limits (`limits`).

Where each limit is enforced:
- the operators `*`, `+`, `**`, `%` (the sandbox's `call_binop`) and `~` (`BoundedCodeGenerator`): sizes,
  checked before the result is made where they can be;
- every call the template makes (the sandbox's `call`): the deadline; the string methods that pad, join,
  replace or format, before; any result, and a list or dict a method grew, after;
- filters: the padding, joining, wrapping and formatting ones before, the result of every one that can
  outgrow its input after (`UNGROWING_FILTERS` run as they are);
- every `{% for %}` iteration (`BoundedCodeGenerator` routes the loop's iterable through `bounded_loop`): the
  deadline, and the loop body's own text counted as produced;
- every `{{ value }}` (`finalize`): its size, counted as produced and as the part's output;
- each rendered part (`concat`, which `Template.render` calls): a plain join, its output counted where it is
  made (above), so that each error carries the line being rendered.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

import needlecast.templating.limits as lim
from needlecast.templating.limits import RenderLimits


class BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator with every loop's iterable passed through `environment.bounded_loop` (with the
    literal text of the loop's body, nested loops included: what each iteration outputs at least) and every
    `~` result through `environment.bounded_text` (Jinja has no hook of its own for either)."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in list(node.find_all(nodes.For)):
            static = sum(len(data.data) for part in loop.body for data in part.find_all(nodes.TemplateData))
            metered = nodes.Call(_BOUNDED_LOOP, [loop.iter, nodes.Const(static)], [], None, None)
            loop.iter = metered.set_lineno(loop.lineno)
        super().visit_Template(node, frame)

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        if node.node is _BOUNDED_LOOP:  # ours (no template source makes this node): called directly, not
            self.write("environment.bounded_loop(")  # through the sandbox's checks of a template's calls
            self.visit(node.args[0], frame)
            self.write(f", {int(node.args[1].as_const())})")
            return
        # by keyword: Jinja's `optimizeconst` wrapper of `visit_Call` takes only keywords after `frame`
        super().visit_Call(node, frame, forward_caller=forward_caller)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_text(")
        super().visit_Concat(node, frame)
        self.write(")")


_BOUNDED_LOOP = nodes.EnvironmentAttribute("bounded_loop")


def _metered(iterable: Iterable[Any], budget: lim.RenderBudget, static_chars: int) -> Iterator[Any]:
    for item in iterable:
        budget.charge(static_chars)
        yield item


class BoundedEnvironment(SandboxedEnvironment):
    """A sandboxed environment that enforces `limits` (see the module docstring for where)."""

    code_generator_class = BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, *args: Any, limits: RenderLimits | None = None, **kwargs: Any) -> None:
        self.limits = limits or RenderLimits()
        super().__init__(*args, finalize=self._finalize, **kwargs)
        self.globals["range"] = self.bounded_range
        self.globals["lipsum"] = self.bounded_lipsum
        for name, func in list(self.filters.items()):
            self.add_filter(name, func, grows=name not in UNGROWING_FILTERS)

    # -- hooks Jinja calls ---------------------------------------------------------------------------------------
    def concat(self, chunks: Iterable[str]) -> str:
        """The rendered text of one part; opens the rendering's budget unless one is open. The part's output
        is counted where it is made (`_finalize`, `bounded_loop`), which keeps this a plain join."""
        opened = lim.open_budget(self.limits)
        budget = lim.active_budget()
        assert budget is not None
        before = budget.start_part()
        try:
            return "".join(chunks)
        finally:
            budget.end_part(before)
            lim.close_budget(opened)

    def _finalize(self, value: Any) -> Any:
        # Every `{{ value }}` passes here: kept lean (no clock; loops and calls watch the deadline). A value of
        # another kind (a number, a token, a section) prints as its data does: no template can grow it.
        if isinstance(value, str):
            chars = len(value)
        elif isinstance(value, (list, tuple, dict, set, frozenset)):
            chars = lim.text_weight(value, self.limits.text_chars)
        else:
            return value
        if chars > self.limits.text_chars:
            raise lim.too_long(chars, self.limits, "outputs a value")
        budget = lim.active_budget()
        if budget is not None:
            budget.produced += chars
            if budget.produced > budget.ceiling:
                budget.overflow()
        return value

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        limits = self.limits
        ints = isinstance(left, int) and isinstance(right, int)
        if operator in ("*", "**") and ints:
            lim.check_numbers(operator, left, right, limits)
        elif operator == "*" and isinstance(right, int) and isinstance(left, (str, list, tuple)):
            lim.check_repeat(left, right, limits)
        elif operator == "*" and isinstance(left, int) and isinstance(right, (str, list, tuple)):
            lim.check_repeat(right, left, limits)
        elif operator == "+":
            lim.check_sum(left, right, limits)
        elif operator == "%" and isinstance(left, str):
            lim.check_printf(left, right, limits)
        return lim.check_built(super().call_binop(context, operator, left, right), limits)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        lim.tick()
        target = getattr(obj, "__wrapped__", obj)  # the sandbox's own wrapper of `str.format`
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            args = self._check_str_method(owner, getattr(target, "__name__", ""), args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        if isinstance(owner, (list, dict, set)) and len(owner) > self.limits.items:
            raise lim.too_many(len(owner), self.limits)
        return lim.check_built(result, self.limits)

    def _check_str_method(self, text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Check a string method's result size before it is made; `join` gets its items as a list."""
        limits = self.limits
        if name in ("center", "ljust", "rjust", "zfill") and args:
            lim.check_width(args[0], limits)
        elif name == "expandtabs":
            size = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(size, int):
                lim.check_chars(len(text) + text.count("\t") * size, limits)
        elif name == "join" and args:
            items = lim.take(args[0], limits)
            lim.check_join(text, items, limits)
            return (items, *args[1:])
        elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            count = args[2] if len(args) > 2 else kwargs.get("count")
            lim.check_replace(text, args[0], args[1], count if isinstance(count, int) else None, limits)
        elif name == "format":
            lim.check_format(text, args, kwargs, limits)
        elif name == "format_map" and args and isinstance(args[0], Mapping):
            lim.check_format(text, (), dict(args[0]), limits)
        return args

    # -- what templates reach --------------------------------------------------------------------------------------
    def bounded_loop(self, iterable: Iterable[Any], static_chars: int) -> Iterable[Any]:
        """A loop's iterable, metered: each iteration checks the deadline and counts the body's text."""
        budget = lim.active_budget()
        return iterable if budget is None else _metered(iterable, budget, static_chars)

    def bounded_text(self, value: Any) -> Any:
        return lim.check_built(value, self.limits)

    def bounded_range(self, *args: int) -> range:
        """`range()`, at most `MAX_ITEMS` long."""
        numbers = range(*args)
        if len(numbers) > self.limits.items:
            raise lim.too_many(len(numbers), self.limits, "a range")
        return numbers

    def bounded_lipsum(self, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        """Jinja's `lipsum()`, refusing more words than `MAX_TEXT_CHARS` could hold."""
        lim.check_chars(n * max * 12, self.limits)
        return generate_lorem_ipsum(n, html, min, max)

    def add_filter(self, name: str, func: Callable[..., Any], *, grows: bool = True) -> None:
        """Register a filter whose arguments are checked first (`FILTER_CHECKS`) and its result after; one
        whose result is never larger than its input (`grows=False`) is registered as it is."""
        self.filters[name] = _bounded_filter(func, FILTER_CHECKS.get(name), self.limits) if grows else func


# -- filters ------------------------------------------------------------------------------------------------------
Args = tuple[Any, ...]
Kwargs = dict[str, Any]
Check = Callable[[RenderLimits, Callable[..., Any], Args, Kwargs], Args]


def _bounded_filter(func: Callable[..., Any], check: Check | None, limits: RenderLimits) -> Callable[..., Any]:
    """`func` with `check` run on its arguments first (it may replace the positional ones, and take keyword
    ones out of `kwargs`) and its result's size checked after."""

    @functools.wraps(func)  # keeps Jinja's pass_context / pass_eval_context marker
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if check is not None:
            args = check(limits, func, args, kwargs)
        return lim.check_built(func(*args, **kwargs), limits)

    return bounded


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    """A filter's argument by position (counting the value as 0) or by name."""
    return args[index] if len(args) > index else kwargs.get(name, default)


def _check_center(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    lim.check_width(_arg(args, kwargs, 1, "width", 80), limits)
    return args


def _check_indent(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    text, width = str(args[0]), _arg(args, kwargs, 1, "width", 4)
    per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    lim.check_chars(len(text) + (text.count("\n") + 1) * per_line, limits)
    return args


def _check_wordwrap(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    environment, text = args[0], str(args[1])
    width, wrapstring = _arg(args, kwargs, 2, "width", 79), _arg(args, kwargs, 4, "wrapstring", None)
    separator = environment.newline_sequence if wrapstring is None else str(wrapstring)
    lines = 2 * len(text) // max(width if isinstance(width, int) else 1, 1) + text.count("\n") + 1
    lim.check_chars(len(text) + lines * len(separator), limits)
    return args


def _check_join(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    eval_ctx: EvalContext = args[0]
    items = lim.take(args[1], limits)
    attribute = _arg(args, kwargs, 3, "attribute", None)
    if attribute is not None:
        items = [make_attrgetter(eval_ctx.environment, attribute)(item) for item in items]
    separator = _arg(args, kwargs, 2, "d", "")
    kwargs.pop("attribute", None)
    kwargs.pop("d", None)
    lim.check_join(str(separator), items, limits)
    return (eval_ctx, items, separator)


def _check_replace(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    old, new = _arg(args, kwargs, 2, "old", ""), _arg(args, kwargs, 3, "new", "")
    count = _arg(args, kwargs, 4, "count", None)
    lim.check_replace(str(args[1]), str(old), str(new), count if isinstance(count, int) else None, limits)
    return args


def _check_format(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    lim.check_printf(str(args[0]), dict(kwargs) if kwargs else tuple(args[1:]), limits)
    return args


def _check_batch(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    count = _arg(args, kwargs, 1, "linecount", 0)
    if isinstance(count, int) and count > limits.items:
        raise lim.too_many(count, limits, "a batch")
    return args


def _check_slice(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    count = _arg(args, kwargs, 1, "slices", 0)
    if isinstance(count, int) and count > limits.items:
        raise lim.too_many(count, limits, "a list of slices")
    return args


def _check_printed(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    value = args[1] if hasattr(func, "jinja_pass_arg") else args[0]
    lim.check_text(value, limits)
    return args


def _check_tojson(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    indent = _arg(args, kwargs, 2, "indent", None)
    chars = lim.text_weight(args[1], limits.text_chars) * (1 + (indent if isinstance(indent, int) else 0))
    lim.check_chars(chars, limits)
    return args


def _check_urlize(limits: RenderLimits, func: Callable[..., Any], args: Args, kwargs: Kwargs) -> Args:
    text = str(args[1])
    attributes = sum(len(str(_arg(args, kwargs, i, name, "") or "")) for i, name in ((4, "target"), (5, "rel")))
    lim.check_chars(len(text) + (len(text) // 4 + 1) * (attributes + 60), limits)
    return args


# Jinja's filters whose result is never larger than their input (or is a lazy view of it, or applies a filter
# that is itself bounded): they run unwrapped, at no cost.
UNGROWING_FILTERS = frozenset(
    {
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "first", "float", "groupby", "int",
        "items", "last", "length", "lower", "map", "max", "min", "reject", "rejectattr", "reverse", "round",
        "safe", "select", "selectattr", "sort", "striptags", "title", "trim", "unique", "upper", "wordcount",
    }
)  # fmt: skip

# The filters whose result can outgrow their input many times, or that print a whole value.
FILTER_CHECKS: dict[str, Check] = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "join": _check_join,
    "replace": _check_replace,
    "format": _check_format,
    "batch": _check_batch,
    "slice": _check_slice,
    "tojson": _check_tojson,
    "urlize": _check_urlize,
    "pprint": _check_printed,
    "string": _check_printed,
    "escape": _check_printed,
    "e": _check_printed,
    "forceescape": _check_printed,
    "urlencode": _check_printed,
}
