"""Read an audience file (CSV or XLSX) as a header and numbered rows.

CSV: UTF-8 with or without BOM, else Latin-1 with a warning; the delimiter (comma, semicolon or tab) is the
one the header line uses most; quoted fields may hold delimiters and newlines. Each row carries the line
number it starts on, so a report can point at it. Blank lines are not rows. XLSX: the first sheet, row
numbers as Excel shows them.

Contract: `read_table(path)` raises `AudienceFileError` for a missing, unreadable, empty, binary or
headerless file; otherwise it returns the header and an iterator of `(line, cells)` with every cell a string.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from needlecast.errors import AudienceFileError

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
XLSX_SUFFIXES = {".xlsx", ".xlsm"}


@dataclass
class Table:
    headers: list[str]
    rows: Iterator[tuple[int, list[str]]]
    estimated_rows: int
    warnings: list[str] = field(default_factory=list)


def _decode(path: Path, data: bytes, warnings: list[str]) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        warnings.append(
            f"{path.name} is not valid UTF-8 (byte {err.start}); read it as Latin-1. "
            "Check accented names, or save the file as UTF-8."
        )
        return data.decode("latin-1")


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_rows(reader: csv.Reader) -> Iterator[tuple[int, list[str]]]:
    start = reader.line_num + 1
    for cells in reader:
        if cells and any(c.strip() for c in cells):
            yield start, cells
        start = reader.line_num + 1


def _read_csv(path: Path) -> Table:
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise AudienceFileError(f"{path}: file not found") from err
    except OSError as err:
        raise AudienceFileError(f"{path}: cannot read the file ({err.strerror})") from err
    if b"\x00" in data[:8192]:
        raise AudienceFileError(f"{path}: this is a binary file, not a CSV table (export it as CSV or XLSX)")
    warnings: list[str] = []
    text = _decode(path, data, warnings)
    if not text.strip():
        raise AudienceFileError(f"{path}: the file is empty; expected a header row and one row per contact")
    first_line = text.lstrip("\r\n").split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line))
    try:
        headers = next(reader)
    except csv.Error as err:
        raise AudienceFileError(f"{path}: not a readable CSV table: {err}") from err
    estimated = max(text.count("\n") - 1, 0)
    return Table([h.strip() for h in headers], _csv_rows(reader), estimated, warnings)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_xlsx(path: Path) -> Table:
    import openpyxl  # imported here: only XLSX imports pay for it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError as err:
        raise AudienceFileError(f"{path}: file not found") from err
    except (InvalidFileException, OSError, KeyError, ValueError) as err:
        raise AudienceFileError(f"{path}: not a readable XLSX workbook ({err})") from err
    sheet = workbook.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    headers: list[str] | None = None
    header_row = 0
    for number, values in enumerate(rows, start=1):
        if any(v not in (None, "") for v in values):
            headers, header_row = [_cell(v).strip() for v in values], number
            break
    if headers is None:
        raise AudienceFileError(f"{path}: the first sheet is empty; expected a header row and one row per contact")

    def body() -> Iterator[tuple[int, list[str]]]:
        for number, values in enumerate(rows, start=header_row + 1):
            cells = [_cell(v) for v in values]
            if any(c.strip() for c in cells):
                yield number, cells
        workbook.close()

    return Table(headers, body(), max((sheet.max_row or header_row) - header_row, 0), [])


def read_table(path: Path) -> Table:
    """Header and rows of `path` (see the module contract)."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise AudienceFileError(f"{path}: file not found")
    if path.is_dir():
        raise AudienceFileError(f"{path}: is a folder; give the CSV or XLSX file")
    if suffix in XLSX_SUFFIXES:
        return _read_xlsx(path)
    if suffix in CSV_SUFFIXES or not suffix:
        return _read_csv(path)
    raise AudienceFileError(f"{path}: unsupported file type '{suffix}'; use .csv, .tsv or .xlsx")
