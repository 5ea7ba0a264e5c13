"""Benchmark: import an XLSX sheet of N rows that no clinic exports (every row rejected for one reason), as a
hostile or broken upload would be: how long until the import ends, and the importing process's peak RSS.

    python bench/import_xlsx.py --rows 1500000                        # generates the sheet (minutes)
    python bench/import_xlsx.py --rows 1500000 --sheet /tmp/big.xlsx  # makes it once, then reuses it

Prints one JSON line: rows in the sheet, seconds (wall and CPU), peak RSS, how the import ended (the counts,
or the one-line error) and the size of the rejects file left beside the sheet. The sheet is generated in a
child process, so that the peak RSS printed is the import's own.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write_sheet(path: Path, rows: int) -> None:
    """A workbook with a header and `rows` rows whose address is not one (the same reason every time)."""
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["Email", "First Name", "Marketing consent"])
    for i in range(rows):
        sheet.append([f"not-an-address-{i}", "Ana", "yes"])
    book.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--sheet", type=Path, default=None, help="where to keep the sheet (made if missing)")
    args = parser.parse_args()
    from needlecast.audience.importer import import_file
    from needlecast.content.vocabulary import load_vocabulary
    from needlecast.errors import AudienceFileError
    from needlecast.store.engine import open_store

    with tempfile.TemporaryDirectory() as tmp:
        sheet = args.sheet or Path(tmp) / "hostile.xlsx"
        if not sheet.exists():
            child = multiprocessing.get_context("spawn").Process(target=write_sheet, args=(sheet, args.rows))
            child.start()
            child.join()
        engine = open_store(f"sqlite:///{tmp}/bench.db")
        started = time.perf_counter()
        try:
            summary = import_file(engine, sheet, load_vocabulary(REPO / "content" / "vocabulary.yaml"))
            outcome = f"read {summary.read}, inserted {summary.inserted}, rejected {summary.rejected}"
        except AudienceFileError as err:
            outcome = str(err).replace(str(sheet), sheet.name)
        seconds = time.perf_counter() - started
        rejects = sheet.with_name(f"{sheet.stem}.rejects.csv")
        print(
            json.dumps(
                {
                    "benchmark": "import_xlsx",
                    "rows": args.rows,
                    "import_s": round(seconds, 1),
                    # CPU seconds of this process: the fairer figure on a machine shared with other work
                    "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                    "outcome": outcome,
                    "rejects_mb": round(rejects.stat().st_size / 1e6, 1) if rejects.exists() else 0,
                }
            )
        )
        rejects.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
