"""Small runs of the benchmarks, so that they cannot rot (no timing is asserted: figures are in BENCHMARKS.md).

Each benchmark runs as its command line runs it (the script as `__main__`, its arguments parsed by its own
`main()`), in this process: a fresh interpreter for each would add seconds of start-up and prove nothing more.
The import benchmark runs as a process of its own, as people run them, so that way is tested too. The sizes are
the smallest that still go through every stage of each script.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from needlecast.spamcheck import SPAMD_SOCKET_ENV
from tests.conftest import SUITE_ENVIRONMENT

REPO = Path(__file__).resolve().parent.parent

Bench = Callable[..., dict[str, object]]


def _run(*args: str) -> dict[str, object]:
    """`python SCRIPT ARGS` in a process of its own; the JSON line it printed last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEEDLECAST_", "SENDGRID_"))}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _bench_modules() -> None:
    """Forget the `bench` modules imported so far: a script reads settings from the environment at import
    (`bench.broadcast`'s sender processes), as it would in a process of its own."""
    for name in [name for name in sys.modules if name == "bench" or name.startswith("bench.")]:
        del sys.modules[name]


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch) -> Bench:
    """`bench(SCRIPT, *ARGS)`: the script run as `python SCRIPT ARGS` runs it (as `__main__`, from the
    repository, with no NEEDLECAST_ or SENDGRID_ variable but the suite's own), in this process; the JSON line
    it printed last. The environment, `sys.path` and the `bench` modules are as before afterwards."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", list(sys.path))

    def run(script: str, *args: str) -> dict[str, object]:
        kept = set(SUITE_ENVIRONMENT) | {SPAMD_SOCKET_ENV}
        saved = dict(os.environ)
        for key in [k for k in os.environ if k.startswith(("NEEDLECAST_", "SENDGRID_")) and k not in kept]:
            del os.environ[key]
        os.environ["PYTHONPATH"] = str(REPO)  # for the processes a script starts, as for the script itself
        monkeypatch.setattr(sys, "argv", [script, *args])
        out = io.StringIO()
        _bench_modules()
        try:
            with contextlib.redirect_stdout(out):
                runpy.run_path(str(REPO / script), run_name="__main__")
        except SystemExit as stop:
            pytest.fail(f"{script} exited: {stop.code}")
        finally:
            os.environ.clear()
            os.environ.update(saved)
            _bench_modules()
        return json.loads(out.getvalue().strip().splitlines()[-1])

    return run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_broadcast_benchmark_smoke(bench: Bench) -> None:
    result = bench("bench/broadcast.py", "--recipients", "200", "--naive-sample", "10", "--port", str(_free_port()))
    assert result["sent"] == result["sink_accepted_recipients"] == 200
    assert result["failed"] == result["unknown"] == 0
    assert float(result["naive_recipients_per_s"]) > 0 and float(result["speedup"]) > 0  # type: ignore[arg-type]


def test_import_benchmark_smoke() -> None:
    result = _run("bench/import_csv.py", "--rows", "200")
    assert result["rows"] == 200 and result["reconciles"] is True


def test_webhook_benchmark_smoke(bench: Bench) -> None:
    result = bench("bench/webhook.py", "--events", "100", "--repeat", "1")
    assert result["events"] == 100


def test_console_latency_benchmark_smoke(bench: Bench) -> None:
    result = bench(
        "bench/console_latency.py", "--recipients", "2000", "--idle-rounds", "1", "--port", str(_free_port())
    )
    assert result["sink_accepted_recipients"] == 2000
    pages = {"home", "campaigns", "campaign", "reports", "audiences", "segment", "contact", "contacts"}
    pages |= {"contacts_search", "contacts_filter", "segment_edit", "report", "cohorts", "content", "templates"}
    pages |= {"template", "preview", "edit", "new_campaign", "new_segment", "confirm"}
    pages |= {"journey", "journey_edit", "email_builder", "users", "audit", "settings", "keys"}
    assert set(result["idle"]) == pages  # type: ignore[arg-type]
    assert result["during_send_all"]["n"] >= 5  # type: ignore[index]


def test_contact_list_benchmark_smoke(bench: Bench) -> None:
    result = bench("bench/contact_list.py", "--contacts", "2000", "--rounds", "1")
    assert result["searches"]["everyone"]["matches"] == 2000
    assert 0 < result["searches"]["part of a name"]["matches"] < 2000


def test_send_time_benchmark_smoke(bench: Bench) -> None:
    result = bench("bench/send_time.py", "--recipients", "1000", "--events", "10000")
    assert result["events_read"] == 10000
    assert sum(result["rules"].values()) == 1000  # type: ignore[attr-defined]
    assert float(result["own_within_an_hour"]) >= 0.9  # type: ignore[arg-type]


def test_hostile_xlsx_import_benchmark_smoke(bench: Bench, tmp_path: Path) -> None:
    result = bench("bench/import_xlsx.py", "--rows", "200", "--sheet", str(tmp_path / "small.xlsx"))
    assert result["outcome"] == "read 200, inserted 0, rejected 200"


def test_reports_benchmark_smoke(bench: Bench) -> None:
    result = bench("bench/reports.py", "--deliveries", "500", "--events", "5000")
    assert result["deliveries"] == 500 and result["events"] == 5000
    compared, trends = result["compare"], result["trends"]
    assert compared["campaigns"] > 0 and trends["weeks"] == 4  # type: ignore[index]


def test_journeys_benchmark_smoke(bench: Bench) -> None:
    result = bench("bench/journeys.py", "--people", "100")
    # ids 1..100: those ending in 0, 1 or 2 are due (30); each goes through the wait, the branch and a send
    assert result["positions"] == 100 and result["enqueued"] == 30 and result["ledger_rows"] == 30
    assert result["left"] == {"exit at done": 30} and result["moved"] == 90
