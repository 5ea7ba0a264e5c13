"""Files written whole or not at all: a reader (another process, a page, the scheduler re-reading campaign files)
never sees half of one.

Contract: `write_text_atomically(path, text)` writes `text` (UTF-8) into a temporary file beside `path` (its
folder made when missing), then renames it over `path`; when anything fails the temporary file is removed and
the error raised, and `path` is as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
