"""Stage timings taken from the outside: wrap an object, and the calls named go on a stopwatch.

The planner, the dispatcher and the delivery store time nothing themselves; the CLI (`needlecast send
--timings`) and the benchmarks wrap them instead:

    watch = Stopwatch()
    store = watch.wrap(delivery_store(engine), calls={"claim": "claim"}, entries={"writing": "turn"})

Contract: `wrap(target, calls=..., entries=...)` returns a proxy that behaves as `target`; a method named
in `calls` adds the seconds of each call to its stage; one named in `entries` returns a context manager
whose entering is timed (the wait for a lock or a turn). Every other attribute is the target's own.
Thread-safe: stages are summed under a lock.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Stopwatch:
    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds

    def wrap(self, target: T, *, calls: Mapping[str, str] = {}, entries: Mapping[str, str] = {}) -> T:
        """`target`, with the calls named timed (see the module docstring)."""
        return _Timed(target, self, dict(calls), dict(entries))  # type: ignore[return-value]


class _Timed:
    def __init__(self, target: Any, watch: Stopwatch, calls: dict[str, str], entries: dict[str, str]) -> None:
        self._target = target
        self._watch = watch
        self._calls = calls
        self._entries = entries

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)
        if name in self._calls:
            return _timed_call(found, self._watch, self._calls[name])
        if name in self._entries:
            return _timed_entry(found, self._watch, self._entries[name])
        return found


def _timed_call(method: Callable[..., Any], watch: Stopwatch, stage: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            watch.add(stage, time.perf_counter() - started)

    return call


def _timed_entry(
    method: Callable[..., AbstractContextManager[Any]], watch: Stopwatch, stage: str
) -> Callable[..., AbstractContextManager[Any]]:
    @contextmanager
    def entered(*args: Any, **kwargs: Any) -> Iterator[Any]:
        started = time.perf_counter()
        with method(*args, **kwargs) as value:
            watch.add(stage, time.perf_counter() - started)
            yield value

    return entered
