"""Waiting on a condition in tests: poll it until it holds or a generous deadline passes.

Tests wait on what they can observe (a row count, a line in a log, a port that answers), never for a fixed
time: under a loaded CI machine the condition simply takes longer to become true.
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

_TICK = threading.Event()  # never set: its wait() is an interruptible pause between two looks


def wait_until(condition: Callable[[], object], timeout: float, what: str, *, every: float = 0.05) -> None:
    """Return as soon as `condition()` is true; `AssertionError` naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        _TICK.wait(every)


SERVE_POLL_SECONDS = 0.02  # how often a serving thread looks for a shutdown request (socketserver's own: 0.5 s)


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """`server` (a socketserver: http.server's, dnslib's) answering in a thread of its own while the block runs,
    then shut down and closed. Its thread looks for the shutdown every 20 ms: socketserver's default half second
    was paid at the end of every test that used a stub server."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": SERVE_POLL_SECONDS}, name="stub-server", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
