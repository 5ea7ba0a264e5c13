"""The store busy or unreachable (a server full of connections, down or restarting; SQLite locked) is not a
defect of the request: the console, the API and the public pages answer 503 with Retry-After and words that say
to try again, over real HTTP; nothing personal is logged. When the store answers again, so do the pages."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from needlecast.web.common import database_unavailable
from tests.console_site import ConsoleSite, site

pytestmark = pytest.mark.database_independent
SIGNUP = {"email": "Nia.Lead@Example.org", "first_name": "Nia", "marketing_consent": "yes", "form": "website"}


@pytest.fixture()
def web(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    with site(workspace_dir, store_url) as running:
        yield running


def _refuse_connections(web: ConsoleSite) -> Any:
    """From now on every new connection to the store fails as a full or stopped server's does."""

    def refuse(*_args: Any) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    web.engine.dispose()  # no pooled connection left: the next request connects anew
    event.listen(web.engine, "do_connect", refuse)
    return refuse


def test_an_unreachable_store_is_a_503_with_retry_after_on_every_face_and_then_it_answers_again(
    web: ConsoleSite, caplog: pytest.LogCaptureFixture
) -> None:
    console = web.login("marketer")
    api = web.api(web.key())
    refuse = _refuse_connections(web)

    page = console.get("/console/campaigns")
    assert page.status_code == 503 and page.headers["retry-after"] == "5"
    assert "busy or cannot be reached just now" in page.text and "Traceback" not in page.text
    answer = api.get("/contacts")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["error"]["code"] == "unavailable"
    signup = httpx.post(f"{web.url}/subscribe", data=SIGNUP)  # a lead signing up on the clinic's website
    assert signup.status_code == 503 and signup.headers["retry-after"] == "5", signup.text
    assert "busy or cannot be reached just now" in signup.text and "Nia" not in caplog.text
    assert "unhandled" not in caplog.text  # a 503, not a defect: logged as a warning naming only the error kind
    assert "database unavailable: OperationalError" in caplog.text

    event.remove(web.engine, "do_connect", refuse)
    assert console.get("/console/campaigns").status_code == 200
    assert api.get("/contacts").status_code == 200
    assert httpx.post(f"{web.url}/subscribe", data=SIGNUP).status_code == 200  # nothing was lost: it can be sent again


def test_a_mistake_in_a_statement_is_a_defect_not_an_unavailable_database() -> None:
    def wrapped(error: Exception) -> OperationalError:
        return OperationalError("SELECT ...", {}, error)

    assert database_unavailable(wrapped(sqlite3.OperationalError("database is locked")))
    assert database_unavailable(wrapped(sqlite3.OperationalError("unable to open database file")))
    assert not database_unavailable(wrapped(sqlite3.OperationalError("no such table: contacts")))
    assert not database_unavailable(ValueError("a bug"))
