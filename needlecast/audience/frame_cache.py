"""The contacts frame for pages that show plans and segment sizes, read again only when the audience changed.

Contract: `FrameCache(engine, ttl_seconds)` holds the last `load_frame` of the whole audience (every column, for
any segment). `frame(conn)` gives it while the store's fingerprint is unchanged and it is younger than
`ttl_seconds`; otherwise it reads the frame again. `segment(conn, segment, now)` evaluates a segment over
that frame once per frame read (the result is kept with the frame: a segment's size changes when the
audience does, or with time, within `ttl_seconds`). The fingerprint (contacts: how many, the highest id, the
latest update; how many consent events, list memberships and suppressions, the latest suppression, and the
latest event from the clinic's systems) moves with every import, signup, consent change, preference,
suppression, erasure and booking event, so a page never shows
an audience older than its last change by more than `ttl_seconds`, and usually not at all. The frame is
shared, never changed in place: callers treat it as read-only. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from needlecast.audience.segments import Segment, SegmentResult, evaluate, load_frame
from needlecast.store.schema import consent_events, contact_events, contact_lists, contacts, suppressions


def fingerprint(conn: Connection) -> tuple[object, ...]:
    people = conn.execute(select(func.count(), func.max(contacts.c.id), func.max(contacts.c.updated_at))).one()
    consents = conn.execute(select(func.count()).select_from(consent_events)).scalar()
    lists = conn.execute(select(func.count()).select_from(contact_lists)).scalar()
    blocked = conn.execute(select(func.count(), func.max(suppressions.c.created_at))).one()
    events = conn.execute(select(func.max(contact_events.c.id))).scalar()  # segments on events seen lately
    return (*people, consents, lists, *blocked, events)


class FrameCache:
    def __init__(self, engine: Engine, ttl_seconds: float = 60.0) -> None:
        self.engine = engine
        self.ttl_seconds = ttl_seconds
        self._lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._frame: pd.DataFrame | None = None
        self._read_at = 0.0
        self._results: dict[str, SegmentResult] = {}

    def frame(self, conn: Connection) -> pd.DataFrame:
        key = fingerprint(conn)
        with self._lock:
            fresh = time.monotonic() - self._read_at < self.ttl_seconds
            if self._frame is not None and key == self._key and fresh:
                return self._frame
        frame = load_frame(conn)
        with self._lock:
            self._key, self._frame, self._read_at = key, frame, time.monotonic()
            self._results = {}
        return frame

    def segment(self, conn: Connection, segment: Segment, now: datetime) -> SegmentResult:
        frame = self.frame(conn)
        name = repr(segment)  # its whole definition: an edited segment is evaluated afresh
        with self._lock:
            known = self._results.get(name) if self._frame is frame else None
        if known is not None:
            return known
        result = evaluate(segment, frame, now)
        with self._lock:
            if self._frame is frame:
                self._results[name] = result
        return result
