"""Shared fixtures: a temporary workspace (a copy of the sample, with the demo clinic's settings and campaigns),
stores on SQLite and PostgreSQL (copied from a template migrated once per session), the session's Chromium.

Which tests run on PostgreSQL as well as SQLite (the rule). A test that takes `store_url` (or `blank_store_url`)
runs on both databases, unless it or its module is marked `database_independent`, which runs it on SQLite alone.
Both databases: the store contract suites (tests of needlecast/store/ and of the code that calls it with
SQL of its own: ledger, delivery store, fleet store, audience and imports, runner, winner, reports and their
figures, events, send outcome and send time, scheduler); the fleet tests (PostgreSQL only); and any test of
something the database decides or that the dialects do differently: races and concurrent requests, locks and
claims, ON CONFLICT and bulk inserts (COPY), ids past 64 bits, sequences, times and zones as stored, error
text. SQLite alone (`database_independent`): tests of a face (console pages, API and signup over HTTP, the
browser pages) whose assertions are about what a person or client sees, such as forms, permissions, status
codes, CSRF, redirects, wording, and whose database work is plain reads and writes that a contract suite
already runs on PostgreSQL. When one test of a face does test such a database path, it stays on both, by
marking the others one by one instead of the module.
"""

from __future__ import annotations

import atexit
import compileall
import contextlib
import os
import queue
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import httpx
import hypothesis
import pytest
import uvicorn
from sqlalchemy import Engine, create_engine, make_url, text

from needlecast import spamcheck
from needlecast.config import STATE_DIR, Workspace, open_workspace
from needlecast.content.vocabulary import Vocabulary, load_vocabulary
from needlecast.devtools.sendgrid_sink import SendGridSink
from needlecast.scaffold import init_workspace
from needlecast.store.engine import open_store
from tests.browser import GuardedBrowser, SessionChromium, chromium_path, guarded
from tests.postgres_reuse import ReusedDatabases

REPO = Path(__file__).resolve().parent.parent

# Under CI the property-based tests (Hypothesis, Schemathesis) replay the same examples every run, so that a
# submission's result cannot depend on luck; on a developer's machine they explore new ones each run.
hypothesis.settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


def _run_spam_scores() -> str:
    """The folder where the run's processes keep SpamAssassin's scores (`needlecast.spamcheck`'s
    NEEDLECAST_SPAM_SCORES_DIR): made by the first process of the run (pytest's controller) and removed when it
    exits; its workers and the processes they start inherit it. The sample's emails are linted, planned and
    signed off by hundreds of tests across the workers: SpamAssassin scores each distinct one once."""
    folder = tempfile.mkdtemp(prefix="needlecast-spam-scores-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


# Console passwords are hashed at argon2's lightest cost in the suite (production keeps argon2-cffi's default,
# about 0.2-0.5 s a hash here, which every web set-up paid four times over). Set in the environment, so the
# processes the tests start (fleet members, CLI subprocesses) inherit it; a value already set wins, so the
# suite can be run at the production cost. tests/test_password_cost.py tests the setting and the default. The run's
# folder of SpamAssassin's scores is set likewise.
SUITE_ENVIRONMENT = {
    "NEEDLECAST_ARGON2_TIME_COST": "1",
    "NEEDLECAST_ARGON2_MEMORY_COST": "8",
    "NEEDLECAST_ARGON2_PARALLELISM": "1",
    spamcheck.SCORES_DIR_ENV: os.environ.get(spamcheck.SCORES_DIR_ENV) or _run_spam_scores(),
}
for _variable, _value in SUITE_ENVIRONMENT.items():
    os.environ.setdefault(_variable, _value)


# A request a test makes with httpx's module functions waits up to 60 s for its answer (httpx's default is 5 s):
# on a loaded machine an answer can take longer than 5 s, and a slow answer is not what any test is about. A
# test about time-outs passes its own. (The suite's clients, `console_site`, are made with the same 60 s.)
PATIENT_SECONDS = 60.0


# Every httpx client of a test process (the tests' own and the product's, in the process) shares one TLS context:
# httpx otherwise builds a new one for each client, loading certifi's CA bundle (about 22 ms of CPU, on a quiet
# machine), though the suite speaks plain HTTP to loopback only; 1,300-odd clients a run spent half a minute of
# CPU on it. A client given its own `verify` keeps it.
SUITE_TLS = ssl.create_default_context(cafile=certifi.where())


def _patient(call: Any) -> Any:
    def with_timeout(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", PATIENT_SECONDS)
        kwargs.setdefault("verify", SUITE_TLS)
        return call(*args, **kwargs)

    return with_timeout


for _name in ("request", "get", "post", "put", "patch", "delete", "head", "options", "stream"):
    setattr(httpx, _name, _patient(getattr(httpx, _name)))


def _sharing_tls(init: Any) -> Any:
    def with_suite_tls(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("verify", SUITE_TLS)
        init(self, *args, **kwargs)

    return with_suite_tls


for _client in (httpx.Client, httpx.AsyncClient):
    setattr(_client, "__init__", _sharing_tls(_client.__init__))  # noqa: B010

# uvicorn closes a connection idle for 5 s (its default keep-alive). A test's client that waits longer than that
# between two requests (a CLI command or a send in between, on a loaded machine) may send its next request on the
# connection at the moment uvicorn closes it, and get "Server disconnected without sending a response": a race
# of keep-alive, not of the app (httpx does not resend a POST). The suite's servers keep an idle connection for
# an hour; the product's keep their own setting (`cli/service.py` sets it), which this leaves alone.
_uvicorn_config_init = uvicorn.Config.__init__


def _keeping_connections(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
    kwargs.setdefault("timeout_keep_alive", 3600)
    _uvicorn_config_init(self, *args, **kwargs)


setattr(uvicorn.Config, "__init__", _keeping_connections)  # noqa: B010

# The modules whose tests take tens of seconds each (processes of their own, the whole API fuzzed, benchmarks at a
# small size, every route walked), run first: pytest-xdist hands the tests out to its workers in turn, so the
# longest start first and the workers finish together, instead of one running a long test alone at the end.
SLOW_FIRST = (
    "test_fleet.py",
    "test_bench_smoke.py",
    "test_api_fuzz.py",
    "test_demo.py",
    "test_not_found.py",
    "test_page_words.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Before the workers start (the controller only): needlecast's modules compiled to bytecode once, rather
    than by each worker at once as they all import it (tests/bytecode.py: what else the suite imports is
    compiled by the first process to import it)."""
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(REPO / "needlecast", quiet=1)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (the README's test command): three workers for every two cores (at least two, at most eight).
    The suite waits on its servers, browsers, PostgreSQL and sender processes for part of its time, so one worker
    per core left a core idle; two per core kept both busy but spent about a tenth more CPU in all on the
    contention, for a longer run on this kind of machine (BENCHMARKS.md, "The test suite").
    `PYTEST_XDIST_AUTO_NUM_WORKERS` still decides when set."""
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").strip()
    if chosen:
        return int(chosen)
    return min(max(2, (3 * len(os.sched_getaffinity(0)) + 1) // 2), 8)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in SLOW_FIRST)  # stable: the order within each part is kept


@pytest.fixture(autouse=True)
def kept_figures_in_line(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The web app's kept figures (`readmodels.kept.KEPT`) worked out in the asking thread (of this process) and
    nothing warmed when an app starts: a page then always shows the figures of its moment (as before figures
    were kept off the request), whatever ran before. tests/test_kept_figures.py checks the background
    behaviour itself, tests/test_kept_processes.py the other process."""
    from needlecast.readmodels import kept, warm
    from needlecast.readmodels.kept import KEPT, run_inline

    KEPT.clear()
    monkeypatch.setattr(KEPT, "run_later", run_inline)
    monkeypatch.setattr(kept, "WORKERS", 0)  # in this process (tests/test_kept_processes.py: in another)
    monkeypatch.setattr(warm, "ON_START", False)
    yield
    KEPT.clear()


@pytest.fixture()
def workspace_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace in a temp folder, configured like the repository's demo clinic."""
    root = make_workspace(tmp_path / "ws")
    monkeypatch.delenv("NEEDLECAST_WORKSPACE", raising=False)
    monkeypatch.delenv("NEEDLECAST_DATABASE_URL", raising=False)
    monkeypatch.delenv("NEEDLECAST_SECRET", raising=False)
    return root


@pytest.fixture()
def workspace(workspace_dir: Path) -> Workspace:
    return open_workspace(workspace_dir)


def postgres_url() -> str | None:
    return os.environ.get("NEEDLECAST_TEST_POSTGRES_URL") or None


PG_SKIP = (
    "NEEDLECAST_TEST_POSTGRES_URL is not set: the PostgreSQL run of the store contract suite "
    "needs a server (.ci/run sets it to the local one)"
)


_TEMPLATES: dict[str, str] = {}  # database kind -> a store migrated once per session (a file, or a database)
_REUSED = ReusedDatabases()  # PostgreSQL test databases emptied for the next test (tests/postgres_reuse.py)


def sqlite_template() -> Path:
    """A SQLite store at the newest schema, made once per session: each test copies it (0.3 ms) instead of
    running every migration (100-200 ms)."""
    if "sqlite" not in _TEMPLATES:
        path = Path(tempfile.mkdtemp(prefix="needlecast-template-")) / "template.db"
        open_store(f"sqlite:///{path}").dispose()
        _TEMPLATES["sqlite"] = str(path)
    return Path(_TEMPLATES["sqlite"])


def _admin(base: str) -> Engine:
    return create_engine(base, isolation_level="AUTOCOMMIT")


def _postgres_template(base: str) -> str:
    """A database at the newest schema, made once per session (and dropped at its end): each test's database
    is created from it (`CREATE DATABASE ... TEMPLATE`) instead of running every migration."""
    if "postgres" not in _TEMPLATES:
        name = f"needlecast_template_{os.getpid()}"
        admin = _admin(base)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        open_store(url).dispose()
        admin.dispose()
        _REUSED.know_template(url)
        _TEMPLATES["postgres"] = name

        def drop() -> None:
            with contextlib.suppress(Exception), _admin(base).connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

        atexit.register(drop)
    return _TEMPLATES["postgres"]


class _Dropper:
    """Drops the tests' PostgreSQL databases in a thread of its own, one after another, while the next tests run.

    Why: PostgreSQL 15's DROP DATABASE forces an immediate checkpoint on the server, 0.2 s on a quiet machine
    and seconds on a busy one, and no test needs to wait for it (each database has a name of its own, and
    FORCE ends any connection left on it). `drain()` waits for every drop asked so far (at the session's end)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.failures: list[str] = []

    def drop(self, base: str, name: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="drop-test-databases", daemon=True)
            self._thread.start()
        self._queue.put((base, name))

    def drain(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        admins: dict[str, Engine] = {}
        while (job := self._queue.get()) is not None:
            base, name = job
            try:
                admin = admins.setdefault(base, _admin(base))
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as err:  # a database left behind is reported, not a test's failure
                self.failures.append(f"{name}: {err}")
        for admin in admins.values():
            admin.dispose()


_DROPPER = _Dropper()


def pytest_sessionfinish(session: pytest.Session) -> None:
    base = postgres_url()
    while base and (name := _REUSED.take()) is not None:
        _DROPPER.drop(base, name)
    _DROPPER.drain()
    if _DROPPER.failures:
        print("test databases not dropped:\n  " + "\n  ".join(_DROPPER.failures), file=sys.stderr)


@contextlib.contextmanager
def empty_store(kind: str, folder: Path, *, migrated: bool = True) -> Iterator[str]:
    """The URL of a store with no data: a SQLite file in `folder`, or a database of its own on the PostgreSQL
    server (dropped afterwards, by a thread of its own), at the newest schema (copied from a template made once
    per session), or with no tables at all when not `migrated`. Skips the test when PostgreSQL is asked for and
    not configured."""
    if kind == "sqlite":
        if migrated:
            shutil.copy(sqlite_template(), folder / "store.db")
        yield f"sqlite:///{folder / 'store.db'}"
        return
    base = postgres_url()
    if not base:
        pytest.skip(PG_SKIP)
    name = (_postgres_template(base) and _REUSED.take()) if migrated else None
    if name is None:
        name = f"t_{uuid.uuid4().hex[:12]}"
        template = f' TEMPLATE "{_postgres_template(base)}"' if migrated else ""
        admin = _admin(base)
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{template}'))
        admin.dispose()
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = _admin(base)
        try:
            _end_connections(admin, name)
            # Emptied for the next test when it is as the template left it (tests/postgres_reuse.py), else
            # dropped while the next tests run (see _Dropper).
            dropped = _REUSED.give_back(admin, base, name) if migrated else name
        finally:
            admin.dispose()
        if dropped is not None:
            _DROPPER.drop(base, dropped)


def _end_connections(admin: Engine, name: str) -> None:
    """End every connection still open on the test's database, at once, and wait (up to 10 s) until they have
    ended. The connections that engines a test left behind (until the garbage collector closes their pools) would
    otherwise hold their slots: enough of them used up the server's 100 and failed the next tests ("too many
    clients already"); and a database is reused only once nobody is connected to it (tests/postgres_reuse.py)."""
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = :name"),
            {"name": name},
        )


STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


DATABASE_INDEPENDENT = "database_independent"  # the marker: see the module docstring


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that takes `store_url` or `blank_store_url` (itself or through another fixture) runs on both
    databases, unless it (or its module) is marked `database_independent`: then on SQLite alone."""
    independent = metafunc.definition.get_closest_marker(DATABASE_INDEPENDENT) is not None
    for name in ("store_url", "blank_store_url"):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, ["sqlite"] if independent else STORES, indirect=True)


@pytest.fixture()
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for an empty store on each database in turn (SQLite alone for a test marked
    `database_independent`).

    The contract suites take this fixture, so each of their tests runs on both databases.
    """
    with empty_store(request.param, tmp_path) as url:
        yield url


@pytest.fixture()
def blank_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Like `store_url`, but a store without any table (for tests of creating or upgrading a store)."""
    with empty_store(request.param, tmp_path, migrated=False) as url:
        yield url


def make_workspace(root: Path) -> Path:
    """A fresh workspace at `root`, configured like the repository's demo clinic. Its own store (the SQLite file
    of its state folder, used when NEEDLECAST_DATABASE_URL is not set) is a copy of the session's migrated template,
    as `needlecast init` and the first command would leave it, without running every migration again."""
    init_workspace(root)
    (root / STATE_DIR).mkdir(exist_ok=True)
    shutil.copy(sqlite_template(), root / STATE_DIR / "needlecast.db")
    shutil.copy(REPO / "needlecast.toml", root / "needlecast.toml")
    # `init` gives the sample campaigns as drafts without a sign-off; the demo clinic's are live and signed.
    for campaign in (REPO / "campaigns").glob("*.yaml"):
        shutil.copy(campaign, root / "campaigns" / campaign.name)
    return root


@pytest.fixture()
def engine(store_url: str) -> Iterator[Engine]:
    store = open_store(store_url)
    yield store
    store.dispose()


@pytest.fixture()
def vocabulary() -> Vocabulary:
    return load_vocabulary(REPO / "content" / "vocabulary.yaml")


@pytest.fixture()
def sink() -> Iterator[SendGridSink]:
    """The loopback SendGrid sink, taking the key the sending tests use (`tests.test_runner.API_KEY`)."""
    with SendGridSink(api_key="SG.runner-test") as running:
        yield running


@pytest.fixture(scope="session", autouse=True)
def session_spamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One `spamd` for the session (for each pytest-xdist worker), loading SpamAssassin's rules once: every
    lint, plan and sign-off check then scores in a fraction of a second instead of seconds per call. Started in
    the background; until it answers, `needlecast.spamcheck` runs the `spamassassin` program, with the same
    scores (tests/test_spamcheck_daemon.py). Set in the environment, so the processes the tests start use it too."""
    if os.environ.get(spamcheck.SPAMD_SOCKET_ENV) or shutil.which("spamd") is None:
        yield
        return
    home = tmp_path_factory.mktemp("spamd")
    path = str(home / "spamd.sock")
    process = subprocess.Popen(
        spamcheck.spamd_command(path, str(home)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(home / "spamd.log").open("ab"),
        start_new_session=True,  # its own process group: spamd and the children it forks end together
    )
    os.environ[spamcheck.SPAMD_SOCKET_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(spamcheck.SPAMD_SOCKET_ENV, None)
        # Killed, not asked to stop: it keeps nothing, and while it still loads its rules it ignores SIGTERM (a
        # short session waited 30 s for it at its end).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def chromium() -> Iterator[SessionChromium]:
    """The one Chromium of the session (each browser test gets contexts of its own from it: `browser`)."""
    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    session = SessionChromium()
    yield session
    session.stop()


@pytest.fixture()
def browser(chromium: SessionChromium) -> Iterator[GuardedBrowser]:
    """The session's Chromium for one test: new contexts run under the pages' own CSP; at teardown they close
    and the test fails on any console error, uncaught error or CSP violation of any page it opened."""
    with guarded(chromium.browser()) as running:
        yield running
