"""The console password hash's cost: argon2-cffi's own defaults in production (no setting), the environment's
NEEDLECAST_ARGON2_* values when set (the suite sets a cheap cost in conftest.py); a hash made at one cost
still verifies after the cost changes and is rehashed at the new one on log-in; a bad value is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from needlecast.accounts import users
from needlecast.config import PASSWORD_COST_VARIABLES, open_workspace, password_hash_cost
from needlecast.errors import AuthenticationFailed, ConfigurationError
from needlecast.store.engine import open_store
from needlecast.store.schema import users as users_table
from tests.conftest import empty_store

PASSWORD = "a long enough test password"


def _parameters(hasher: PasswordHasher) -> tuple[object, ...]:
    return (hasher.time_cost, hasher.memory_cost, hasher.parallelism, hasher.hash_len, hasher.salt_len, hasher.type)


def _set_cost(monkeypatch: pytest.MonkeyPatch, **cost: int) -> None:
    for name, variable in PASSWORD_COST_VARIABLES.items():
        if name in cost:
            monkeypatch.setenv(variable, str(cost[name]))
        else:
            monkeypatch.delenv(variable, raising=False)


def test_with_no_setting_the_hasher_is_argon2_cffis_own_default(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_cost(monkeypatch)
    assert password_hash_cost() == ()
    assert _parameters(users.password_hasher()) == _parameters(PasswordHasher())
    # What a production hash carries in its text: the library's defaults, not the suite's cheap cost.
    default = PasswordHasher()
    encoded = users.password_hasher().hash(PASSWORD)
    assert f"m={default.memory_cost},t={default.time_cost},p={default.parallelism}$" in encoded


def test_the_environment_sets_each_parameter_and_leaves_the_others_at_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set_cost(monkeypatch, time_cost=1, memory_cost=64, parallelism=2)
    hasher = users.password_hasher()
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (1, 64, 2)
    assert "$m=64,t=1,p=2$" in hasher.hash(PASSWORD)
    _set_cost(monkeypatch, time_cost=2)
    default = PasswordHasher()
    hasher = users.password_hasher()
    assert (hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (2, default.memory_cost, default.parallelism)


@pytest.mark.parametrize(
    ("cost", "named"),
    [
        ({"time_cost": "0"}, "NEEDLECAST_ARGON2_TIME_COST"),
        ({"time_cost": "-1"}, "NEEDLECAST_ARGON2_TIME_COST"),
        ({"memory_cost": "lots"}, "NEEDLECAST_ARGON2_MEMORY_COST"),
        ({"parallelism": "²"}, "NEEDLECAST_ARGON2_PARALLELISM"),
        ({"time_cost": str(2**32)}, "NEEDLECAST_ARGON2_TIME_COST"),
        ({"memory_cost": "16", "parallelism": "4"}, "NEEDLECAST_ARGON2_MEMORY_COST"),  # under 8 KiB per lane
    ],
)
def test_a_bad_value_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, cost: dict[str, str], named: str
) -> None:
    for name, variable in PASSWORD_COST_VARIABLES.items():
        monkeypatch.delenv(variable, raising=False)
        if name in cost:
            monkeypatch.setenv(variable, cost[name])
    with pytest.raises(ConfigurationError, match=named):
        password_hash_cost()
    with pytest.raises(ConfigurationError, match=named):
        users.password_hasher()


def _stored_hash(engine: object, email: str) -> str:
    with engine.begin() as conn:  # type: ignore[attr-defined]
        return str(conn.execute(select(users_table.c.password_hash).where(users_table.c.email == email)).scalar())


def test_a_hash_made_at_one_cost_verifies_after_the_cost_changes_and_is_rehashed_at_log_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with empty_store("sqlite", tmp_path) as url:
        engine = open_store(url)
        _set_cost(monkeypatch, time_cost=1, memory_cost=8, parallelism=1)
        with engine.begin() as conn:
            users.add_user(conn, "ana@clinic.example", "admin", PASSWORD)
        assert "$m=8,t=1,p=1$" in _stored_hash(engine, "ana@clinic.example")

        _set_cost(monkeypatch, time_cost=2, memory_cost=16, parallelism=1)
        with engine.begin() as conn, pytest.raises(AuthenticationFailed):
            users.authenticate(conn, "ana@clinic.example", "not the password at all")
        assert "$m=8,t=1,p=1$" in _stored_hash(engine, "ana@clinic.example")  # a failed log-in changes nothing
        with engine.begin() as conn:
            actor = users.authenticate(conn, "ana@clinic.example", PASSWORD)
        assert actor.name == "ana@clinic.example"
        rehashed = _stored_hash(engine, "ana@clinic.example")
        assert "$m=16,t=2,p=1$" in rehashed
        assert users.password_hasher().verify(rehashed, PASSWORD)

        _set_cost(monkeypatch)  # back to the library's defaults: the cheap hash still verifies
        with engine.begin() as conn:
            assert users.authenticate(conn, "ana@clinic.example", PASSWORD).name == "ana@clinic.example"
        engine.dispose()


def test_an_unknown_address_is_checked_against_a_dummy_hash_at_the_current_cost(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No timing tells which accounts exist: the dummy hash follows the cost, as real accounts' hashes do."""
    checked: list[str] = []

    class Recording(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            checked.append(str(hash))
            return super().verify(hash, password)

    recording = Recording(time_cost=1, memory_cost=32, parallelism=1)
    monkeypatch.setattr(users, "password_hasher", lambda: recording)
    with empty_store("sqlite", tmp_path) as url:
        engine = open_store(url)
        with engine.begin() as conn, pytest.raises(AuthenticationFailed):
            users.authenticate(conn, "nobody@clinic.example", PASSWORD)
        engine.dispose()
    assert len(checked) == 1 and "$m=32,t=1,p=1$" in checked[0]


def test_a_bad_cost_stops_loading_the_settings_so_no_command_or_server_starts(
    monkeypatch: pytest.MonkeyPatch, workspace_dir: Path
) -> None:
    monkeypatch.setenv("NEEDLECAST_ARGON2_MEMORY_COST", "not a number")
    with pytest.raises(ConfigurationError, match="NEEDLECAST_ARGON2_MEMORY_COST"):
        open_workspace(workspace_dir)
    monkeypatch.setenv("NEEDLECAST_ARGON2_MEMORY_COST", "8")
    assert open_workspace(workspace_dir).root == workspace_dir
