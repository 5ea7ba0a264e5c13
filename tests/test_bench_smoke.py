"""Small runs of the benchmarks, so that they cannot rot (no timing is asserted: figures are in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEEDLECAST_", "SENDGRID_"))}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_broadcast_benchmark_smoke() -> None:
    result = _run("bench/broadcast.py", "--recipients", "1000", "--naive-sample", "50", "--port", str(_free_port()))
    assert result["sent"] == result["sink_accepted_recipients"] == 1000
    assert result["failed"] == result["unknown"] == 0
    assert float(result["naive_recipients_per_s"]) > 0 and float(result["speedup"]) > 0  # type: ignore[arg-type]


def test_import_benchmark_smoke() -> None:
    result = _run("bench/import_csv.py", "--rows", "1000")
    assert result["rows"] == 1000 and result["reconciles"] is True


def test_webhook_benchmark_smoke() -> None:
    result = _run("bench/webhook.py", "--events", "100", "--repeat", "1")
    assert result["events"] == 100


def test_console_latency_benchmark_smoke() -> None:
    result = _run("bench/console_latency.py", "--recipients", "2000", "--idle-rounds", "2", "--port", str(_free_port()))
    assert result["sink_accepted_recipients"] == 2000
    pages = {"home", "campaigns", "campaign", "reports", "audiences", "segment", "contact", "contacts"}
    assert set(result["idle"]) == pages | {"contacts_search", "contacts_filter"}  # type: ignore[arg-type]
    assert result["during_send_all"]["n"] >= 5  # type: ignore[index]


def test_contact_list_benchmark_smoke() -> None:
    result = _run("bench/contact_list.py", "--contacts", "2000", "--rounds", "1")
    assert result["searches"]["everyone"]["matches"] == 2000
    assert 0 < result["searches"]["part of a name"]["matches"] < 2000


def test_send_time_benchmark_smoke() -> None:
    result = _run("bench/send_time.py", "--recipients", "3000", "--events", "30000")
    assert result["events_read"] == 30000
    assert sum(result["rules"].values()) == 3000  # type: ignore[attr-defined]
    assert float(result["own_within_an_hour"]) >= 0.9  # type: ignore[arg-type]


def test_hostile_xlsx_import_benchmark_smoke(tmp_path: Path) -> None:
    result = _run("bench/import_xlsx.py", "--rows", "200", "--sheet", str(tmp_path / "small.xlsx"))
    assert result["outcome"] == "read 200, inserted 0, rejected 200"


def test_reports_benchmark_smoke() -> None:
    result = _run("bench/reports.py", "--deliveries", "2000", "--events", "20000")
    assert result["deliveries"] == 2000 and result["events"] == 20000
    compared, trends = result["compare"], result["trends"]
    assert compared["campaigns"] > 0 and trends["weeks"] == 4  # type: ignore[index]


def test_journeys_benchmark_smoke() -> None:
    result = _run("bench/journeys.py", "--people", "1000")
    # ids 1..1000: those ending in 0, 1 or 2 are due (300); each goes through the wait, the branch and a send
    assert result["positions"] == 1000 and result["enqueued"] == 300 and result["ledger_rows"] == 300
    assert result["left"] == {"exit at done": 300} and result["moved"] == 900
