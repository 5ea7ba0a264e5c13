"""What a kept figure needs to be worked out in another process (`readmodels.kept.Remote`): where its inputs
are, as picklable values, and the engine, workspace and audience cache a process opens from them.

Contract:
- `Where.of(engine, workspace)`: the workspace's root, its settings as they are now (a frozen dataclass: the
  ones its file gives, or ones given in code, as the tests do) and the database's URL (with its password: it
  goes to the pool's process through a pipe, never to a log); None when another process cannot reach the same
  data: an in-memory SQLite database, or settings that do not pickle. A figure whose `Where` is None is worked
  out in this process, in a thread, as before (its `remote` is None).
- `opened(where)` (in the pool's process): an engine of its own for the URL (made once per URL and process,
  `store.engine.make_engine`: never a connection of the web app's), a `Workspace` with exactly those settings,
  and an audience cache (`FrameCache`) of its own for that engine, kept between figures so that the audience
  is read again only when it changed.
- `process_id()`: this process's id (what the tests use to prove a figure was worked out elsewhere).
"""

from __future__ import annotations

import os
import pickle
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from needlecast.audience.frame_cache import FrameCache
from needlecast.config import Settings, Workspace
from needlecast.store.engine import make_engine

_opened: dict[str, tuple[Engine, FrameCache]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Where:
    """A workspace and a database, as another process can open them (see the module contract)."""

    root: str
    settings: Settings
    url: str

    @classmethod
    def of(cls, engine: Engine, workspace: Workspace) -> Where | None:
        url = engine.url
        if url.get_backend_name() == "sqlite" and (not url.database or url.database == ":memory:"):
            return None
        if "mode=memory" in str(url):
            return None
        settings = workspace.settings
        try:
            pickle.dumps(settings)
        except Exception:  # settings made in code with something that does not pickle: stay in this process
            return None
        return cls(str(workspace.root), settings, url.render_as_string(hide_password=False))


def opened(where: Where) -> tuple[Engine, Workspace, FrameCache]:
    """The engine, workspace and audience cache of `where` in this process (see the module contract)."""
    with _lock:
        found = _opened.get(where.url)
        if found is None:
            engine = make_engine(where.url)
            found = _opened[where.url] = (engine, FrameCache(engine))
    engine, frames = found
    return engine, Workspace(root=Path(where.root), settings=where.settings), frames


def process_id() -> int:
    return os.getpid()
