"""Figures the console keeps between views: a plan of 200,000 people, every segment's size. Computed once, then
read from memory while nothing they depend on changed.

Contract: `Kept(max_age)` holds one figure per `name` together with the `inputs` it was computed from (a
hashable digest of everything it depends on: the files, the audience's fingerprint, the ledger's marks).
`get(name, inputs, compute)` returns `(figure, computed_at)`:
- no figure kept under `name`, or one computed from other `inputs`: computed now (the page waits; the figure
  is exact on what it depends on) and kept;
- the same `inputs`, younger than `max_age` seconds: the kept figure;
- the same `inputs`, older: the kept figure at once, and computed again off the request (a thread; one at a
  time per name), for what changes without touching its inputs (the clock, a send moving emails from queued
  to sent). `computed_at` (UTC) says how old the figure shown is.
A figure not asked for in `forget_after` seconds is dropped. Thread-safe. Figures are shared: callers treat
them as read-only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class _Entry:
    inputs: Hashable
    figure: Any
    computed_at: datetime
    computed: float  # time.monotonic() when computed
    asked: float  # time.monotonic() when last asked for
    refreshing: bool = False


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="needlecast-kept-refresh", daemon=True).start()


class Kept:
    def __init__(
        self,
        max_age: float = 60.0,
        *,
        forget_after: float = 600.0,
        run_later: Callable[[Callable[[], None]], None] = _in_thread,
    ) -> None:
        self.max_age = max_age
        self.forget_after = forget_after
        self._run_later = run_later  # tests run the refresh in line
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}

    def get(self, name: Hashable, inputs: Hashable, compute: Callable[[], T]) -> tuple[T, datetime]:
        """The figure `name` computed from `inputs` (see the module contract)."""
        now = time.monotonic()
        with self._lock:
            for old in [k for k, e in self._entries.items() if now - e.asked > self.forget_after]:
                del self._entries[old]
            entry = self._entries.get(name)
            if entry is not None and entry.inputs == inputs:
                entry.asked = now
                if now - entry.computed >= self.max_age and not entry.refreshing:
                    entry.refreshing = True
                    self._run_later(lambda: self._refresh(name, inputs, compute))
                return entry.figure, entry.computed_at
        return self._compute(name, inputs, compute)

    def _compute(self, name: Hashable, inputs: Hashable, compute: Callable[[], T]) -> tuple[T, datetime]:
        started_at = datetime.now(UTC)
        figure = compute()
        with self._lock:
            now = time.monotonic()
            self._entries[name] = _Entry(inputs, figure, started_at, now, now)
        return figure, started_at

    def _refresh(self, name: Hashable, inputs: Hashable, compute: Callable[[], Any]) -> None:
        try:
            self._compute(name, inputs, compute)
        finally:
            with self._lock:
                entry = self._entries.get(name)
                if entry is not None:
                    entry.refreshing = False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def files_digest(paths: Iterable[Path]) -> str:
    """A digest of the files' contents (a file that does not exist counts as its absence): an edit changes it
    whatever its modification time says."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path).encode())
        try:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError:
            digest.update(b"-")
    return digest.hexdigest()


def tree_marks(root: Path, pattern: str = "*") -> tuple[tuple[str, int, int], ...]:
    """Each file under `root` with its modification time and size: for trees too large to read each view
    (articles, templates)."""
    if not root.is_dir():
        return ()
    found = []
    for path in sorted(root.rglob(pattern)):
        if path.is_file():
            stat = path.stat()
            found.append((str(path.relative_to(root)), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


KEPT = Kept()  # the process's kept figures: plans, calendars, segment summaries (the web app's pages)
