"""Benchmark: a broadcast planned by the scheduler's runner and sent by N `needlecast worker` processes.

    python -m bench.workers --recipients 1000000 --workers 1 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/needlecast_test
    python -m bench.workers --recipients 1000000 --workers 2 --database-url ...

A deterministic audience (the one `bench/broadcast.py` uses) is imported; N workers are started and wait;
the due broadcast job runs in this process as the scheduler runs it (`Runner(defer_to_workers=True)`: it
segments, plans and enqueues, and leaves the sending to the workers); the clock stops when the ledger has
every row sent (the sink's counter is polled until it has everyone, then the ledger). The SendGrid sink
runs in its own process (real HTTP). Prints one JSON line: seconds (plan, end to end), recipients per
second, and the CPU seconds and microseconds per recipient of the workers, the planner, the sink and the
PostgreSQL server (its processes on this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BENCH_SENDER_PROCESSES", "1")  # the workers send; no helper processes

from bench.broadcast import (
    cpu_seconds,
    postgres_cpu_seconds,
    setup_workspace,
    sink_stats,
    start_sink,
    write_audience,
)
from bench.import_csv import fresh_postgres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight per worker")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary folder")
    parser.add_argument("--port", type=int, default=8126)
    args = parser.parse_args()

    from needlecast.audience.importer import import_file
    from needlecast.campaign.send.runner import Runner
    from needlecast.config import open_workspace
    from needlecast.content.loader import load_vocabulary_for
    from needlecast.delivery import backend_factory
    from needlecast.store import fleet
    from needlecast.store.engine import open_store
    from needlecast.store.helpers import utcnow

    with tempfile.TemporaryDirectory() as tmp:
        url = fresh_postgres(args.database_url) if args.database_url else f"sqlite:///{tmp}/bench.db"
        env = setup_workspace(Path(tmp) / "ws", url, args.port)
        workspace = open_workspace(Path(env["NEEDLECAST_WORKSPACE"]))
        engine = open_store(url)
        write_audience(Path(tmp) / "audience.csv", args.recipients)
        import_file(engine, Path(tmp) / "audience.csv", load_vocabulary_for(workspace))
        sink = start_sink(args.port)
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "needlecast.cli", "worker", "--concurrency", str(args.concurrency)],
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(args.workers)
        ]
        try:
            while True:
                with engine.connect() as conn:
                    if len(fleet.live(conn, fleet.cutoff(conn, 30), kind="worker")) == args.workers:
                        break
                time.sleep(0.1)
            worker_cpu = sum(cpu_seconds(w.pid) for w in workers)
            sink_cpu, pg_cpu = cpu_seconds(sink.pid), postgres_cpu_seconds() if args.database_url else 0.0
            own = os.times()
            started = time.perf_counter()
            report = Runner(workspace, engine, backend_factory(workspace), defer_to_workers=True).run_broadcast(
                "bench", send_now=True
            )
            planned = time.perf_counter() - started
            own_after = os.times()
            # The sink's counter is cheap to poll; the ledger (a scan) is read once the sink has everyone.
            while sink_stats(args.port)["accepted_recipients"] < report.enqueued:
                time.sleep(0.1)
            while True:
                with engine.connect() as conn:
                    sent = conn.exec_driver_sql("SELECT count(*) FROM deliveries WHERE status = 'sent'").scalar_one()
                if sent >= report.enqueued:
                    break
                time.sleep(0.5)
            end_to_end = time.perf_counter() - started
            worker_cpu = sum(cpu_seconds(w.pid) for w in workers) - worker_cpu
            sink_cpu = cpu_seconds(sink.pid) - sink_cpu
            pg_cpu = (postgres_cpu_seconds() - pg_cpu) if args.database_url else 0.0
            planner_cpu = (own_after.user + own_after.system) - (own.user + own.system)
            stats = sink_stats(args.port)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(120)
            sink.terminate()
            sink.wait(10)
        n = report.enqueued

        def per(seconds: float) -> float:
            return round(seconds / n * 1e6, 1)

        print(
            json.dumps(
                {
                    "benchmark": "workers",
                    "database": engine.dialect.name,
                    "recipients": n,
                    "workers": args.workers,
                    "concurrency": args.concurrency,
                    "plan_s": round(planned, 2),
                    "end_to_end_s": round(end_to_end, 2),
                    "recipients_per_s": round(n / end_to_end),
                    "cpu_s": {
                        "workers": round(worker_cpu, 1),
                        "planner": round(planner_cpu, 1),
                        "sink": round(sink_cpu, 1),
                        "postgres": round(pg_cpu, 1),
                    },
                    "cpu_us_per_recipient": {
                        "workers": per(worker_cpu),
                        "planner": per(planner_cpu),
                        "sink": per(sink_cpu),
                        "postgres": per(pg_cpu),
                    },
                    "sink_accepted_recipients": stats.get("accepted_recipients"),
                    "at": utcnow().isoformat(timespec="seconds"),
                }
            )
        )


if __name__ == "__main__":
    main()
