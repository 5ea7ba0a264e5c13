"""Read an audience file (CSV or XLSX) as a header and numbered rows.

CSV: UTF-8 with or without BOM, UTF-16 or UTF-32 with a BOM (what Excel's "Unicode text" writes), UTF-16
without one when its NUL bytes show it, else Latin-1 with a warning; the delimiter (comma, semicolon or tab)
is the one the header line uses most; quoted fields may hold delimiters and newlines. Each row carries the
line number it starts on, so a report can point at it. Blank lines are not rows. XLSX: the first sheet, row
numbers as Excel shows them; a sheet longer than Excel's 1,048,576 rows (`XLSX_MAX_ROWS`) was not made by
a spreadsheet program and is refused at the first row past it.

Limits (`[imports]`, far above any clinic's export) stop a hostile file early, each with an
`AudienceFileError` that names the file, the line and the setting: more columns than `max_columns`, more rows
than `max_rows`, a cell longer than `max_cell_chars`; an XLSX whose sheets unpack to more than
`max_xlsx_uncompressed_bytes`, or more than `max_xlsx_compression_ratio` times their packed size (a zip
bomb), is refused before a single row is read.

Contract: `read_table(path, limits)` raises `AudienceFileError` for a missing, unreadable, empty, binary,
headerless or over-limit file; otherwise it returns the header and an iterator of `(line, cells)` with every
cell a string. The iterator itself raises `AudienceFileError` (with the line) when a limit is passed midway.
"""

from __future__ import annotations

import codecs
import csv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from needlecast.config import ImportSettings
from needlecast.errors import AudienceFileError

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
XLSX_SUFFIXES = {".xlsx", ".xlsm"}
# Excel's own row limit: a longer sheet is machine-made, and reading it to the end only costs time and memory.
XLSX_MAX_ROWS = 1_048_576
# Byte-order marks, longest first (UTF-32 LE's begins with UTF-16 LE's), and the codec that reads past each.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass
class Table:
    headers: list[str]
    rows: Iterator[tuple[int, list[str]]]
    estimated_rows: int
    warnings: list[str] = field(default_factory=list)


def _sniff_encoding(start: bytes) -> str | None:
    """The encoding a byte-order mark (or, without one, UTF-16's pattern of NUL bytes) declares, or None
    for a file to be read as UTF-8 (else Latin-1, see `_survey`)."""
    for bom, encoding in _BOMS:
        if start.startswith(bom):
            return encoding
    if b"\x00" not in start:
        return None
    even = start[: len(start) // 2 * 2]
    # Plain text in UTF-16 without a BOM: every other byte of its Latin letters, digits and commas is NUL.
    if len(even) >= 4 and not any(even[1::2]) and all(even[0::2]):
        return "utf-16-le"
    if len(even) >= 4 and not any(even[0::2]) and all(even[1::2]):
        return "utf-16-be"
    return None


def _survey(path: Path, declared: str | None, warnings: list[str]) -> tuple[str, int, bool]:
    """One streaming pass over the bytes: the encoding to read the file with (`declared` by its BOM, else
    UTF-8 or, failing that, Latin-1 with a warning), how many line breaks it has (an estimate in UTF-16/32),
    and whether it holds anything but space. A file that breaks its declared UTF-16/32 is an error."""
    encoding = declared or "utf-8-sig"
    decoder = codecs.getincrementaldecoder(encoding)()
    breaks = 0
    content = False
    offset = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            breaks += block.count(b"\n")
            if encoding != "latin-1":
                try:
                    text = decoder.decode(block)
                except UnicodeDecodeError as err:
                    encoding = _fallback(path, declared, offset + err.start, warnings)
                    text = block.decode("latin-1")
                content = content or bool(text.strip())
            else:
                content = content or bool(block.strip())
            offset += len(block)
    if encoding != "latin-1":
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            encoding = _fallback(path, declared, offset, warnings)
    return encoding, breaks, content


def _fallback(path: Path, declared: str | None, offset: int, warnings: list[str]) -> str:
    """Latin-1 for a file that is not valid UTF-8 (with a warning); an error for one that breaks the UTF-16
    or UTF-32 its BOM declares (Latin-1 would read it as NUL-riddled nonsense)."""
    if declared and declared != "utf-8-sig":
        name = declared[:6].upper()  # UTF-16 or UTF-32
        raise AudienceFileError(
            f"{path}: starts as {name} text but is not valid {name} (byte {offset:,}); open it in the "
            'spreadsheet program and save it as "CSV UTF-8"'
        )
    warnings.append(
        f"{path.name} is not valid UTF-8 (byte {offset}); read it as Latin-1. "
        "Check accented names, or save the file as UTF-8."
    )
    return "latin-1"


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _limited(
    path: Path, rows: Iterator[tuple[int, list[str]]], limits: ImportSettings
) -> Iterator[tuple[int, list[str]]]:
    for count, (line, cells) in enumerate(rows, start=1):
        if count > limits.max_rows:
            raise AudienceFileError(
                f"{path}: line {line}: more than {limits.max_rows:,} rows ([imports] max_rows); split the file, "
                "or raise the limit"
            )
        yield line, cells


def _csv_rows(path: Path, reader: Any, limits: ImportSettings, handle: IO[str]) -> Iterator[tuple[int, list[str]]]:
    with handle:
        yield from _csv_cells(path, reader, limits)


def _csv_cells(path: Path, reader: Any, limits: ImportSettings) -> Iterator[tuple[int, list[str]]]:
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if "field larger than field limit" in str(err):
                raise AudienceFileError(
                    f"{path}: line {start}: a cell is longer than {limits.max_cell_chars:,} characters "
                    "([imports] max_cell_chars); this is not a contact export"
                ) from None
            raise AudienceFileError(f"{path}: line {start}: not a readable CSV row ({err})") from None
        if cells and any(c.strip() for c in cells):
            yield start, cells
        start = reader.line_num + 1


def _read_csv(path: Path, limits: ImportSettings) -> Table:
    """The file is streamed, never held: one pass to check its encoding and count its lines, then the rows
    are read from the open file as the importer asks for them."""
    try:
        with path.open("rb") as raw:
            start = raw.read(8192)
    except FileNotFoundError as err:
        raise AudienceFileError(f"{path}: file not found") from err
    except OSError as err:
        raise AudienceFileError(f"{path}: cannot read the file ({err.strerror})") from err
    declared = _sniff_encoding(start)
    if declared is None and b"\x00" in start:
        raise AudienceFileError(
            f"{path}: this is a binary file, not a CSV table (export it as CSV or XLSX; a text file in an "
            'unusual encoding: save it as "CSV UTF-8")'
        )
    warnings: list[str] = []
    encoding, breaks, content = _survey(path, declared, warnings)
    if not content:
        raise AudienceFileError(f"{path}: the file is empty; expected a header row and one row per contact")
    handle: IO[str] = path.open(encoding=encoding, newline="")  # closed by `_csv_rows` (or here, on an error)
    try:
        first_line = ""
        for text_line in handle:
            if text_line.strip("\r\n"):
                first_line = text_line.rstrip("\r\n")
                break
        handle.seek(0)
        # The csv module's own per-cell limit (process-wide): the cheapest place to refuse a huge cell.
        csv.field_size_limit(limits.max_cell_chars)
        reader = csv.reader(handle, delimiter=_delimiter(first_line))
        try:
            headers = next(reader)
        except csv.Error as err:
            raise AudienceFileError(f"{path}: line 1: not a readable CSV header: {err}") from None
        _check_columns(path, headers, limits)
    except BaseException:
        handle.close()
        raise
    rows = _limited(path, _csv_rows(path, reader, limits, handle), limits)
    return Table([h.strip() for h in headers], rows, max(breaks - 1, 0), warnings)


def _check_columns(path: Path, headers: list[str], limits: ImportSettings) -> None:
    if len(headers) > limits.max_columns:
        raise AudienceFileError(
            f"{path}: line 1: {len(headers):,} columns, more than {limits.max_columns} ([imports] max_columns); "
            "export only the contact columns"
        )


def _check_xlsx_size(path: Path, limits: ImportSettings) -> None:
    """Refuse a workbook whose sheets would unpack to too much, before openpyxl reads any of it."""
    try:
        with zipfile.ZipFile(path) as archive:
            parts = [i for i in archive.infolist() if i.filename.startswith("xl/")]
    except (zipfile.BadZipFile, OSError) as err:
        raise AudienceFileError(f"{path}: not a readable XLSX workbook ({err})") from None
    unpacked = sum(i.file_size for i in parts)
    packed = max(1, sum(i.compress_size for i in parts))
    if unpacked > limits.max_xlsx_uncompressed_bytes:
        raise AudienceFileError(
            f"{path}: its sheets unpack to {unpacked / 1e6:,.0f} MB, more than "
            f"{limits.max_xlsx_uncompressed_bytes / 1e6:,.0f} MB ([imports] max_xlsx_uncompressed_bytes); "
            "export the contacts as CSV"
        )
    if unpacked / packed > limits.max_xlsx_compression_ratio:
        raise AudienceFileError(
            f"{path}: its sheets unpack to {unpacked / packed:,.0f} times their size, more than "
            f"{limits.max_xlsx_compression_ratio} ([imports] max_xlsx_compression_ratio): this is not an "
            "ordinary export; save it again from the spreadsheet program, or as CSV"
        )


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


def _read_xlsx(path: Path, limits: ImportSettings) -> Table:
    import openpyxl  # imported here: only XLSX imports pay for it

    _check_xlsx_size(path, limits)
    # A damaged workbook makes openpyxl raise from any of its parsers (zip, XML, styles, numbers...): every
    # such error, here and while the rows are read, is one AudienceFileError naming the file.
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        headers: list[str] | None = None
        header_row = 0
        for number, values in enumerate(rows, start=1):
            if any(v not in (None, "") for v in values):
                headers, header_row = [_cell(v).strip() for v in values], number
                break
        estimated = max((sheet.max_row or header_row) - header_row, 0)
    except FileNotFoundError as err:
        raise AudienceFileError(f"{path}: file not found") from err
    except Exception as err:
        raise AudienceFileError(f"{path}: not a readable XLSX workbook ({type(err).__name__})") from err
    if headers is None:
        raise AudienceFileError(f"{path}: the first sheet is empty; expected a header row and one row per contact")
    _check_columns(path, headers, limits)

    def body() -> Iterator[tuple[int, list[str]]]:
        number = header_row
        try:
            for number, values in enumerate(rows, start=header_row + 1):
                if number > XLSX_MAX_ROWS:
                    raise AudienceFileError(
                        f"{path}: row {number:,}: a spreadsheet has at most {XLSX_MAX_ROWS:,} rows, so this "
                        "workbook was not saved by a spreadsheet program; export the contacts as CSV"
                    )
                if len(values) > limits.max_columns:
                    values = values[: limits.max_columns + 1]  # the row is rejected for its width anyway
                cells = [_cell(v) for v in values]
                if any(len(c) > limits.max_cell_chars for c in cells):
                    raise AudienceFileError(
                        f"{path}: row {number}: a cell is longer than {limits.max_cell_chars:,} characters "
                        "([imports] max_cell_chars); this is not a contact export"
                    )
                if any(c.strip() for c in cells):
                    yield number, cells
        except AudienceFileError:
            raise
        except Exception as err:
            raise AudienceFileError(
                f"{path}: row {number + 1}: the workbook is damaged ({type(err).__name__})"
            ) from err
        finally:
            workbook.close()

    return Table(headers, _limited(path, body(), limits), estimated, [])


def read_table(path: Path, limits: ImportSettings | None = None) -> Table:
    """Header and rows of `path` (see the module contract)."""
    limits = limits or ImportSettings()
    suffix = path.suffix.lower()
    if not path.exists():
        raise AudienceFileError(f"{path}: file not found")
    if path.is_dir():
        raise AudienceFileError(f"{path}: is a folder; give the CSV or XLSX file")
    if suffix in XLSX_SUFFIXES:
        return _read_xlsx(path, limits)
    if suffix in CSV_SUFFIXES or not suffix:
        return _read_csv(path, limits)
    raise AudienceFileError(f"{path}: unsupported file type '{suffix}'; use .csv, .tsv or .xlsx")
