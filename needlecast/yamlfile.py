"""Reading the workspace's YAML files: `parse_yaml` for any YAML text, `read_yaml` for a settings file with one
kind of error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from needlecast.errors import ConfigurationError


def read_yaml(path: Path, missing: str) -> Any:
    """The parsed file (None for an empty one). A missing file or bad YAML is a `ConfigurationError` that
    names the file; `missing` says what the file is and how to create it."""
    return parse_yaml_of(path, read_text(path, missing))


def read_text(path: Path, missing: str) -> str:
    """The file's text; a missing file is a `ConfigurationError` that names it and says what it is (`missing`)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigurationError(f"{path}: not found ({missing})") from err


def parse_yaml_of(path: Path, text: str) -> Any:
    """`text` (read from `path`) parsed; bad YAML is a `ConfigurationError` that names the file."""
    try:
        return parse_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigurationError(f"{path}: not valid YAML: {err}") from err


# libyaml's parser, where PyYAML was built with it: the same documents as `yaml.safe_load` (the constructor is
# the same), a few hundred times faster (the content vocabulary: 0.4 ms against 135 ms), which every page,
# job and command that loads the vocabulary or a campaign pays.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml(source: str | bytes) -> Any:
    """`yaml.safe_load(source)`, parsed by libyaml when available. Bad YAML raises the `yaml.YAMLError` of
    PyYAML's own parser, whose message quotes the offending line with a caret (libyaml's only names it)."""
    try:
        return yaml.load(source, Loader=_FAST_LOADER)
    except yaml.YAMLError:
        if _FAST_LOADER is yaml.SafeLoader:
            raise
    return yaml.safe_load(source)
