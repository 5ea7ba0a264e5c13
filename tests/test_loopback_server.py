"""A server this process starts on a loopback port (the demo, the suite's console and API, the benchmarks) turns
Nagle's algorithm off on every connection it accepts, as uvicorn does when it binds its own port: otherwise a
response whose body follows its headers waits for the client's delayed ACK (about 40 ms a response)."""

from __future__ import annotations

import asyncio
import socket
import threading

from needlecast.web.local import loopback_socket


def _nodelay_of_accepted(listening: socket.socket) -> int:
    """TCP_NODELAY of a connection accepted on `listening` by asyncio's server (what uvicorn runs on)."""
    seen: list[int] = []

    class Note(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            seen.append(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def connect_once() -> None:
        server = await asyncio.get_running_loop().create_server(Note, sock=listening)
        reader, writer = await asyncio.open_connection(*listening.getsockname())
        await reader.read()  # until the server closes it
        writer.close()
        server.close()
        await server.wait_closed()

    # In a thread of its own: a browser test earlier in the same worker may have left an event loop running in
    # this one, where asyncio.run refuses to start another.
    worker = threading.Thread(target=asyncio.run, args=(connect_once(),))
    worker.start()
    worker.join(30)
    return seen[0]


def test_connections_accepted_on_the_loopback_socket_send_at_once() -> None:
    assert _nodelay_of_accepted(loopback_socket()) != 0
    plain = socket.socket()  # what the servers were bound with before: asyncio leaves Nagle on
    plain.bind(("127.0.0.1", 0))
    assert _nodelay_of_accepted(plain) == 0
