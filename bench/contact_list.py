"""Benchmark: the console's contact list (issue 28 item 2) over a large audience, idle.

    python bench/contact_list.py --contacts 200000
    python bench/contact_list.py --contacts 200000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/needlecast_test

A synthetic audience is imported, one open per second contact is stored (so the last-activity filter has
events to look through), and each search of the list is read `--rounds` times through the read model the
page uses (`readmodels.contact_list.contact_list`: the count, the page of 50, the choices), plus the count a
bulk action confirms. A segment filter is timed after its first evaluation (the page shares the web app's
frame cache, which evaluates a segment once per change of the audience). Prints one JSON line: p50 and p95 in
milliseconds per search.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SEARCHES = {
    "everyone": {},
    "page 2000": {"page": "2000"},
    "part of a name": {"q": "p1234"},
    "part of an address": {"q": "@example3"},
    "concern": {"concern": "acne"},
    "segment": {"segment": "acne"},
    "consent": {"consent": "concern"},
    "source": {"source": "import:audience.csv"},
    "not suppressed": {"suppressed": "no"},
    "active in 30 days": {"activity": "30"},
    "quiet for 90 days": {"activity": "quiet-90"},
    "name + concern + activity": {"q": "p12", "concern": "acne", "activity": "30"},
}


def _events(engine: object, n: int) -> None:
    from sqlalchemy import insert, select

    from needlecast.store.schema import contacts, events

    when = datetime.now(UTC) - timedelta(days=3)
    with engine.begin() as conn:  # type: ignore[attr-defined]
        hashes = list(conn.execute(select(contacts.c.email_hash).where(contacts.c.id % 2 == 0)).scalars())[:n]
        rows = [
            {
                "provider_event_id": f"bench-{i}",
                "kind": "opened",
                "delivery_id": None,
                "campaign_id": "bench",
                "step_id": "s",
                "message_id": "m",
                "email_hash": h,
                "occurred_at": when,
                "received_at": when,
                "detail": "",
                "raw": {},
            }
            for i, h in enumerate(hashes)
        ]
        for start in range(0, len(rows), 5000):
            conn.execute(insert(events), rows[start : start + 5000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    from bench.broadcast import setup_workspace, write_audience
    from needlecast.audience.contact_filter import ContactFilter, Selection
    from needlecast.audience.frame_cache import FrameCache
    from needlecast.audience.importer import import_file
    from needlecast.config import open_workspace
    from needlecast.content.loader import load_vocabulary_for
    from needlecast.readmodels.contact_list import contact_list, selection_size
    from needlecast.store.engine import open_store

    result: dict[str, object] = {"benchmark": "contact_list", "contacts": args.contacts}
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url
        if url:
            from bench.import_csv import fresh_postgres

            url = fresh_postgres(url)
        else:
            url = f"sqlite:///{tmp}/bench.db"
        setup_workspace(Path(tmp) / "ws", url, 8127)
        workspace = open_workspace(Path(tmp) / "ws")
        engine = open_store(url)
        result["database"] = engine.dialect.name
        write_audience(Path(tmp) / "audience.csv", args.contacts)
        import_file(engine, Path(tmp) / "audience.csv", load_vocabulary_for(workspace))
        _events(engine, args.contacts // 2)
        if engine.dialect.name == "postgresql":  # as autovacuum soon would after an import this size
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        frames = FrameCache(engine)
        timings: dict[str, dict[str, float]] = {}
        for name, fields in SEARCHES.items():
            wanted = ContactFilter.from_fields(fields)
            page = int(fields.get("page", "1"))
            contact_list(engine, workspace, wanted, page, unmasked=True, frames=frames)  # warm (a segment's frame)
            spent = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                shown = contact_list(engine, workspace, wanted, page, unmasked=True, frames=frames)
                spent.append(time.perf_counter() - started)
            ordered = sorted(spent)
            timings[name] = {
                "matches": shown.total,
                "p50_ms": round(statistics.median(spent) * 1000, 1),
                "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000, 1),
            }
        started = time.perf_counter()
        everyone = selection_size(engine, workspace, Selection(ContactFilter()), unmasked=True, frames=frames)
        timings["bulk count (everyone)"] = {"matches": everyone, "ms": round((time.perf_counter() - started) * 1000, 1)}
        result["searches"] = timings
        engine.dispose()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
