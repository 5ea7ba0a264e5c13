"""Run the tracking app on a loopback port inside this process (the demo, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from sqlalchemy import Engine

from needlecast.config import Workspace
from needlecast.web.app import create_app


def loopback_socket() -> socket.socket:
    """A TCP socket bound to a free port of 127.0.0.1, for a server this process starts (`uvicorn`'s `sockets=`).

    Made with the TCP protocol number, not 0: asyncio turns Nagle's algorithm off on each connection it accepts
    only when the listening socket says it is TCP. With `socket.socket()` it did not, and every response whose
    body followed its headers in a second write waited for the client's delayed ACK: about 40 ms a response
    on a kept-alive connection (uvicorn binding its own host and port, as `needlecast serve` does, was not
    affected)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serving(workspace: Workspace, engine: Engine) -> Iterator[str]:
    """Serve the app on 127.0.0.1 (a free port) until the block ends; yields its base URL."""
    sock = loopback_socket()
    server = uvicorn.Server(uvicorn.Config(create_app(workspace, engine), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the tracking app did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
