"""Sliding-window request limits kept in this process's memory: the signup form and the API.

Contract: `Window(limit, seconds).hit(key, now)` counts a request for `key` and returns 0 when it is within
the limit, else the seconds to wait before the oldest counted request leaves the window (for `Retry-After`).
A refused request is not counted. Keys are hashes or ids, never addresses. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class Window:
    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float:
        if self.limit <= 0:
            return 0.0
        moment = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= moment - self.seconds:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(0.001, hits[0] + self.seconds - moment)
            hits.append(moment)
            if len(self._hits) > 100_000:  # forget idle keys rather than grow without bound
                for stale in [k for k, v in self._hits.items() if not v or v[-1] <= moment - self.seconds]:
                    del self._hits[stale]
            return 0.0
