"""Reading the workspace's YAML settings files with one kind of error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from needlecast.errors import ConfigurationError


def read_yaml(path: Path, missing: str) -> Any:
    """The parsed file (None for an empty one). A missing file or bad YAML is a `ConfigurationError` that
    names the file; `missing` says what the file is and how to create it."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigurationError(f"{path}: not found ({missing})") from err
    except yaml.YAMLError as err:
        raise ConfigurationError(f"{path}: not valid YAML: {err}") from err
