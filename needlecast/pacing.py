"""Bulk work with the cyclic garbage collector seldom awake.

An import, a broadcast's planning and a send make and drop millions of small acyclic objects (records,
rows, recipients, outcomes), which reference counting frees on its own. With the default thresholds the
cyclic collector still scanned the young ones every 700 allocations, and its full passes walked every
object the process holds: a third of the cost of making them. Nothing in that work leaves cycles behind
for the collector to find.

Contract: inside `collect_seldom()`, what already exists is frozen (never scanned) and the young
generation is collected every `young_threshold` allocations; thresholds and the frozen objects are
restored when the last block running (in any thread) ends; blocks may nest and overlap.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_DEPTH = 0  # blocks running now, in any thread: the last one out restores the collector
_SAVED: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def collect_seldom(young_threshold: int = 100_000) -> Iterator[None]:
    global _DEPTH, _SAVED
    with _LOCK:
        if _DEPTH == 0:
            _SAVED = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(young_threshold, *_SAVED[1:])
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                gc.set_threshold(*_SAVED)
                gc.unfreeze()
