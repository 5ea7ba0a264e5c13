"""Request intents, written just before each request first goes out (the backend's `before_post`): the
store's `intent_writer`.

After a crash, the rows of a request whose intent was written may have reached SendGrid (`unknown`); the
rest of the claim was certainly not posted and goes back to the queue (`ledger.recover_senders`). So the
intent must be in the database before the request leaves, and it is written from the sending thread, right
before the post.

Contract: `IntentWriter(store, campaign_id, sender_id, token)` is a context manager; `write(batch)` (any
object with a `request_id` and `recipients` that have a `delivery_id`: a `delivery.base.Batch`) returns
once the batch's intent is stored, and raises `SenderFenced` when the sender was declared dead (the request
must not be posted). Group commit: the sending threads that ask while one of them is writing are written
together by the next one, in one write turn (on SQLite the turn is shared with the other sender processes,
and waiting for it once per group instead of once per request kept the send's speed). Each intent is one
statement on a connection of the writer's own, in autocommit.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol

from sqlalchemy import Connection, Engine

from needlecast.errors import SenderFenced
from needlecast.store import fleet


class _Recipient(Protocol):
    @property
    def delivery_id(self) -> str: ...


class Request(Protocol):
    """A request about to be posted (`delivery.base.Batch`)."""

    @property
    def request_id(self) -> str: ...

    @property
    def recipients(self) -> Sequence[_Recipient]: ...


class _Store(Protocol):
    engine: Engine

    def write_turn(self) -> AbstractContextManager[None]: ...


class _Slot:
    __slots__ = ("batch", "done", "stored")

    def __init__(self, batch: Request) -> None:
        self.batch = batch
        self.done = False
        self.stored = False


class IntentWriter:
    def __init__(self, store: _Store, campaign_id: str, sender_id: str, token: str) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.sender_id = sender_id
        self.token = token
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []
        self._writing = False
        self._error: BaseException | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> IntentWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def write(self, batch: Request) -> None:
        slot = _Slot(batch)
        with self._cond:
            self._pending.append(slot)
            while not slot.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                group, self._pending = self._pending, []
                self._cond.release()
                try:
                    self._store(group)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    for other in group:
                        other.done = True
                    self._cond.notify_all()
        if self._error is not None and not slot.stored:
            raise self._error
        if not slot.stored:
            raise SenderFenced(f"sender {self.sender_id} was declared dead")

    def _store(self, group: list[_Slot]) -> None:
        try:
            with self.store.write_turn():
                if self._conn is None:
                    self._conn = self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                for slot in group:
                    ids = [int(recipient.delivery_id) for recipient in slot.batch.recipients]
                    slot.stored = fleet.record_intent(
                        self._conn, slot.batch.request_id, self.campaign_id, self.sender_id, self.token, ids
                    )
        except BaseException as err:  # every request of the group stays unposted; each thread raises it
            self._error = err
