"""An import's rejected rows, written to `FILE.rejects.csv` beside the input as they are found.

Contract: `Rejects(source, headers)` collects rejected rows; `add(line, reason, cells)` takes them in line
order and writes them at once to a part file (so a file of a million bad rows never sits in memory);
`add_late(line, reason)` takes a reject found after later lines were read (an erased address, known only
when its part of the file is written), kept in memory (they carry no cells, and are few). `finish()` moves
the part file into place, merging the late ones in by line, and returns the path (None when nothing was
rejected; an old rejects file of the same input is removed); `discard()` removes the part file (a failed
import). Every cell is written through `needlecast.spreadsheet.neutralise`, so a spreadsheet never runs a
formula from it: the original is the cell without its first `'`.
"""

from __future__ import annotations

import csv
import heapq
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from needlecast.spreadsheet import neutralise


class Rejects:
    def __init__(self, source: Path, headers: list[str]) -> None:
        self.target = source.with_name(f"{source.stem}.rejects.csv")
        self._part = self.target.with_name(f".{self.target.name}.part")
        self._headers = headers
        self._handle: IO[str] | None = None
        self._writer: Any = None
        self._late: list[tuple[int, str]] = []
        self.count = 0

    def add(self, line: int, reason: str, cells: list[str]) -> None:
        if self._writer is None:
            self._handle = self._part.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._handle)
            self._writer.writerow(["line", "reason", *map(neutralise, self._headers)])
        self._writer.writerow([line, neutralise(reason), *map(neutralise, cells)])
        self.count += 1

    def add_late(self, line: int, reason: str) -> None:
        self._late.append((line, reason))
        self.count += 1

    def finish(self) -> Path | None:
        if self._handle is not None:
            self._handle.close()
        if not self.count:
            self.target.unlink(missing_ok=True)
            return None
        if not self._late:
            os.replace(self._part, self.target)
            return self.target
        self._late.sort()
        with self.target.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "reason", *map(neutralise, self._headers)])
            late: list[list[Any]] = [[line, neutralise(reason)] for line, reason in self._late]
            writer.writerows(heapq.merge(self._written(), late, key=_line))
        self._part.unlink(missing_ok=True)
        return self.target

    def _written(self) -> Iterator[list[Any]]:
        """The rows `add` wrote (the part file without its header), in their order."""
        if self._handle is None:
            return
        with self._part.open(encoding="utf-8", newline="") as handle:
            rows = csv.reader(handle)
            next(rows, None)
            yield from rows

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._part.unlink(missing_ok=True)


def _line(row: Any) -> int:
    return int(row[0])


def write_rejects(source: Path, headers: list[str], rejects: list[tuple[int, str, list[str]]]) -> Path | None:
    """Write `rejects` (line, reason, cells; in any order) as `source`'s rejects file; its path, or None."""
    collected = Rejects(source, headers)
    for line, reason, cells in sorted(rejects, key=lambda reject: reject[0]):
        collected.add(line, reason, cells)
    return collected.finish()
