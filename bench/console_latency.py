"""Benchmark: the console's page latency, idle and while a broadcast sends in the same process.

    python bench/console_latency.py --recipients 200000
    python bench/console_latency.py --recipients 200000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/needlecast_test

A synthetic audience is imported, the web app (console, API, tracking) runs under uvicorn in this process, and
a marketer logs in over HTTP. Each page of a round (the home page, the campaign list, the campaign's page
with its plan, the reports list, the audiences with every segment's size, one segment's page, a contact's
profile, the contact list, the list searched by name and the list filtered by concern and consent, a
segment's form, the campaign's report, the cohorts and revenue, the content library, the emails, one email,
the campaign's preview and form, the forms of a new campaign and a new segment, the confirmation of
"Send now", whose counts are exact at the moment it is asked, a journey's map and its editor, the email
builder, and, as the clinic's admin, the users, the audit log, the settings and the API keys) is
fetched `--idle-rounds` times while nothing sends; then
the marketer presses "Send now" (the console's own form), the send runs in a thread of this same process
(`needlecast.web.senders.Senders`) to the SendGrid sink (its own process, real HTTP), and the same pages are
fetched one after the other until the send ends. Prints one JSON line: p50 and p95 (milliseconds) per page,
idle and during the send, how many requests were timed, and how long the send took. `--no-send` times the
pages idle only. `kept_figures_shown` counts, per phase and page, the views that showed a kept figure's
placeholder (nothing worked out yet: "working") or an older kept figure while a newer one was worked out
("updating"). Each page's CPU time in this process (`time.thread_time` is not enough: the view runs in
Starlette's thread pool) is given as `cpu_ms` per request: the process's CPU over the request, which includes
the send thread's share while it sends.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PASSWORD = "a long enough benchmark password"
JOURNEY = """
id: recall
name: Recall
kind: journey
segment: all-leads
time_zone: Europe/London
entry: {event: attended}
reentry: each_event
goal: {event: booked}
steps:
  - {id: morning, kind: wait, until_time: "09:00"}
  - {id: hello, template: emails/welcome}
  - {id: pause, kind: wait, delay: 3d}
  - {id: guide, template: emails/deep_dive}
signoff: {reviewer: bench, date: 2026-11-24, note: benchmark content}
"""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return round(ordered[index] * 1000, 1)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--port", type=int, default=8126, help="the SendGrid sink's port")
    parser.add_argument("--idle-rounds", type=int, default=10)
    parser.add_argument(
        "--sender-processes", type=int, default=1, help="1: every email is sent by this process's own thread"
    )
    parser.add_argument("--no-send", action="store_true", help="time the pages idle only (no send afterwards)")
    args = parser.parse_args()
    os.environ["BENCH_SENDER_PROCESSES"] = str(args.sender_processes)

    from bench.broadcast import setup_workspace, sink_stats, start_sink, write_audience
    from needlecast.accounts.roles import cli_actor
    from needlecast.actions.users import add_user
    from needlecast.audience.importer import import_file
    from needlecast.config import open_workspace
    from needlecast.content.loader import load_vocabulary_for
    from needlecast.store.engine import open_store
    from needlecast.web.app import create_app
    from needlecast.web.local import loopback_socket
    from needlecast.web.senders import Senders

    sink = start_sink(args.port)
    result: dict[str, object] = {"benchmark": "console_latency", "recipients": args.recipients}
    result["load_average_at_start"] = [round(x, 1) for x in os.getloadavg()]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url
            if url:
                from bench.import_csv import fresh_postgres

                url = fresh_postgres(url)
            else:
                url = f"sqlite:///{tmp}/bench.db"
            setup_workspace(Path(tmp) / "ws", url, args.port)
            (Path(tmp) / "ws" / "campaigns" / "recall.yaml").write_text(JOURNEY)  # its pages plan 200,000 people
            workspace = open_workspace(Path(tmp) / "ws")
            engine = open_store(url)
            result["database"] = engine.dialect.name
            write_audience(Path(tmp) / "audience.csv", args.recipients)
            import_file(engine, Path(tmp) / "audience.csv", load_vocabulary_for(workspace))
            add_user(engine, cli_actor(), "marketer@clinic.example", "marketer", PASSWORD)
            add_user(engine, cli_actor(), "admin@clinic.example", "admin", PASSWORD)

            senders = Senders(workspace, engine)
            sock = loopback_socket()
            config = uvicorn.Config(
                create_app(workspace, engine, senders=senders), log_level="warning", access_log=False
            )
            server = uvicorn.Server(config)
            threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
            while not server.started:
                time.sleep(0.02)
            base = f"http://127.0.0.1:{sock.getsockname()[1]}"
            with (
                httpx.Client(base_url=base, timeout=120) as client,
                httpx.Client(base_url=base, timeout=120) as admin,
            ):
                for person, address in ((client, "marketer"), (admin, "admin")):
                    login = person.get("/console/login")
                    person.post(
                        "/console/login",
                        data={"csrf": csrf_of(login.text), "email": f"{address}@clinic.example", "password": PASSWORD},
                    )
                contact = client.post(
                    "/console/contacts",
                    data={"csrf": csrf_of(client.get("/console/contacts").text), "email": "person7@example0.com"},
                )
                search_csrf = csrf_of(client.get("/console/contacts").text)
                pages = {
                    "home": "/console/",
                    "campaigns": "/console/campaigns",
                    "campaign": "/console/campaigns/bench",
                    "reports": "/console/reports",
                    "audiences": "/console/audiences",
                    "contact": contact.headers.get("location", "/console/contacts"),
                    "contacts": "/console/contacts",  # the list: every contact, its first page of 50
                    # a search by name (posted: a search never goes in a URL) and two filters
                    "contacts_search": "POST /console/contacts",
                    "contacts_filter": "/console/contacts?concern=acne&consent=marketing",
                    "segment": "/console/segments/acne",  # one segment: its size, exclusions, a page of members
                    "segment_edit": "/console/segments/acne/edit",  # its form, with its size counted
                    "report": "/console/reports/bench",  # the campaign's own report (its funnel, timeline...)
                    "cohorts": "/console/reports/cohorts",  # lead cohorts and revenue over the audience
                    "content": "/console/content",  # the articles and their sections' tags
                    "templates": "/console/templates",  # the emails
                    "template": "/console/templates/emails/broadcast",  # one email's source and preview
                    "preview": "/console/campaigns/bench/preview",  # the campaign's emails as people get them
                    "edit": "/console/campaigns/bench/edit",  # the campaign's form
                    "new_campaign": "/console/campaigns/new",
                    "new_segment": "/console/segments/new",
                    "confirm": "/console/campaigns/bench/confirm/send-now",  # who it reaches, counted as asked
                    "journey": "/console/journeys/recall",  # a journey's map with who is where and its forecast
                    "journey_edit": "/console/journeys/recall/edit",  # its editor
                    "email_builder": "/console/email-builder/new?name=winter-news",  # blocks and their preview
                    # the admin's pages (as the clinic's admin)
                    "users": "ADMIN /console/users",
                    "audit": "ADMIN /console/audit",
                    "settings": "ADMIN /console/settings",
                    "keys": "ADMIN /console/settings/keys",
                }

                # Views that showed a kept figure's placeholder (nothing worked out yet) or an older kept
                # figure while it was worked out again ("updating"), per phase and page.
                shown: dict[str, dict[str, dict[str, int]]] = {"idle": {}, "during_send": {}}

                def fetch_round(into: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
                    phase = shown["idle" if into is idle else "during_send"]
                    for name, path in pages.items():
                        started, used = time.perf_counter(), time.process_time()
                        if path.startswith("POST "):
                            response = client.post(path[5:], data={"csrf": search_csrf, "q": "P1234"})
                        elif path.startswith("ADMIN "):
                            response = admin.get(path[6:])
                        else:
                            response = client.get(path)
                        into[name].append(time.perf_counter() - started)
                        cpu[name].append(time.process_time() - used)
                        assert response.status_code == 200, (path, response.status_code)
                        for state in ("working", "updating"):
                            if f'data-figure-state="{state}"' in response.text:
                                seen = phase.setdefault(name, {})
                                seen[state] = seen.get(state, 0) + 1

                idle: dict[str, list[float]] = {name: [] for name in pages}
                idle_cpu: dict[str, list[float]] = {name: [] for name in pages}
                busy: dict[str, list[float]] = {name: [] for name in pages}
                busy_cpu: dict[str, list[float]] = {name: [] for name in pages}
                for _ in range(args.idle_rounds):
                    fetch_round(idle, idle_cpu)
                send_s = 0.0
                if not args.no_send:
                    confirm = client.get("/console/campaigns/bench/confirm/send-now")
                    senders.finished.clear()
                    started_send = time.perf_counter()
                    client.post("/console/campaigns/bench/send-now", data={"csrf": csrf_of(confirm.text)})
                    while not senders.finished.is_set():
                        fetch_round(busy, busy_cpu)
                    send_s = time.perf_counter() - started_send

            server.should_exit = True
            result["kept_figures_shown"] = shown  # placeholders ("working") and older figures ("updating")
            for label, timings, cpus in (("idle", idle, idle_cpu), ("during_send", busy, busy_cpu)):
                result[label] = {
                    name: {
                        "p50_ms": percentile(values, 0.5),
                        "p95_ms": percentile(values, 0.95),
                        "n": len(values),
                        "cpu_ms": round(statistics.median(cpus[name]) * 1000, 1),
                    }
                    for name, values in timings.items()
                    if values
                }
                every = [v for values in timings.values() for v in values]
                if every:
                    result[f"{label}_all"] = {
                        "p50_ms": percentile(every, 0.5),
                        "p95_ms": percentile(every, 0.95),
                        "n": len(every),
                        "mean_ms": round(statistics.fmean(every) * 1000, 1),
                    }
            if not args.no_send:
                result["send_s"] = round(send_s, 1)
                result["sink_accepted_recipients"] = sink_stats(args.port)["accepted_recipients"]
    finally:
        sink.terminate()
        sink.wait(10)
    result["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
