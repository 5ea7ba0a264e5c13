"""Cells that spreadsheet programs would run as formulas, made inert: for every CSV and XLSX we write.

Contract: `neutralise(value)` prefixes `'` to a text value that starts with `=`, `+`, `-`, `@`, a tab, a
carriage return, or `'` itself, and leaves everything else as it is. So a hostile value
(`=cmd|' /C calc'!A0`) shows as text, and the original is always recoverable: a cell that starts with `'`
is the original with one `'` added in front (`original(cell)` takes it off).
"""

from __future__ import annotations

from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def original(cell: str) -> str:
    """The value `neutralise` was given, from the cell it wrote."""
    return cell[1:] if cell.startswith("'") else cell
