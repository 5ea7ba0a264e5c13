"""One settings table of needlecast.toml read into its dataclass: the loader every section shares.

Contract: `load_table(path, section, cls, raw, ...)` turns the TOML table `raw` of `[section]` into `cls` (a
dataclass whose fields are the table's keys, with their defaults for keys left out). A key that is no field,
or a value of the wrong type, is a `ConfigurationError` naming the file, the section, the key and what to
write. A field's value is read by its own reader when `readers` has one (`reader(key, value)`, which checks
it and raises a `ConfigurationError` itself); otherwise by the field's type (`str`, `int`, `float`, `bool`,
`tuple[str, ...]`; a whole number is taken where a number is wanted, never a true or false), then checked
against `choices` (a few words, any case, each with an example) and `floors` (the least value, and why).
Imports nothing of needlecast's but `errors`, like the rest of `config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from needlecast.errors import ConfigurationError

T = TypeVar("T")
Reader = Callable[[str, Any], Any]  # (key, value) -> the value checked; a ConfigurationError when it is not

_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "tuple[str, ...]": tuple}
_KINDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


def coerce(path: Path, section: str, key: str, value: Any, wanted: type) -> Any:
    """`value` checked against the type `wanted` (ints are accepted where floats are wanted, as floats)."""
    if wanted is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if wanted is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigurationError(f'{path}: [{section}] {key} must be a list of text, like ["a@example.com"]')
        return tuple(value)
    if (isinstance(value, bool) and wanted is not bool) or not isinstance(value, wanted):
        raise ConfigurationError(f"{path}: [{section}] {key} must be {_KINDS[wanted]}, not {value!r}")
    return value


def load_table(
    path: Path,
    section: str,
    cls: type[T],
    raw: Any,
    *,
    readers: Mapping[str, Reader] | None = None,
    choices: Mapping[str, Mapping[str, str]] | None = None,
    floors: Mapping[str, tuple[float, str]] | None = None,
) -> T:
    """The table `raw` of `[section]` in `path` as `cls` (see the module contract)."""
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: [{section}] must be a table of keys")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigurationError(f"{path}: [{section}] has an unknown key '{key}'. Known keys: {known}")
        reader = (readers or {}).get(key)
        if reader is not None:
            values[key] = reader(key, value)
            continue
        values[key] = coerce(path, section, key, value, _TYPES[str(fields[key].type)])
        if choices and key in choices:
            values[key] = _choose(path, section, key, values[key], choices[key])
        least = (floors or {}).get(key)
        if least is not None and values[key] < least[0]:
            raise ConfigurationError(
                f"{path}: [{section}] {key} must be at least {least[0]:g} ({least[1]}), not {value!r}"
            )
    return cls(**values)


def _choose(path: Path, section: str, key: str, value: str, choices: Mapping[str, str]) -> str:
    word = value.strip().upper()
    if word not in choices:
        listed = ", ".join(f'"{choice}" ({example})' for choice, example in choices.items())
        raise ConfigurationError(f"{path}: [{section}] {key} must be one of {listed}, not {value!r}")
    return word
