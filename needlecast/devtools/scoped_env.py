"""Environment variables set for one block of the demo and put back after it.

The demo runs in the caller's process (the `needlecast demo` command, or a test calling it), and the
scheduler jobs it starts read their settings from the workspace and the environment afresh; so what it sets
(quiet hours off, the demo's webhook key) must be in the environment while it runs, and gone afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set `values` in `os.environ` for the block; afterwards each variable is as it was (unset if it was)."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
