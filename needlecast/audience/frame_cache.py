"""The contacts frame for pages that show plans and segment sizes, read again only when the audience changed.

Contract: `FrameCache(engine, ttl_seconds)` holds the last `load_frame` of the whole audience (every column, for
any segment). `frame(conn)` gives it while the store's fingerprint is unchanged and it is younger than
`ttl_seconds`; otherwise it reads the frame again. `segment(conn, segment, now)` evaluates a segment over
that frame once per frame read (the result is kept with the frame: a segment's size changes when the
audience does, or with time, within `ttl_seconds`). The fingerprint (`fingerprint`: the newest contact and the latest
update, the erasures, the newest consent event, how many list memberships and suppressions, the latest
suppression, and the latest event from the clinic's systems; each through an index) moves with every
import, signup, consent change, preference, suppression, erasure and booking event, so a page never shows an
audience older than its last change by more than `ttl_seconds`, and usually not at all. The frame is
shared, never changed in place: callers treat it as read-only. Thread-safe.

With `refresh_in_background` (the web app), a frame older than `ttl_seconds` whose fingerprint is unchanged is
still given at once, and read again in a thread (one at a time): only a change to the audience makes a page
wait for the whole audience to be read (a second or more at 200,000 contacts).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from needlecast.audience.membership import SegmentResult, evaluate, load_frame
from needlecast.audience.segments import Segment
from needlecast.store.schema import (
    consent_events,
    contact_events,
    contact_lists,
    contacts,
    erased_contacts,
    suppressions,
)


def fingerprint(conn: Connection) -> tuple[object, ...]:
    """The audience's marks, each read through an index (every console page that shows a plan or a segment
    asks for them): the newest contact, the latest contact update, the erasures (the only way a contact is
    deleted; it deletes their consent events and list memberships too), the newest consent event, the list
    memberships, the suppressions and the latest one, and the newest event from the clinic's systems."""
    marks = select(
        select(func.max(contacts.c.id)).scalar_subquery(),
        select(func.max(contacts.c.updated_at)).scalar_subquery(),  # ix_contacts_updated_at
        select(func.count()).select_from(erased_contacts).scalar_subquery(),
        select(func.max(consent_events.c.id)).scalar_subquery(),
        select(func.count()).select_from(contact_lists).scalar_subquery(),
        select(func.count()).select_from(suppressions).scalar_subquery(),
        select(func.max(suppressions.c.created_at)).scalar_subquery(),
        select(func.max(contact_events.c.id)).scalar_subquery(),  # segments on events seen lately
    )
    # One statement, not eight: during a send in the same process each statement waits for the interpreter's
    # lock again when it returns, and this runs on every page that shows a plan or a segment.
    return tuple(conn.execute(marks).one())


class FrameCache:
    def __init__(self, engine: Engine, ttl_seconds: float = 60.0, *, refresh_in_background: bool = False) -> None:
        self.engine = engine
        self.ttl_seconds = ttl_seconds
        self.refresh_in_background = refresh_in_background
        self._refreshing = False
        self._lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._frame: pd.DataFrame | None = None
        self._read_at = 0.0
        self._results: dict[str, SegmentResult] = {}

    def frame(self, conn: Connection) -> pd.DataFrame:
        key = fingerprint(conn)
        with self._lock:
            fresh = time.monotonic() - self._read_at < self.ttl_seconds
            if self._frame is not None and key == self._key:
                if fresh:
                    return self._frame
                if self.refresh_in_background:
                    if not self._refreshing:
                        self._refreshing = True
                        threading.Thread(target=self._refresh, name="needlecast-frame-refresh", daemon=True).start()
                    return self._frame
        return self._read(conn, key)

    def _read(self, conn: Connection, key: tuple[object, ...]) -> pd.DataFrame:
        frame = load_frame(conn)
        with self._lock:
            self._key, self._frame, self._read_at = key, frame, time.monotonic()
            self._results = {}
        return frame

    def _refresh(self) -> None:
        try:
            with self.engine.connect() as conn:
                self._read(conn, fingerprint(conn))
        finally:
            with self._lock:
                self._refreshing = False

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
