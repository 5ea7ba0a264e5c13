"""A running web app for console, API and signup tests: uvicorn on loopback, a store on SQLite or PostgreSQL,
the sample audience, and one account per role.

`site(...)` is a context manager yielding a `ConsoleSite`: its `url`, `engine`, `workspace`, the `senders`
(so a test can wait on a send), `login(role)` (an httpx client holding that role's session) and `api(key)`.

On SQLite the set-up's data (the sample audience imported, one account per role) is made once per process for
each distinct input (the sample file, the vocabulary, the password cost) and copied into each test's store
(about 2 ms instead of 0.5-1 s): only when that store is still exactly the empty migrated template, so a test
that wrote to its store before starting the site gets the set-up run on it as before. PostgreSQL stores get
the set-up run on them every time.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine

from needlecast.accounts.roles import ROLE_ACTIONS, ROLES, SCOPES, cli_actor
from needlecast.actions.keys import create_key
from needlecast.actions.users import add_user
from needlecast.audience.importer import import_file
from needlecast.config import Workspace, open_workspace, password_hash_cost
from needlecast.content.loader import load_vocabulary_for
from needlecast.store.engine import make_engine, open_store
from needlecast.web.app import create_app
from needlecast.web.local import loopback_socket
from needlecast.web.senders import Senders
from tests.conftest import sqlite_template
from tests.waiting import wait_until

PASSWORD = "a long enough test password"
SEEDS = ["qa.seed@clinic.example"]


def email_of(role: str) -> str:
    return f"{role}@clinic.example"


@dataclass
class ConsoleSite:
    url: str
    engine: Engine
    workspace: Workspace
    senders: Senders
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=60)
        self.clients.append(client)
        return client

    def login(self, role: str) -> httpx.Client:
        client = self.client()
        page = client.get("/console/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token, page.text
        done = client.post(
            "/console/login", data={"csrf": token.group(1), "email": email_of(role), "password": PASSWORD, "next": ""}
        )
        assert done.status_code == 303, done.text
        return client

    def api(self, key: str) -> httpx.Client:
        client = httpx.Client(base_url=f"{self.url}/api/v1", timeout=60, headers={"Authorization": f"Bearer {key}"})
        self.clients.append(client)
        return client

    def key(self, *scopes: str) -> str:
        return create_key(self.engine, cli_actor(), "tests", list(scopes or SCOPES))


@contextlib.contextmanager
def stripping_proxy(backend: str, prefix: str) -> Iterator[str]:
    """A reverse proxy on loopback that serves `backend` under `prefix` (stripping it, as nginx's
    `location /nc/ { proxy_pass http://app/; }` does); yields its base URL (the prefix included)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    upstream = httpx.AsyncClient(base_url=backend, follow_redirects=False, timeout=60)

    async def forward(request: Request) -> Response:
        path = request.url.path.removeprefix(prefix) or "/"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        answer = await upstream.request(
            request.method, path, params=request.query_params, headers=headers, content=await request.body()
        )
        kept = [
            (k, v)
            for k, v in answer.headers.multi_items()
            if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
        ]
        response = Response(answer.content, status_code=answer.status_code)
        response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept] + [
            (b"content-length", str(len(answer.content)).encode())
        ]
        return response

    methods = ["GET", "POST", "HEAD", "PUT", "DELETE"]
    proxy = Starlette(routes=[Route(prefix + "/{rest:path}", forward, methods=methods)])
    sock = loopback_socket()
    server = uvicorn.Server(uvicorn.Config(proxy, log_level="warning", access_log=False, log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 60, "the proxy to start")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{prefix}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def configure(root: Path, extra: str = "") -> None:
    """Seed addresses, a throttle without waiting, and `extra` settings (TOML) appended."""
    config = root / "needlecast.toml"
    text = config.read_text()
    text += f"\n[console]\ntest_recipients = {SEEDS!r}\nlogin_slow_seconds = 0.0\n".replace("'", '"')
    config.write_text(text + extra)


def _seed(engine: Engine, root: Path, workspace: Workspace, import_sample: bool) -> None:
    """The set-up's data: the sample audience (when asked) and one account per role."""
    if import_sample:
        import_file(engine, root / "audiences" / "sample.csv", load_vocabulary_for(workspace))
    for role in ROLES:
        add_user(engine, cli_actor(), email_of(role), role, PASSWORD)


_SEEDED: dict[str, Path] = {}  # what the set-up's data depends on -> a SQLite store holding it (this process)


def _seed_key(root: Path, workspace: Workspace, import_sample: bool) -> str:
    """Everything `_seed` reads: the sample file and the vocabulary (when importing), the password cost (the
    accounts' hashes) and the migrated template (this process's)."""
    digest = hashlib.sha256(repr((import_sample, password_hash_cost(), sqlite_template())).encode())
    if import_sample:
        digest.update((root / "audiences" / "sample.csv").read_bytes())
        digest.update(workspace.path(workspace.settings.content.vocabulary).read_bytes())
    return digest.hexdigest()


def _copy_seeded(store_url: str, root: Path, workspace: Workspace, import_sample: bool) -> bool:
    """Fill the SQLite store at `store_url` with a copy of the set-up's data, made once per process; True when
    done. Only for a store that is not there yet or is still byte for byte the empty migrated template, with no
    connection open on it (no -wal, -shm or -journal file beside it): anything else keeps its own set-up."""
    if not store_url.startswith("sqlite:///"):
        return False
    target = Path(store_url.removeprefix("sqlite:///"))
    if any(Path(f"{target}{suffix}").exists() for suffix in ("-wal", "-shm", "-journal")):
        return False
    if target.exists() and target.read_bytes() != sqlite_template().read_bytes():
        return False
    key = _seed_key(root, workspace, import_sample)
    if key not in _SEEDED:
        folder = Path(tempfile.mkdtemp(prefix="needlecast-seeded-"))
        atexit.register(shutil.rmtree, folder, True)
        seeded = folder / "seeded.db"
        shutil.copy(sqlite_template(), seeded)
        engine = open_store(f"sqlite:///{seeded}")
        _seed(engine, root, workspace, import_sample)
        engine.dispose()  # the last connection closed: the WAL is written back, the file is whole
        _SEEDED[key] = seeded
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(_SEEDED[key], target)
    return True


class _Connections(set[Any]):
    """uvicorn's set of open connections (its protocols add and discard themselves), with an event set when the
    last one is discarded: what the server's shutdown waits on."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = asyncio.Event()

    def add(self, connection: Any) -> None:
        super().add(connection)
        self.closed.clear()

    def discard(self, connection: Any) -> None:
        super().discard(connection)
        if not self:
            self.closed.set()


class _Server(uvicorn.Server):
    """uvicorn, stopping as soon as it is asked (`stop`) rather than at its main loop's next 0.1 s tick."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self.server_state.connections = _Connections()

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):  # a tick every 0.1 s, as uvicorn's own loop
                await asyncio.wait_for(self._wake.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown without its fixed pause: it asks every connection to close, then always sleeps
        0.1 s before it looks whether they have (a tenth of a second per test, with a server per test). Here
        it waits for the last connection to close (`_Connections.closed`), for at most
        `timeout_graceful_shutdown` or 10 s."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        connections = self.server_state.connections
        for connection in list(connections):
            connection.shutdown()
        if connections and isinstance(connections, _Connections):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connections.closed.wait(), self.config.timeout_graceful_shutdown or 10)
        for task in self.server_state.tasks:
            task.cancel()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()

    def stop(self) -> None:
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self._loop.call_soon_threadsafe(self._wake.set)


@contextlib.contextmanager
def site(
    root: Path,
    store_url: str,
    *,
    scheduler: object = None,
    import_sample: bool = True,
    settings: str = "",
    root_path: str = "",
) -> Iterator[ConsoleSite]:
    """The app serving `root` (with `settings` appended to its needlecast.toml) on a loopback port; with
    `root_path`, as behind a reverse proxy that strips that path prefix."""
    configure(root, settings)
    workspace = open_workspace(root)
    if _copy_seeded(store_url, root, workspace, import_sample):
        engine = make_engine(store_url)  # a copy of a store open_store made: at the newest schema
    else:
        engine = open_store(store_url)
        _seed(engine, root, workspace, import_sample)
    senders = Senders(workspace, engine, scheduler)
    sock = loopback_socket()
    server = _Server(
        uvicorn.Config(
            create_app(workspace, engine, senders=senders),
            log_level="warning",
            access_log=False,
            log_config=None,
            root_path=root_path,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 60, "uvicorn to start", every=0.005)
    running = ConsoleSite(f"http://127.0.0.1:{sock.getsockname()[1]}", engine, workspace, senders)
    try:
        yield running
    finally:
        for client in running.clients:
            client.close()
        server.stop()
        thread.join(30)
        sock.close()
        engine.dispose()


Route = tuple[str, str, str]  # method, path, the action it needs


def assert_anonymous_refused(console: ConsoleSite, routes: list[Route], data: dict[str, str]) -> None:
    """Each route refuses a request without a session: a page sends it to the log-in page, a form is 403."""
    anonymous = console.client()
    for method, path, _action in routes:
        response = anonymous.request(method, path, data={"csrf": "x", **data})
        if method == "GET":
            assert response.status_code == 303 and "/console/login" in response.headers["location"], path
        else:
            assert response.status_code == 403, path


def assert_roles_refused(console: ConsoleSite, routes: list[Route], data: dict[str, str]) -> None:
    """Each route refuses every role without its action, on the server: 403 naming the action."""
    for role in ROLES:
        client = console.login(role)
        token = csrf_of(client.get("/console/").text)
        for method, path, action in routes:
            if action in ROLE_ACTIONS[role]:
                continue
            response = client.request(method, path, data={"csrf": token, **data})
            assert response.status_code == 403, (role, method, path)
            assert action in response.text


@contextlib.contextmanager
def sqlite_site(
    workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, quiet_hours_off: bool = True
) -> Iterator[ConsoleSite]:
    """The console over a SQLite file in `tmp_path`, named in the environment too (so the command line and the
    scheduler a test runs beside it use the same store); quiet hours off unless asked, so a send goes at once."""
    url = f"sqlite:///{tmp_path / 'console.db'}"
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", url)
    if quiet_hours_off:
        monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, url) as running:
        yield running
