"""Figures the console keeps between views: a plan of 200,000 people, every segment's size, the home page's
figures. Worked out once, then read from memory; worked out again in the background, never while a page waits.

Contract: `Kept(max_age)` holds one figure per `name` together with the `inputs` it was worked out from (a
hashable digest of everything it depends on: the files, the audience's fingerprint, the ledger's marks).
`look(name, inputs, compute)` never waits for `compute` and returns a `Shown`:
- a figure kept under `name` from the same `inputs` and younger than `max_age` seconds: that figure, current;
- a figure kept from other `inputs`, or older: that figure at once (`updating`, with `computed_at`, the
  moment it was worked out), and `compute` started off the request to work it out again (stale while it
  revalidates: a send changes the ledger's newest row continuously, and a page must not wait for a plan of
  200,000 each time);
- nothing kept yet: no figure (`ready` False: the page shows a placeholder), and `compute` started off the
  request. When the last attempt for these same `inputs` failed, `compute` runs in line instead, so that
  its error reaches the page (as it did before figures were kept).
At most one `compute` runs per `name` at a time (`run_later`: a thread by default); one that raises is
logged (the figure's kind and the error's type: no personal data), keeps the figure already kept, and is not
tried again for the same inputs within `max_age` seconds.
`ready(name, inputs, compute)` is `look` for a caller that needs a figure: when nothing is kept it waits for
the one being worked out (or works it out now, in the asking thread); otherwise as `look`. `get` is `ready`
as `(figure, computed_at)`. `look`, `ready` and `get` take a figure's own `max_age`.
Exact counts (what a send, a schedule or a resume confirms) never come from here: they are counted when asked.
A figure not asked for in `forget_after` seconds is dropped. Thread-safe. Figures are shared: callers treat
them as read-only.

In another process: `look`, `ready` and `get` also take a `remote` (`Remote`: a module-level function and
picklable arguments that work the same figure out from scratch, `readmodels.elsewhere`). While processes are
allowed (`start_processes(workers)`: the web app, from its start to its end, `stop_processes`), such a figure
is worked out in a process pool of `workers` processes (`spawn`: made at the first figure that needs one,
never sharing a connection) and the asking thread (a background one, or the caller of `ready` when nothing is
kept) only waits for it without holding the interpreter, then receives the finished figure. So a plan of
200,000 does not hold up the pages of the web app's interpreter while it is worked out. Everything else in
this contract is unchanged (the same one-at-a-time, placeholders, errors kept and logged by kind and type: an
error raised in the process comes back as itself, a process that died as `BrokenProcessPool`, after which the
next figure starts a new pool). Without processes (the command line, the tests: `WORKERS` 0), or without a
`remote` (a figure whose inputs cannot be rebuilt in another process), `compute` runs in this process.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("needlecast.kept")

WORKERS = 2  # processes the web app works kept figures out in (0: in its own, in threads; the tests set 0)


@dataclass
class _Entry:
    inputs: Hashable
    figure: Any
    computed_at: datetime
    computed: float  # time.monotonic() when computed
    asked: float  # time.monotonic() when last asked for


@dataclass(frozen=True)
class Shown(Generic[T]):
    """What a page shows of a kept figure: the figure (None while none was ever worked out: `ready` False),
    when it was worked out (UTC), and whether a newer one is being worked out (`updating`)."""

    figure: T | None
    computed_at: datetime | None
    updating: bool

    @property
    def ready(self) -> bool:
        return self.computed_at is not None


@dataclass(frozen=True)
class Remote:
    """A figure's computation that another process can run: `function` (module-level) called with `args` (all
    picklable), its result handed to `after` in this process (default: the result is the figure)."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    after: Callable[[Any], Any] | None = None


def _in_thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="needlecast-kept-refresh", daemon=True).start()


def run_inline(work: Callable[[], None]) -> None:
    """A `run_later` that works a figure out in the asking thread (the command line, the tests)."""
    work()


def _kind(name: Hashable) -> str:
    """The figure's kind for a log line ("plan", "segments"): the first part of its name, never its paths."""
    first = name[0] if isinstance(name, tuple) and name else name
    return str(first)[:40]


def end_with_parent() -> None:
    """The process pool's initializer: a pool process ends as soon as the process that made it ends, however
    it ended (a SIGKILL gives the web app no chance to shut its pool down), instead of living on as an orphan.
    A daemon thread waits on the parent's sentinel, which becomes readable when the parent ends."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not a child of multiprocessing: nothing to watch
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(0)  # the parent is gone: nobody is left to ask this process for a figure

    threading.Thread(target=watch, name="needlecast-parent-watch", daemon=True).start()


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
        self.run_later = run_later  # how `compute` runs off the request (tests run it in line)
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._running: dict[Hashable, threading.Event] = {}  # name -> set when its computation ends
        self._failed: dict[Hashable, tuple[Hashable, float]] = {}  # name -> (inputs, when) of its last failure
        self._users = 0  # `start_processes` calls not yet stopped
        self._workers = 0
        self._pool: ProcessPoolExecutor | None = None

    def start_processes(self, workers: int) -> None:
        """Allow figures with a `remote` to be worked out in `workers` other processes (none: nothing changes),
        until as many `stop_processes` calls; the pool is made when a figure first needs it."""
        if workers < 1:
            return
        with self._lock:
            self._users += 1
            self._workers = max(self._workers, workers)

    def stop_processes(self) -> None:
        """End one `start_processes`; the last one shuts the pool down (a figure being worked out there is
        abandoned: it fails, and the kept one stays)."""
        with self._lock:
            self._users = max(0, self._users - 1)
            pool = self._pool if self._users == 0 else None
            if self._users == 0:
                self._pool, self._workers = None, 0
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _process_pool(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._users and self._pool is None:
                context = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(self._workers, mp_context=context, initializer=end_with_parent)
            return self._pool

    def _elsewhere(self, compute: Callable[[], T], remote: Remote | None) -> Callable[[], T]:
        """`compute`, or `remote` run in the process pool while there is one (see the module contract)."""
        if remote is None:
            return compute

        def in_a_process() -> T:
            pool = self._process_pool()
            if pool is None:
                return compute()
            try:
                result = pool.submit(remote.function, *remote.args).result()
            except BrokenProcessPool:
                with self._lock:  # a process died: the next figure starts a new pool
                    if self._pool is pool:
                        self._pool = None
                raise
            return remote.after(result) if remote.after is not None else result

        return in_a_process

    def look(
        self,
        name: Hashable,
        inputs: Hashable,
        compute: Callable[[], T],
        *,
        max_age: float | None = None,
        remote: Remote | None = None,
    ) -> Shown[T]:
        """The kept figure `name`, never waiting for `compute` (see the module contract); `max_age`: this
        figure's own (default: the `Kept`'s); `remote`: the same computation for another process."""
        compute = self._elsewhere(compute, remote)
        in_line = self._start(name, inputs, compute, max_age)
        if in_line:
            self._work(name, inputs, compute, threading.Event(), raising=True)
        with self._lock:
            entry, running = self._entries.get(name), name in self._running
            if entry is None:
                return Shown(None, None, running)
            stale = not self._current(entry, inputs, time.monotonic(), max_age)
            return Shown(entry.figure, entry.computed_at, stale and running)

    def get(
        self,
        name: Hashable,
        inputs: Hashable,
        compute: Callable[[], T],
        *,
        max_age: float | None = None,
        remote: Remote | None = None,
    ) -> tuple[T, datetime]:
        """The kept figure `name` and when it was worked out, waiting for one when none is kept (see the
        module contract)."""
        shown = self.ready(name, inputs, compute, max_age=max_age, remote=remote)
        assert shown.computed_at is not None
        return shown.figure, shown.computed_at  # type: ignore[return-value]

    def ready(
        self,
        name: Hashable,
        inputs: Hashable,
        compute: Callable[[], T],
        *,
        max_age: float | None = None,
        remote: Remote | None = None,
    ) -> Shown[T]:
        """`get` as a `Shown` (`ready` always, `updating` when an older figure is shown)."""
        compute = self._elsewhere(compute, remote)
        while True:
            mine = None
            with self._lock:
                kept, running = name in self._entries, self._running.get(name)
                if not kept and running is None:
                    mine = self._running[name] = threading.Event()
            if kept:
                shown = self.look(name, inputs, compute, max_age=max_age)
                if shown.ready:
                    return shown
            elif mine is not None:
                self._work(name, inputs, compute, mine, raising=True)
            elif running is not None:
                running.wait()

    def _current(self, entry: _Entry, inputs: Hashable, now: float, max_age: float | None = None) -> bool:
        return entry.inputs == inputs and now - entry.computed < (self.max_age if max_age is None else max_age)

    def _start(
        self, name: Hashable, inputs: Hashable, compute: Callable[[], Any], max_age: float | None = None
    ) -> bool:
        """Start working `name` out off the request when it is missing or not current and not being worked
        out; True when the caller should work it out in line instead (nothing kept, and these inputs failed)."""
        now = time.monotonic()
        with self._lock:
            for old in [k for k, e in self._entries.items() if now - e.asked > self.forget_after]:
                del self._entries[old]
            entry = self._entries.get(name)
            if entry is not None:
                entry.asked = now
                if self._current(entry, inputs, now, max_age):
                    return False
            if name in self._running:
                return False
            failed = self._failed.get(name)
            if failed is not None and failed[0] == inputs and now - failed[1] < self.max_age:
                return entry is None
            done = self._running[name] = threading.Event()
        self.run_later(lambda: self._work(name, inputs, compute, done, raising=False))
        return False

    def _work(
        self, name: Hashable, inputs: Hashable, compute: Callable[[], Any], done: threading.Event, *, raising: bool
    ) -> None:
        """Work `name` out and keep it; on an error keep what was kept, log it (or raise it, in line)."""
        started_at = datetime.now(UTC)
        try:
            figure = compute()
        except Exception as error:
            with self._lock:
                self._failed[name] = (inputs, time.monotonic())
            if raising:
                raise
            log.warning("a kept figure (%s) could not be worked out again: %s", _kind(name), type(error).__name__)
        else:
            with self._lock:
                now = time.monotonic()
                old = self._entries.get(name)
                self._entries[name] = _Entry(inputs, figure, started_at, now, old.asked if old else now)
                self._failed.pop(name, None)
        finally:
            with self._lock:
                if self._running.get(name) is done:
                    del self._running[name]
            done.set()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._failed.clear()


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
