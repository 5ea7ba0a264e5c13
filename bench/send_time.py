"""Benchmark: choose send hours for N recipients from M stored engagement events (send-time optimisation).

    python bench/send_time.py --recipients 1000000 --events 10000000            # SQLite in a temp folder
    python bench/send_time.py --recipients 1000000 --events 10000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/needlecast_test

Stores one earlier email per recipient and M open and click events spread over them (each recipient has a
preferred hour in one of three zones; three events in four are at it), then, in a fresh process, times the two
stages of a plan: reading the human engagement from the store (`Engagement.load`) and choosing every
recipient's hour (`choose_send_times`, a 24-hour window, a 10 % holdout). Prints one JSON line with the
seconds of each stage, the rules' counts, the share of recipients with their own history sent within an hour
of their preferred hour, and the measuring process's peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from needlecast.campaign.definition.model import Optimise
from needlecast.campaign.plan.send_time import OWN, Engagement, choose_send_times
from needlecast.store.bulk import insert_columns
from needlecast.store.engine import open_store
from needlecast.store.schema import deliveries, events

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.broadcast import peak_rss_mb  # noqa: E402
from bench.import_csv import fresh_postgres  # noqa: E402

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ZONES = ("Europe/London", "America/New_York", "Asia/Tokyo")
OFFSETS = {"Europe/London": 0, "America/New_York": -5, "Asia/Tokyo": 9}  # in November
CHUNK = 1_000_000


def preferred_hours(recipients: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 24, recipients)


def fill(url: str, recipients: int, count: int) -> None:
    """One earlier sent email per recipient (contact ids 1..N) and `count` events spread over them."""
    engine = open_store(url)
    earlier = NOW - timedelta(days=90)
    hours = preferred_hours(recipients)
    rng = np.random.default_rng(4)
    with engine.begin() as conn:
        for start in range(0, recipients, CHUNK):
            ids = list(range(start + 1, min(start + CHUNK, recipients) + 1))
            insert_columns(
                conn,
                deliveries,
                {
                    "campaign_id": "history",
                    "step_id": "s",
                    "contact_id": ids,
                    "segment": "all",
                    "variant": "general",
                    "arm": "",
                    "status": "sent",
                    "due_at": earlier,
                    "claimed_at": None,
                    "claim_token": "",
                    "sent_at": earlier,
                    "message_id": "",
                    "error": "",
                    "attempts": 1,
                    "created_at": earlier,
                    "updated_at": earlier,
                    "outcome": "delivered",
                    "timing": "",
                },
                (),
            )
        for start in range(0, count, CHUNK):
            size = min(CHUNK, count - start)
            contact = rng.integers(1, recipients + 1, size)
            zone_offset = np.array([OFFSETS[ZONES[c % 3]] for c in range(3)])[contact % 3]
            local_hour = np.where(rng.random(size) < 0.75, hours[contact - 1], rng.integers(0, 24, size))
            day = rng.integers(1, 85, size)
            midnight = int(earlier.replace(hour=0).timestamp())
            moment = midnight + day * 86400 + ((local_hour - zone_offset) % 24) * 3600 + rng.integers(0, 3600, size)
            occurred = pd.to_datetime(moment, unit="s", utc=True).to_pydatetime().tolist()
            insert_columns(
                conn,
                events,
                {
                    "provider_event_id": [f"e{start + i}" for i in range(size)],
                    "kind": np.where(rng.random(size) < 0.7, "opened", "clicked").tolist(),
                    "delivery_id": contact.tolist(),  # the history's delivery ids are the contact ids
                    "campaign_id": "history",
                    "step_id": "s",
                    "message_id": "",
                    "email_hash": "",
                    "occurred_at": occurred,
                    "received_at": NOW,
                    "detail": "",
                    "raw": {},
                },
                (),
            )
    engine.dispose()


def measure(url: str, recipients: int) -> dict[str, object]:
    engine = open_store(url)
    started = time.perf_counter()
    with engine.connect() as conn:
        engagement = Engagement.load(conn, NOW)
    loaded = time.perf_counter() - started
    ids = np.arange(1, recipients + 1)
    members = pd.DataFrame({"id": ids, "zone": np.array(ZONES)[ids % 3]})
    plain = pd.Series(pd.Timestamp("2026-11-25 09:00", tz="UTC"), index=members.index)
    started = time.perf_counter()
    due, rule = choose_send_times("bench", "guide", members, plain, Optimise(), engagement)
    chosen = time.perf_counter() - started
    own = (rule == OWN).to_numpy()
    local = np.zeros(recipients, dtype="int64")
    for zone in ZONES:
        picked = (members["zone"] == zone).to_numpy() & own
        local[picked] = pd.DatetimeIndex(due[picked]).tz_convert(zone).hour
    off = np.abs(local[own] - preferred_hours(recipients)[own])
    within = float(np.mean(np.minimum(off, 24 - off) <= 1)) if own.any() else float("nan")
    return {
        "events_read": len(engagement.events),
        "load_s": round(loaded, 2),
        "choose_s": round(chosen, 2),
        "total_s": round(loaded + chosen, 2),
        "rules": {str(k): int(v) for k, v in rule.value_counts().items()},
        "own_within_an_hour": round(within, 4),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--database-url", default="", help="default: SQLite in a temporary folder")
    parser.add_argument("--measure", default="", help=argparse.SUPPRESS)  # the child: measure this store
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.recipients)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        url = fresh_postgres(args.database_url) if args.database_url else f"sqlite:///{tmp}/bench.db"
        started = time.perf_counter()
        fill(url, args.recipients, args.events)
        filled = time.perf_counter() - started
        child = subprocess.run(
            [sys.executable, __file__, "--measure", url, "--recipients", str(args.recipients)],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout)
        print(
            json.dumps(
                {
                    "benchmark": "send_time",
                    "database": url.split(":", 1)[0],
                    "recipients": args.recipients,
                    "events": args.events,
                    "fill_s": round(filled, 1),
                    **result,
                }
            )
        )


if __name__ == "__main__":
    main()
