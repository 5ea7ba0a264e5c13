"""Benchmark: a broadcast to N recipients end to end, against the naive per-recipient loop.

    python bench/broadcast.py --recipients 1000000                        # SQLite
    python bench/broadcast.py --recipients 1000000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/needlecast_test

A deterministic synthetic audience (every contact consenting, four concern variants) goes through the real
stages: CSV generation, import, then the due job, timed from outside (`devtools.timed`): plan (segment,
plan and enqueue; within it enqueue, the inserts) and dispatch (within it claim, mark, and turn, the time
spent waiting to write; body, building request bodies), sending to the loopback SendGrid sink (a separate
process, real HTTP, validating and counting what it accepts). "end to end" is the due job: from planning to
every row marked. The sending runs in a child process so that its peak RSS (VmHWM) is
its own; the helper sender processes' peak is sampled while they run.
The naive baseline, in the same run: for a sample (5,000), render the template per recipient and call the
sendgrid client once per recipient against the same sink. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
API_KEY = "SG.bench"
SENDER_PROCESSES = int(os.environ.get("BENCH_SENDER_PROCESSES", "2"))


def write_audience(path: Path, n: int) -> None:
    concerns = ["acne", "ageing", "melasma", ""]
    zones = ["Europe/London", "Europe/London", "America/New_York", "Australia/Sydney"]
    with path.open("w", encoding="utf-8") as handle:
        handle.write("Email,First Name,Concern,Time zone,Marketing consent,Health data consent\n")
        for i in range(n):
            handle.write(f"person{i}@example{i % 7}.com,P{i},{concerns[i % 4]},{zones[i % 4]},yes,yes\n")


def start_sink(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "needlecast.devtools.sendgrid_sink", "--port", str(port), "--api-key", API_KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/_sink/stats", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the sink did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU the local PostgreSQL server has used so far: its processes', plus the backends that have exited
    (counted in the postmaster's children's time). It shares the machine's two cores with the job."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text[text.find("(") + 1 : text.rfind(")")] == "postgres":
            fields = text.rsplit(")", 1)[1].split()
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def sink_stats(port: int) -> dict[str, int]:
    return httpx.get(f"http://127.0.0.1:{port}/_sink/stats", timeout=10).json()


def setup_workspace(root: Path, database_url: str, port: int) -> dict[str, str]:
    from needlecast.scaffold import init_workspace

    init_workspace(root)
    config = (
        (REPO / "needlecast.toml")
        .read_text()
        .replace("requests_per_second = 10", f"requests_per_second = 0\nsender_processes = {SENDER_PROCESSES}")
    )
    (root / "needlecast.toml").write_text(config)
    for path in (root / "campaigns").glob("*.yaml"):
        path.unlink()
    (root / "campaigns" / "bench.yaml").write_text("""
id: bench
kind: broadcast
segment: all-leads
time_zone: Europe/London
steps: [{id: guide, template: emails/broadcast}]
schedule: {send_at: "2026-01-01 09:00"}
signoff: {reviewer: bench, date: 2026-11-24, note: benchmark content}
""")
    env = {
        "NEEDLECAST_DATABASE_URL": database_url,
        "NEEDLECAST_BACKEND": "sendgrid",
        "SENDGRID_API_KEY": API_KEY,
        "NEEDLECAST_SECRET": "b" * 40,
        "NEEDLECAST_QUIET_HOURS": "off",
        "NEEDLECAST_SENDGRID_HOST": f"http://127.0.0.1:{port}",
        "NEEDLECAST_WORKSPACE": str(root),
    }
    os.environ.update(env)
    return env


def peak_rss_mb(pid: int | str = "self") -> int:
    """A process's peak resident set (VmHWM, Linux): its own, unlike ru_maxrss, which a child started with
    fork + exec inherits from the (large) parent it was forked from."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def _watch_helpers(peaks: dict[int, int], done: threading.Event) -> None:
    """Record the peak RSS of this process's children (the helper senders) while they run."""
    me = str(os.getpid())
    while not done.wait(0.2):
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if (
                    stat.read_text().rsplit(")", 1)[1].split()[1] == me
                    and b"--multiprocessing-fork" in (stat.parent / "cmdline").read_bytes()
                ):  # not the tracker
                    pid = int(stat.parent.name)
                    peaks[pid] = max(peaks.get(pid, 0), peak_rss_mb(pid))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile


def send_phase(root: str) -> None:
    """The child process: the due broadcast job (`Runner.run_broadcast`), its stages timed from outside
    (`devtools.timed`); prints JSON."""
    from needlecast.config import open_workspace
    from needlecast.delivery import backend_factory
    from needlecast.devtools.stopwatch import Stopwatch
    from needlecast.devtools.timed import stage_seconds, timed_runner
    from needlecast.pacing import collect_seldom
    from needlecast.store.engine import open_store

    workspace = open_workspace(Path(root))
    engine = open_store(workspace.database_url)
    watch = Stopwatch()
    runner = timed_runner(workspace, engine, backend_factory(workspace), watch=watch)
    helper_peaks: dict[int, int] = {}
    done = threading.Event()
    watcher = threading.Thread(target=_watch_helpers, args=(helper_peaks, done), daemon=True)
    watcher.start()
    started = time.perf_counter()
    with collect_seldom():  # as `needlecast send` and the scheduler's jobs run it
        report = runner.run_broadcast("bench", send_now=True)
    end_to_end = time.perf_counter() - started
    done.set()
    watcher.join()
    stages = {f"{stage}_s": seconds for stage, seconds in stage_seconds(watch, runner).items()}
    print(
        json.dumps(
            {
                **stages,
                "end_to_end_s": round(end_to_end, 2),
                "enqueued": report.enqueued,
                "sent": report.sent,
                "failed": report.failed,
                "deferred": report.released,
                "unknown": report.unknown,
                "peak_rss_mb": peak_rss_mb(),
                "helper_peak_rss_mb": max(helper_peaks.values(), default=0),
            }
        )
    )


def naive_baseline(port: int, sample: int) -> float:
    """Render per recipient and one sendgrid client call per recipient; recipients per second."""
    from sendgrid import SendGridAPIClient

    from needlecast.config import open_workspace
    from needlecast.content.loader import load_article, load_vocabulary_for
    from needlecast.templating.context import email_context
    from needlecast.templating.environment import build_environment
    from needlecast.templating.render import render_email
    from needlecast.templating.tokens import apply_substitutions, substitutions_for

    workspace = open_workspace(Path(os.environ["NEEDLECAST_WORKSPACE"]))
    vocabulary = load_vocabulary_for(workspace)
    article = load_article(workspace, vocabulary)
    env = build_environment(workspace.templates_dir)
    client = SendGridAPIClient(api_key=API_KEY, host=f"http://127.0.0.1:{port}")
    concerns = ["acne", "ageing", "pigmentation", "general"]
    started = time.perf_counter()
    for i in range(sample):
        context = email_context(article, vocabulary, workspace.settings.clinic, concerns[i % 4])
        rendered = render_email(env, "emails/broadcast", context)
        subs = substitutions_for(
            {"first_name": f"P{i}", "unsubscribe_url": f"https://x/u/{i}", "preferences_url": f"https://x/p/{i}"}
        )
        body = {
            "personalizations": [{"to": [{"email": f"naive{i}@example.com"}], "custom_args": {"delivery_id": f"n{i}"}}],
            "from": {"email": workspace.settings.clinic.sender_email},
            "subject": apply_substitutions(rendered.subject, subs),
            "content": [
                {"type": "text/plain", "value": apply_substitutions(rendered.text, subs)},
                {"type": "text/html", "value": apply_substitutions(rendered.html, subs)},
            ],
        }
        client.client.mail.send.post(request_body=body, timeout=10)
    return sample / (time.perf_counter() - started)


def _children_cpu() -> tuple[float, float]:
    """User and system CPU seconds of the finished child processes (the job and its helpers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=5_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--port", type=int, default=8125)
    parser.add_argument("--send-phase", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send_phase:
        send_phase(args.send_phase)
        return
    from needlecast.audience.importer import import_file
    from needlecast.config import open_workspace
    from needlecast.content.loader import load_vocabulary_for
    from needlecast.store.engine import open_store

    sink = start_sink(args.port)
    result: dict[str, object] = {"benchmark": "broadcast", "recipients": args.recipients}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url
            if url:
                from bench.import_csv import fresh_postgres

                url = fresh_postgres(url)
            else:
                url = f"sqlite:///{tmp}/bench.db"
            setup_workspace(Path(tmp) / "ws", url, args.port)
            workspace = open_workspace(Path(tmp) / "ws")
            engine = open_store(url)
            result["database"] = engine.dialect.name
            started = time.perf_counter()
            write_audience(Path(tmp) / "audience.csv", args.recipients)
            result["generate_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            summary = import_file(engine, Path(tmp) / "audience.csv", load_vocabulary_for(workspace))
            result["import_s"] = round(time.perf_counter() - started, 2)
            assert summary.inserted == args.recipients, summary
            engine.dispose()
            sink_cpu = cpu_seconds(sink.pid)
            server_cpu = postgres_cpu_seconds()
            children_cpu = _children_cpu()
            child = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--send-phase", str(Path(tmp) / "ws")],
                capture_output=True,
                text=True,
                env=os.environ,
            )
            if child.returncode != 0:
                raise SystemExit(child.stderr[-4000:])
            send = json.loads(child.stdout.strip().splitlines()[-1])
            result.update(send)
            # CPU the job used (its process and helpers) and the sink used while it ran: the two cores' budget.
            user, system = _children_cpu()
            result["job_cpu_s"] = round(user + system - sum(children_cpu), 1)
            result["job_system_cpu_s"] = round(system - children_cpu[1], 1)
            result["sink_cpu_s"] = round(cpu_seconds(sink.pid) - sink_cpu, 1)
            if engine.dialect.name == "postgresql":
                result["postgres_cpu_s"] = round(postgres_cpu_seconds() - server_cpu, 1)
            stats = sink_stats(args.port)
            result["sink_accepted_recipients"] = stats["accepted_recipients"]
            result["sink_requests"] = stats["accepted_requests"]
            result["recipients_per_s"] = round(send["sent"] / send["end_to_end_s"])
            naive = naive_baseline(args.port, args.naive_sample)
            result["naive_recipients_per_s"] = round(naive, 1)
            result["speedup"] = round(result["recipients_per_s"] / naive, 1)  # type: ignore[operator]
    finally:
        sink.terminate()
        sink.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
