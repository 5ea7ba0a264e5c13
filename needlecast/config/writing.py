"""Writing needlecast.toml: a few keys changed, everything else kept as the person wrote it.

Contract: `write_settings(root, changes)` sets each `changes[section][key]` (text, whole numbers, lists of
text) in the workspace's needlecast.toml with tomlkit, which keeps the file's comments, order and every
other section and key as they were; a section missing from the file is added at its end. The new text is
checked by the loader itself (`settings_from_text`) before anything is written, so a change the loader
refuses leaves the file untouched and raises its `ConfigurationError`; a good one replaces the file at once
(a temporary file renamed over it), so a reader never sees half a file, and a running app's workspace
follows it (`config.Workspace`). Returns the settings the new file gives. Secrets are never written here:
they stay in the environment.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit

from needlecast.config import CONFIG_FILE, Settings, note_written, settings_from_text

Value = str | int | float | bool | list[str] | tuple[str, ...]


def write_settings(root: Path, changes: Mapping[str, Mapping[str, Value]]) -> Settings:
    """Set `changes` in `root/needlecast.toml` (see the module contract)."""
    path = root / CONFIG_FILE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    document = tomlkit.parse(text)
    for section, values in changes.items():
        table: Any = document.get(section)
        if table is None:
            table = tomlkit.table()
            document.add(section, table)
        for key, value in values.items():
            table[key] = list(value) if isinstance(value, tuple) else value
    new_text = tomlkit.dumps(document)
    settings = settings_from_text(path, new_text)  # the loader's own checks, before the file is touched
    handle, temporary = tempfile.mkstemp(prefix=".needlecast-", suffix=".toml", dir=root)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(new_text)
        if path.exists():
            os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    note_written()
    return settings
