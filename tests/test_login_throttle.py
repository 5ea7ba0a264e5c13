"""The log-in throttle, on SQLite and PostgreSQL: concurrent guesses over real HTTP (uvicorn on loopback)
never reach the password check more often than the limit; strangers failing from other addresses never
lock the real user out; an account is paced, never locked; log-ins, failures and log-outs are audited
without any address a stranger typed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from needlecast.accounts import throttle, users
from needlecast.accounts.audit import entries
from needlecast.errors import Throttled
from needlecast.store.engine import open_store
from tests.console_site import PASSWORD, ConsoleSite, csrf_of, email_of, site


class CountingHasher(PasswordHasher):
    """argon2id with light parameters (these tests are about how often it runs, not what it costs),
    counting how many passwords it actually checked."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.checks = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.checks += 1
        return super().verify(hash, password)


@pytest.fixture()
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher()
    monkeypatch.setattr(users, "password_hasher", lambda: counting)
    return counting


@pytest.fixture()
def console(
    workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, hasher: CountingHasher
) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    with site(workspace_dir, store_url, import_sample=False) as running:
        yield running


def login_form(console: ConsoleSite, address: str) -> tuple[httpx.Client, str]:
    """A client seen as coming from `address` (uvicorn trusts X-Forwarded-For from loopback, as from a
    proxy), holding the log-in form's cookie, and the form's CSRF token."""
    client = console.client()
    client.headers["X-Forwarded-For"] = address
    return client, csrf_of(client.get("/console/login").text)


def post_login(client: httpx.Client, csrf: str, email: str, password: str) -> httpx.Response:
    return client.post("/console/login", data={"csrf": csrf, "email": email, "password": password, "next": ""})


def test_concurrent_wrong_passwords_from_one_address_reach_the_password_check_at_most_the_limit(
    console: ConsoleSite, hasher: CountingHasher
) -> None:
    hasher.checks = 0
    limit = console.workspace.settings.console.login_refuse_after
    forms = [login_form(console, "203.0.113.9") for _ in range(80)]
    barrier = threading.Barrier(len(forms))
    statuses: list[int] = []
    lock = threading.Lock()

    def guess(n: int) -> None:
        client, csrf = forms[n]
        barrier.wait()
        status = post_login(client, csrf, email_of("admin"), f"wrong guess number {n}").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(len(forms))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [401, 429], statuses
    assert hasher.checks == statuses.count(401) <= limit
    assert statuses.count(401) == limit  # and the throttle is not over-eager: exactly the limit got through


def test_strangers_failing_from_other_addresses_never_stop_the_real_user_logging_in(console: ConsoleSite) -> None:
    own = "198.51.100.7"
    client, csrf = login_form(console, own)
    assert post_login(client, csrf, email_of("admin"), PASSWORD).status_code == 303  # their usual address
    for stranger in range(20):  # 40 failures from 20 addresses: more than any limit
        attacker, csrf = login_form(console, f"203.0.113.{stranger + 1}")
        for attempt in range(2):
            assert post_login(attacker, csrf, email_of("admin"), f"guess {attempt}").status_code in (401, 429)
    client, csrf = login_form(console, own)
    assert post_login(client, csrf, email_of("admin"), PASSWORD).status_code == 303


def test_a_throttled_log_in_says_how_long_to_wait_and_the_right_password_waits_too(console: ConsoleSite) -> None:
    limit = console.workspace.settings.console.login_refuse_after
    client, csrf = login_form(console, "203.0.113.50")
    for attempt in range(limit):
        assert post_login(client, csrf, email_of("analyst"), f"wrong {attempt}").status_code == 401
    refused = post_login(client, csrf, email_of("analyst"), PASSWORD)
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 15 * 60
    assert "try again in about 15 minutes" in refused.text
    elsewhere, csrf = login_form(console, "198.51.100.20")  # the account itself is not locked
    assert post_login(elsewhere, csrf, email_of("analyst"), PASSWORD).status_code == 303


def test_log_ins_failures_and_log_outs_are_audited_without_the_typed_address(console: ConsoleSite) -> None:
    client, csrf = login_form(console, "198.51.100.30")
    assert post_login(client, csrf, "stranger.typed@example.org", "some password here").status_code == 401
    assert post_login(client, csrf, email_of("marketer"), "not the password").status_code == 401
    assert post_login(client, csrf, email_of("marketer"), PASSWORD).status_code == 303
    assert client.post("/console/logout", data={"csrf": csrf_of(client.get("/console/").text)}).status_code == 303
    with console.engine.connect() as conn:
        marketer = users.account_id(conn, email_of("marketer"))
        found = [e for e in entries(conn, action="session.")][::-1]
    assert [(e["action"], e["target"]) for e in found] == [
        ("session.login_failed", "user:unknown"),
        ("session.login_failed", f"user:#{marketer}"),
        ("session.logged_in", f"user:#{marketer}"),
        ("session.logged_out", f"user:#{marketer}"),
    ]
    assert found[0]["actor_kind"] == "anonymous" and found[0]["actor"] == "log-in form"
    assert len({e["detail"].get("source") for e in found[:3]}) == 1  # one address, one source, not the address
    shown = repr(found)
    assert "stranger.typed" not in shown and "198.51.100.30" not in shown and "password" not in shown


# -- the rule itself, with a clock the test moves (both databases) ---------------------------------------

POLICY = throttle.Policy(refuse_after=10, address_refuse_after=30, slow_after=3, slow_seconds=1.0, slow_max_seconds=8)


def admit(engine: Any, keys: throttle.Keys, now: float) -> throttle.Ticket | float:
    """The ticket, or the seconds to wait when refused."""
    try:
        with engine.begin() as conn:
            return throttle.admit(conn, keys, now, POLICY)
    except Throttled as err:
        return err.retry_after


def test_an_account_is_paced_from_new_addresses_never_locked_and_its_known_address_is_not_paced(
    store_url: str,
) -> None:
    engine = open_store(store_url)
    secret = b"k" * 32
    home = throttle.keys_for(secret, "admin@clinic.example", "198.51.100.7")
    ticket = admit(engine, home, 1000.0)
    assert isinstance(ticket, throttle.Ticket) and not ticket.known
    with engine.begin() as conn:
        throttle.succeeded(conn, ticket, 1000.0, POLICY)
    now, waits, admitted = 2000.0, [], 0
    for stranger in range(200):  # one attempt a second from a new address each time, for 200 seconds
        outcome = admit(engine, throttle.keys_for(secret, "admin@clinic.example", f"203.0.113.{stranger}"), now)
        if isinstance(outcome, throttle.Ticket):
            admitted += 1
        else:
            waits.append(outcome)
        if stranger % 20 == 0:  # the real user, from home, logs in whenever they like
            again = admit(engine, home, now)
            assert isinstance(again, throttle.Ticket) and again.known
            with engine.begin() as conn:
                throttle.succeeded(conn, again, now, POLICY)
        now += 1.0
    assert 3 < admitted < 40  # slowed: the first 3 at once, then one per pause (1, 2, 4, 8, 8, ... seconds)
    assert waits and max(waits) <= POLICY.slow_max_seconds  # and never made to wait longer than the cap
    later = admit(engine, throttle.keys_for(secret, "admin@clinic.example", "192.0.2.1"), now + 15 * 60)
    assert isinstance(later, throttle.Ticket)  # 15 quiet minutes: the pace starts over
    engine.dispose()
