"""Charts drawn once per drawing: a chart's SVG kept by what it draws.

Matplotlib takes a few hundred milliseconds a chart, and the Reports page draws eight of them, the report page
two: drawn again on every view, they were most of those pages' time. A chart is a function of its table and
its few options, so `kept_chart` keys it by a digest of exactly those (the table's column names, types and
every value, and the options) and keeps the newest `KEPT` drawings in the process. The same figures give the
same SVG; any changed value, row or option is another key, so a kept chart is never out of date.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

import pandas as pd

KEPT = 128  # drawings kept (about 30 KB each)

Drawing = TypeVar("Drawing")

_kept: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()


def table_digest(table: pd.DataFrame) -> str:
    """A digest of everything a chart of `table` can show: its columns (names and types) and every value."""
    digest = hashlib.sha256()
    digest.update(repr([(str(c), str(t)) for c, t in table.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def keep_chart(kind: str, table: pd.DataFrame, options: tuple[Hashable, ...], chart: Any) -> None:
    """Keep `chart`, drawn elsewhere (another process) by `kept_chart(kind, table, options, ...)`, as if drawn
    here: the next `kept_chart` of the same table, kind and options finds it."""
    kept_chart(kind, table, options, lambda: chart)


def kept_chart(kind: str, table: pd.DataFrame, options: tuple[Hashable, ...], draw: Callable[[], Drawing]) -> Drawing:
    """The chart (or charts) `draw()` gives for `table` drawn as `kind` with `options`, drawn only if no
    drawing of the same table, kind and options is kept. Two threads asking for the same new chart at once
    may both draw it (the same SVG); nothing waits on a lock while drawing."""
    key = f"{kind}:{table_digest(table)}:{options!r}"
    with _lock:
        if key in _kept:
            _kept.move_to_end(key)
            return cast(Drawing, _kept[key])
    chart = draw()
    with _lock:
        _kept[key] = chart
        _kept.move_to_end(key)
        while len(_kept) > KEPT:
            _kept.popitem(last=False)
    return chart
