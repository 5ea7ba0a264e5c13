"""Benchmark: import an N-row synthetic CSV (with the sample's mess) into a fresh store.

    python bench/import_csv.py --rows 1000000                      # SQLite in a temp folder
    python bench/import_csv.py --rows 1000000 --database-url postgresql+psycopg://postgres@127.0.0.1/needlecast_bench

Prints one JSON line: rows, seconds for generation and import, rows per second, the reconciled counts, and
the peak RSS of the importing process (the CSV is generated in a child process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from needlecast.audience.importer import import_file
from needlecast.content.vocabulary import load_vocabulary
from needlecast.devtools.synth import write_audience_csv
from needlecast.store.engine import open_store

REPO = Path(__file__).resolve().parent.parent


def fresh_postgres(url: str) -> str:
    """Recreate a private schema for the run and return a URL that uses it."""
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS needlecast_bench CASCADE"))
        conn.execute(text("CREATE SCHEMA needlecast_bench"))
    admin.dispose()
    return url + ("&" if "?" in url else "?") + "options=-csearch_path%3Dneedlecast_bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        # Generated in a child process, so that the peak RSS printed is the import's own.
        source = Path(tmp) / "audience.csv"
        child = multiprocessing.get_context("spawn").Process(target=write_audience_csv, args=(source, args.rows, 5))
        child.start()
        child.join()
        generated = time.perf_counter() - started
        url = fresh_postgres(args.database_url) if args.database_url else f"sqlite:///{tmp}/bench.db"
        engine = open_store(url)
        started = time.perf_counter()
        summary = import_file(engine, source, load_vocabulary(REPO / "content" / "vocabulary.yaml"))
        seconds = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "benchmark": "import_csv",
                    "database": engine.dialect.name,
                    "rows": summary.read,
                    "generate_s": round(generated, 2),
                    "import_s": round(seconds, 2),
                    "rows_per_s": round(summary.read / seconds),
                    "inserted": summary.inserted,
                    "duplicates": summary.duplicates,
                    "rejected": summary.rejected,
                    "reconciles": summary.reconciles,
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                }
            )
        )


if __name__ == "__main__":
    main()
