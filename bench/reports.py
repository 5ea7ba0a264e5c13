"""Benchmark: compare every campaign and their weekly trends over N deliveries and M provider events.

    python bench/reports.py --deliveries 1000000 --events 10000000            # SQLite in a temp folder
    python bench/reports.py --deliveries 1000000 --events 10000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/needlecast_test

Fills the store through its bulk path (`store.bulk.insert_columns`): N sent emails over 20 campaigns of two
steps, four concerns and three segments, sent over eight weeks; one delivered event per email but the 2 %
that bounce (a hard or a soft bounce) or are dropped, and the rest of the M events opens (some machine opens)
and clicks, with a few unsubscribes and spam reports; and a booking for one person in fifty (the database's
triggers sum each email's events up into `email_summaries` as they go in: migration 0020). Then, in a fresh
process (so that its peak RSS is its own), times what the console's Reports page and `needlecast report
--all` run: counting every email by group from its summary (`store.reports.email_groups`), attributing the
bookings, and the comparison with its totals, change on the previous period, weekly trends per concern and
per article and which content converts (`compare.compare`, with a four-week period). Prints one JSON line
with the seconds of each stage, the total, the campaigns and weeks found, the totals row's main figures
(to check that two versions count the same), and the measuring process's peak RSS (VmHWM). A kept store
(`--keep`) is first brought to the newest schema: `upgrade_s` is what that took (a migration that fills a
new table from the ten million events, say).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, event, text

from needlecast.reports import groups
from needlecast.reports.analysis import Analysis
from needlecast.reports.compare import COMPARE_COLUMNS, Catalogue
from needlecast.store import reports as sql
from needlecast.store.bulk import insert_columns
from needlecast.store.engine import make_engine, open_store, upgrade
from needlecast.store.schema import contact_events, deliveries, events

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.broadcast import peak_rss_mb  # noqa: E402
from bench.import_csv import fresh_postgres  # noqa: E402

START = datetime(2026, 9, 7, 8, 0, tzinfo=UTC)  # a Monday; eight weeks of sending from it
CAMPAIGNS, CONCERNS, SEGMENTS = 20, ("acne", "ageing", "pigmentation", "general"), ("all", "new", "lapsed")
CHUNK = 1_000_000


def _times(seconds: np.ndarray) -> list[datetime]:
    return pd.to_datetime(seconds, unit="s", utc=True).to_pydatetime().tolist()  # type: ignore[no-any-return]


def _ledger(conn: object, first: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Ledger rows `first`+1 .. `first`+size (their ids), sent; returns their sending moments (epoch s)."""
    ids = np.arange(first + 1, first + size + 1)
    campaign = ids % CAMPAIGNS
    sent = int(START.timestamp()) + (campaign * 8 * 7 * 86400) // CAMPAIGNS + rng.integers(0, 3 * 86400, size)
    moments = _times(sent)
    insert_columns(
        conn,  # type: ignore[arg-type]
        deliveries,
        {
            "id": ids.tolist(),
            "campaign_id": [f"campaign-{c:02d}" for c in campaign],
            "step_id": np.where(ids % 7 == 0, "reminder", "guide").tolist(),
            "contact_id": ids.tolist(),
            "segment": np.array(SEGMENTS)[ids % 3].tolist(),
            "variant": np.array(CONCERNS)[(ids // 3) % 4].tolist(),
            "arm": "",
            "status": "sent",
            "due_at": moments,
            "claimed_at": None,
            "claim_token": "",
            "sent_at": moments,
            "message_id": "",
            "error": "",
            "attempts": 1,
            "created_at": moments,
            "updated_at": moments,
            "outcome": "",
            "timing": "",
        },
        (),
    )
    return sent


def _kinds(size: int, rng: np.random.Generator) -> np.ndarray:
    """The kinds of the events beyond one fate per email: mostly opens and clicks."""
    roll = rng.random(size)
    return np.select(
        [roll < 0.7, roll < 0.97, roll < 0.99],
        ["opened", "clicked", "deferred"],
        default=np.where(rng.random(size) < 0.8, "unsubscribed", "complained"),
    )


def fill(url: str, count: int, event_count: int) -> None:
    """See the module docstring."""
    engine = open_store(url)
    rng = np.random.default_rng(7)
    sent = np.zeros(count, dtype="int64")
    with engine.begin() as conn:
        for first in range(0, count, CHUNK):
            sent[first : first + CHUNK] = _ledger(conn, first, min(CHUNK, count - first), rng)
    written = 0
    with engine.begin() as conn:
        while written < event_count:
            fate = written < count  # the first N events: each email's fate
            size = min(CHUNK, (count if fate else event_count) - written)
            target = np.arange(written, written + size) if fate else rng.integers(0, count, size)
            roll = rng.random(size)
            kinds = (
                np.select([roll < 0.01, roll < 0.015, roll < 0.02], ["bounced", "blocked", "dropped"], "delivered")
                if fate
                else _kinds(size, rng)
            )
            moments = sent[target] + rng.integers(5, 6 * 86400, size)
            insert_columns(
                conn,
                events,
                {
                    "provider_event_id": [f"e{written + i}" for i in range(size)],
                    "kind": kinds.tolist(),
                    "delivery_id": (target + 1).tolist(),
                    "campaign_id": [f"campaign-{c:02d}" for c in (target + 1) % CAMPAIGNS],
                    "step_id": "guide",
                    "message_id": "",
                    "email_hash": "",
                    "occurred_at": _times(moments),
                    "received_at": START,
                    "detail": np.where((kinds == "opened") & (rng.random(size) < 0.3), "machine", "").tolist(),
                    "raw": {},
                },
                (),
            )
            written += size
        booked = np.arange(0, count, 50)
        insert_columns(
            conn,
            contact_events,
            {
                "source_id": [f"b{i}" for i in booked],
                "email_hash": [f"h{i}" for i in booked],
                "contact_id": (booked + 1).tolist(),
                "type": "booked",
                "occurred_at": _times(sent[booked] + 2 * 86400),
                "value": 60,
                "currency": "GBP",
                "source": "bench",
                "received_at": START,
                "treatment": "",
                "appointment_at": None,
            },
            (),
        )
    engine.dispose()


CATALOGUE = Catalogue(
    campaigns={f"campaign-{c:02d}": (f"Campaign {c}", "broadcast") for c in range(CAMPAIGNS)},
    articles={(f"campaign-{c:02d}", s): f"article-{c % 5}" for c in range(CAMPAIGNS) for s in ("guide", "reminder")},
)
PERIOD = {"start": date(2026, 10, 5), "end": date(2026, 11, 1)}  # four weeks, against the four before
# The comparison's counts (its columns between the campaign's name and kind and the rates), whose totals row is
# printed so that two runs' figures can be compared.
TOTALS = tuple(c for c in COMPARE_COLUMNS[3:] if not c.endswith("_rate"))


@dataclass
class BenchAnalysis(Analysis):
    """The notebook's `Analysis` with the benchmark's campaign catalogue (no workspace holds its campaigns)."""

    def catalogue(self) -> Catalogue:
        return CATALOGUE


def _timed(stages: dict[str, float], name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            stages[name] = round(stages.get(name, 0.0) + time.perf_counter() - started, 2)

    return run


def measure(url: str, what: str) -> dict[str, object]:
    """`what` ("compare" or "trends") as the notebook and the console's Reports page ask for it, timed, with
    its stages: `count_s` the SQL that settles and counts every email by group and day, `credit_s` the
    attribution of the bookings, the rest annotating and tabling the groups; the CPU seconds of this process
    (`cpu_s`, with SQLite's, which runs in it), of the PostgreSQL backends that served it (`server_cpu_s`) and
    of their parallel workers (`workers_cpu_s`)."""
    engine = open_store(url)
    backends: set[int] = set()  # the PostgreSQL server processes that served this one: their CPU is the query's
    if not url.startswith("sqlite"):
        event.listen(engine, "checkout", lambda connection, *_: backends.add(connection.info.backend_pid))
    stages: dict[str, float] = {}
    sql.count_groups = _timed(stages, "count_s", sql.count_groups)  # type: ignore[method-assign]
    groups.credited_groups = _timed(stages, "credit_s", groups.credited_groups)  # type: ignore[method-assign]
    clinic = BenchAnalysis(engine, time_zone="Europe/London")
    server_before = sum(process_cpu(pid) for pid in backends)
    workers = ParallelWorkers(backends)
    if not url.startswith("sqlite"):
        workers.start()
    started, cpu = time.perf_counter(), time.process_time()
    if what == "compare":
        table = clinic.compare(**PERIOD)
        totals = table.iloc[-1]
        found = {"campaigns": len(table) - 1, "totals": {f: int(totals[f]) for f in TOTALS}}
    else:
        data = clinic.comparison(**PERIOD)  # both trend tables, per concern and per article, from one reading
        table = pd.concat([data.trend_concern, data.trend_article])
        found = {"weeks": int(table["week"].nunique())}
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    server_cpu = sum(process_cpu(pid) for pid in backends) - server_before  # before the connections close
    if not url.startswith("sqlite"):
        workers.stop()
    engine.dispose()
    return {
        "what": what,
        "wall_s": round(wall, 2),
        **stages,
        **found,
        "rows": len(table),
        "cpu_s": round(cpu, 2),
        "server_cpu_s": round(server_cpu, 2),
        "workers_cpu_s": round(workers.cpu(), 2),
        "peak_rss_mb": peak_rss_mb(),
    }


def _watch_workers(done: Any, found: Any) -> None:
    """In its own process (so that polling costs the measured process nothing): every 20 ms, the CPU seconds of
    each PostgreSQL parallel worker (`postgres: [cluster: ]parallel worker for PID <leader>`) so far; at the
    end, {worker: (leader, CPU seconds)} on `found`."""
    seen: dict[int, tuple[int, float]] = {}
    while not done.wait(0.02):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            _, marked, rest = title.partition("parallel worker for PID ")
            leader = rest.split("\0")[0].strip()
            if marked and leader.isdigit():
                pid = int(entry.name)
                seen[pid] = (int(leader), max(seen.get(pid, (0, 0.0))[1], process_cpu(pid)))
    found.put(seen)


class ParallelWorkers:
    """The CPU seconds of PostgreSQL's parallel workers for `backends` (processes that live for one statement),
    watched from another process; what a worker spent in its last 20 ms may be missed (a lower bound)."""

    def __init__(self, backends: set[int]) -> None:
        self.backends, self.done, self.found = backends, multiprocessing.Event(), multiprocessing.Queue()
        self.process = multiprocessing.Process(target=_watch_workers, args=(self.done, self.found), daemon=True)
        self.seen: dict[int, tuple[int, float]] = {}

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.done.set()
        self.seen = self.found.get()
        self.process.join()

    def cpu(self) -> float:
        return sum(cpu for leader, cpu in self.seen.values() if leader in self.backends)


def process_cpu(pid: int) -> float:
    """A process's CPU seconds so far (user and system), from /proc (Linux); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kept_store(database_url: str, folder: Path, count: int, event_count: int) -> tuple[str, bool]:
    """The URL of a store kept between runs for these sizes (a PostgreSQL schema, or a SQLite file in
    `folder`) and whether it is already filled; a store left half-filled by an interrupted run is made anew."""
    name = f"needlecast_bench_reports_{count}_{event_count}"
    if database_url:
        admin = create_engine(database_url)
        with admin.begin() as conn:
            filled = bool(
                conn.execute(
                    text(
                        "SELECT 1 FROM information_schema.tables"
                        " WHERE table_schema = :s AND table_name = 'bench_filled'"
                    ),
                    {"s": name},
                ).first()
            )
            if not filled:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
                conn.execute(text(f"CREATE SCHEMA {name}"))
        admin.dispose()
        return database_url + ("&" if "?" in database_url else "?") + f"options=-csearch_path%3D{name}", filled
    folder.mkdir(parents=True, exist_ok=True)
    path, done = folder / f"{name}.db", folder / f"{name}.filled"
    if not done.exists():
        path.unlink(missing_ok=True)
    return f"sqlite:///{path}", done.exists()


def mark_filled(url: str, folder: Path, count: int, event_count: int) -> None:
    if url.startswith("sqlite"):
        (folder / f"needlecast_bench_reports_{count}_{event_count}.filled").touch()
        return
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_filled (at timestamptz NOT NULL DEFAULT now())"))
    engine.dispose()


def up_to_date(url: str) -> None:
    """Bring a kept store to the newest schema (a migration added since it was filled, an index say)."""
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()


def settled(url: str) -> None:
    """Vacuum and analyse the filled store, as autovacuum does a table that was written to and then left:
    PostgreSQL's index-only scans need the visibility map it sets, and both planners need the statistics."""
    engine = make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE" if url.startswith("sqlite") else "VACUUM ANALYZE")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary folder")
    parser.add_argument(
        "--keep",
        default="",
        metavar="FOLDER",
        help="keep the generated store and reuse it on the next run with the same sizes: a schema of the "
        "PostgreSQL database, or a SQLite file in FOLDER",
    )
    parser.add_argument("--measure", default="", help=argparse.SUPPRESS)  # the child: measure this store
    parser.add_argument("--what", default="compare", help=argparse.SUPPRESS)  # the child: compare or trends
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.what)))
        return
    event_count = max(args.events, args.deliveries)
    with tempfile.TemporaryDirectory() as tmp:
        filled_already = False
        if args.keep:
            url, filled_already = kept_store(args.database_url, Path(args.keep), args.deliveries, event_count)
        else:
            url = fresh_postgres(args.database_url) if args.database_url else f"sqlite:///{tmp}/bench.db"
        started = time.perf_counter()
        upgraded = 0.0
        if filled_already:
            up_to_date(url)
            upgraded = time.perf_counter() - started
        else:
            fill(url, args.deliveries, event_count)
            if args.keep:
                mark_filled(url, Path(args.keep), args.deliveries, event_count)
        settled(url)
        filled = time.perf_counter() - started
        load = os.getloadavg()
        measured = {
            what: json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--measure", url, "--what", what],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            for what in ("compare", "trends")
        }
        print(
            json.dumps(
                {
                    "benchmark": "reports",
                    "database": url.split(":", 1)[0],
                    "deliveries": args.deliveries,
                    "events": event_count,
                    "fill_s": round(filled, 1),
                    "upgrade_s": round(upgraded, 1),
                    "reused_store": filled_already,
                    "load_before": [round(x, 2) for x in load],
                    "load_after": [round(x, 2) for x in os.getloadavg()],
                    **measured,
                }
            )
        )


if __name__ == "__main__":
    main()
