"""Benchmark: one 768 KB SendGrid event batch through the real webhook endpoint (uvicorn on loopback).

    python bench/webhook.py [--events 2600] [--repeat 5]

Signs each batch with a fresh P-256 key, posts it over HTTP, and prints one JSON line with the batch size
and the time from request to committed answer (median and worst of the repeats, each a new batch).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from needlecast.config import open_workspace
from needlecast.scaffold import init_workspace
from needlecast.store.engine import open_store
from needlecast.web.app import create_app
from needlecast.web.local import loopback_socket


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2600)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    os.environ["SENDGRID_WEBHOOK_PUBLIC_KEY"] = base64.b64encode(public).decode()
    with tempfile.TemporaryDirectory() as tmp:
        init_workspace(Path(tmp) / "ws")
        os.environ["NEEDLECAST_DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
        workspace = open_workspace(Path(tmp) / "ws")
        engine = open_store(workspace.database_url)
        sock = loopback_socket()
        server = uvicorn.Server(uvicorn.Config(create_app(workspace, engine), log_level="warning", access_log=False))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/sendgrid"
        timings, size = [], 0
        with httpx.Client(timeout=30) as client:
            for round_ in range(args.repeat):
                items = [
                    {
                        "email": f"user{i}@example.com",
                        "timestamp": int(time.time()),
                        "event": "delivered",
                        "sg_event_id": f"r{round_}-{i}",
                        "sg_message_id": f"m{i}.filter",
                        "delivery_id": str(i + 1),
                        "campaign": "spring",
                        "step": "guide",
                        "category": ["spring", "spring/guide"],
                        "response": "250 OK " + "x" * 80,
                    }
                    for i in range(args.events)
                ]
                body = json.dumps(items).encode()
                size = len(body)
                stamp = str(int(time.time()))
                signature = base64.b64encode(key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
                started = time.perf_counter()
                response = client.post(
                    url,
                    content=body,
                    headers={
                        "X-Twilio-Email-Event-Webhook-Signature": signature,
                        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                        "Content-Type": "application/json",
                    },
                )
                timings.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
        server.should_exit = True
    print(
        json.dumps(
            {
                "benchmark": "webhook",
                "events": args.events,
                "body_kb": round(size / 1024),
                "median_s": round(statistics.median(timings), 3),
                "worst_s": round(max(timings), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
