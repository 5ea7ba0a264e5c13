"""A sending process's heartbeat: its row in `senders`, kept fresh by a thread.

Contract: `with Heartbeat(engine, kind, lease_seconds) as beat:` registers a sender (`beat.id`), beats every
quarter lease from a daemon thread on its own connection, and marks the sender stopped on a clean exit. When
a beat finds the sender expired (silent past the lease, e.g. a machine that froze), `beat.fenced` is set and
the `on_fenced` callback runs: the sender's rows were recovered by another process, and it must stop (it can
no longer write a request's intent, so it cannot post again). A beat that fails on a database error is
logged (type only) and retried at the next beat.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from needlecast.store.delivery import delivery_store

log = logging.getLogger("needlecast.fleet.heartbeat")


class Heartbeat:
    def __init__(
        self,
        engine: Engine,
        kind: str,
        lease_seconds: float,
        *,
        on_fenced: Callable[[], None] | None = None,
        note: str = "",
    ) -> None:
        self.engine = engine
        self.store = delivery_store(engine)  # senders' rows live behind the delivery store
        self.kind = kind
        self.lease_seconds = lease_seconds
        self.interval = max(0.2, lease_seconds / 4)
        self.on_fenced = on_fenced
        self.note = note
        self.fenced = threading.Event()
        self.id = ""
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        with self.store.writing() as conn:
            self.id = self.store.register_sender(conn, self.kind, self.note)
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.kind}", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        try:
            with self.store.writing() as conn:
                self.store.retire_sender(conn, self.id)
        except SQLAlchemyError as err:  # the lease then expires it: its rows are recovered like a crash's
            log.warning("sender %s could not mark itself stopped: %s", self.id, type(err).__name__)

    def beat(self) -> bool:
        """One beat now; False once the sender has been expired."""
        with self.store.writing() as conn:
            alive = self.store.beat(conn, self.id)
        if not alive and not self.fenced.is_set():
            log.error("sender %s was declared dead (silent past the lease): stopping", self.id)
            self.fenced.set()
            if self.on_fenced is not None:
                self.on_fenced()
        return alive

    def set_leader(self, leader: bool) -> None:
        with self.store.writing() as conn:
            self.store.set_leader(conn, self.id, leader)

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            try:
                self.beat()
            except SQLAlchemyError as err:
                log.warning("sender %s: heartbeat failed (%s); retrying", self.id, type(err).__name__)
            if self.fenced.is_set():
                return
