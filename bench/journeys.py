"""Benchmark: one journey sweep over N people with positions, a share of them due (issue 30).

    python -m bench.journeys --people 1000000                    # SQLite
    python -m bench.journeys --people 1000000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/needlecast_bench

A deterministic audience (every contact consenting; acne, ageing, melasma and general concerns) is imported,
and every contact is given a position at the journey's first node, a wait (one `INSERT ... SELECT` from the
contacts): `--due` of them (30 % by default, every contact whose id ends in 0, 1 or 2 of ten) are due now,
the others tomorrow. None of that is measured. Then a child process (so that its peak RSS is its own) runs
one real sweep (`sweep_all`, as the scheduler's journeys job does): the segment is evaluated, nobody new
enters (everyone holds an active position), the early leaves and then the rounds run; the due people go
through the wait, the branch (on their concern: acne or general) and a send, whose emails are planned and
enqueued in the ledger; then they exit (each round takes its people all the way, as nothing on the way
waits). The clock stops when the sweep returns, every email enqueued and committed.

Prints one JSON line: the sweep's seconds, its CPU seconds, the child's peak RSS (VmHWM), what the sweep
reported, the ledger's queued rows, the CPU seconds of the PostgreSQL server processes serving the sweep
(`server_cpu_s`, from /proc: the server runs on this machine), and the machine's load average before and
after (`/proc/loadavg`: the machine is shared). `--profile FILE` writes the sweep's cProfile statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday, noon in London: no quiet hours apply
JOURNEY = """
id: bench
kind: journey
segment: all-leads
time_zone: Europe/London
signoff: {reviewer: bench, date: 2026-11-24, note: benchmark content}
steps:
  - {id: pause, kind: wait, delay: 1d}
  - id: route
    kind: branch
    paths:
      - {when: [{concern: acne}], next: acne}
    default: general
  - {id: acne, template: emails/deep_dive, next: done}
  - {id: general, template: emails/welcome}
  - {id: done, kind: exit}
"""


def write_audience(path: Path, n: int) -> None:
    concerns = ["acne", "ageing", "melasma", ""]
    with path.open("w", encoding="utf-8") as handle:
        handle.write("Email,First Name,Concern,Marketing consent,Concern consent\n")
        for i in range(n):
            handle.write(f"person{i}@example{i % 7}.com,P{i},{concerns[i % 4]},yes,yes\n")


def setup_workspace(root: Path, database_url: str) -> None:
    from needlecast.scaffold import init_workspace

    init_workspace(root)
    (root / "needlecast.toml").write_text((REPO / "needlecast.toml").read_text())
    for path in (root / "campaigns").glob("*.yaml"):
        path.unlink()
    (root / "campaigns" / "bench.yaml").write_text(JOURNEY)
    os.environ.update(
        {
            "NEEDLECAST_DATABASE_URL": database_url,
            "NEEDLECAST_SECRET": "b" * 40,
            "NEEDLECAST_QUIET_HOURS": "off",
            "NEEDLECAST_WORKSPACE": str(root),
        }
    )


def place_everyone(database_url: str, due_tenths: int) -> int:
    """A position at `pause` for every contact (one INSERT ... SELECT); those whose id ends in 0..due_tenths-1
    of ten are due at NOW, the others a day later. Returns how many positions there are."""
    from sqlalchemy import DateTime, case, func, insert, literal, select

    from needlecast.store.engine import open_store
    from needlecast.store.schema import contacts, journey_positions

    def moment(value: datetime) -> object:
        return literal(value.replace(tzinfo=None), DateTime())

    since = NOW - timedelta(days=1)
    engine = open_store(database_url)
    query = select(
        literal("bench"),
        contacts.c.id,
        literal(1),
        literal("pause"),
        literal("active"),
        moment(since),
        case((contacts.c.id % 10 < due_tenths, moment(NOW)), else_=moment(NOW + timedelta(days=1))),
        moment(since),
        literal(""),
    )
    columns = ["campaign_id", "contact_id", "entry", "node", "state", "since", "due_at", "entered_at", "reason"]
    with engine.begin() as conn:
        conn.execute(insert(journey_positions).from_select(columns, query))
        count = int(conn.execute(select(func.count()).select_from(journey_positions)).scalar_one())
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return count


def peak_rss_mb() -> int:
    """This process's peak resident set (VmHWM, Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def server_cpu(engine: Any) -> dict[int, float]:
    """PostgreSQL on this machine: the CPU seconds so far of each server process serving this database (the
    bench's own database: nobody else's), read from /proc; empty on SQLite or when they cannot be read."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        pids = [
            int(r[0])
            for r in conn.exec_driver_sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ]
    found = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def sweep_phase(root: str, profile: str) -> None:
    """The child process: one sweep of every live journey at NOW, timed; prints JSON."""
    from sqlalchemy import func, select

    from needlecast.campaign.context import CampaignContext
    from needlecast.campaign.journeys.sweeper import sweep_all
    from needlecast.config import open_workspace
    from needlecast.pacing import collect_seldom
    from needlecast.store.engine import open_store
    from needlecast.store.schema import deliveries

    workspace = open_workspace(Path(root))
    engine = open_store(workspace.database_url)
    ctx = CampaignContext.load(workspace)
    assert not ctx.problems, ctx.problems
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    server_before = server_cpu(engine)
    cpu = time.process_time()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    with collect_seldom():  # as the scheduler's jobs run
        reports = sweep_all(engine, ctx, NOW)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    server_after = server_cpu(engine)  # the sweep's connections are still in the pool
    server = sum(v - server_before.get(pid, 0.0) for pid, v in server_after.items())
    with engine.connect() as conn:
        queued = conn.execute(select(func.count()).select_from(deliveries)).scalar_one()
    report = reports[0]
    print(
        json.dumps(
            {
                "sweep_s": round(seconds, 2),
                "sweep_cpu_s": round(cpu, 2),
                "peak_rss_mb": peak_rss_mb(),
                "server_cpu_s": round(server, 2) if server_after else None,
                "entered": report.entered,
                "moved": report.moved,
                "enqueued": report.enqueued,
                "left": dict(report.left),
                "deferred": dict(report.deferred),
                "rounds": report.rounds,
                "blocked": report.blocked,
                "ledger_rows": int(queued),
            }
        )
    )


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=30, help="percent due now, a multiple of 10")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary folder")
    parser.add_argument("--profile", default="", help="write the sweep's cProfile statistics to this file")
    parser.add_argument("--sweep-phase", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_phase:
        sweep_phase(args.sweep_phase, args.profile)
        return
    from needlecast.audience.importer import import_file
    from needlecast.config import open_workspace
    from needlecast.content.loader import load_vocabulary_for
    from needlecast.store.engine import open_store

    result: dict[str, object] = {"benchmark": "journeys", "people": args.people, "due_percent": args.due}
    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url:
            from bench.import_csv import fresh_postgres

            url = fresh_postgres(args.database_url)
        else:
            url = f"sqlite:///{tmp}/bench.db"
        root = Path(tmp) / "ws"
        setup_workspace(root, url)
        workspace = open_workspace(root)
        engine = open_store(url)
        result["database"] = engine.dialect.name
        started = time.perf_counter()
        write_audience(Path(tmp) / "audience.csv", args.people)
        summary = import_file(engine, Path(tmp) / "audience.csv", load_vocabulary_for(workspace))
        assert summary.inserted == args.people, summary
        engine.dispose()
        result["positions"] = place_everyone(url, args.due // 10)
        result["generate_s"] = round(time.perf_counter() - started, 1)
        result["load_before"] = load()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = [sys.executable, "-m", "bench.journeys", "--sweep-phase", str(root), "--profile", args.profile]
        child = subprocess.run(command, capture_output=True, text=True, env=os.environ, cwd=REPO)
        if child.returncode != 0:
            raise SystemExit(child.stderr[-4000:])
        result.update(json.loads(child.stdout.strip().splitlines()[-1]))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        result["child_cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1)
        result["load_after"] = load()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
