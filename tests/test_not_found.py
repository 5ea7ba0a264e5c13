"""No 500 from an unknown or hostile id, over real HTTP (uvicorn on loopback) on SQLite and PostgreSQL.

A console route whose object is missing answers the console's 404 page (what was not found, in words, and a
link back to its list); an API route, its JSON error naming the field. The routes are enumerated from the app
itself, so a route added later is covered without editing this file.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select
from starlette.routing import BaseRoute, Mount, Route

from needlecast.accounts import audit
from needlecast.accounts.roles import cli_actor
from needlecast.accounts.users import find_user
from needlecast.actions import contacts as contacts_actions
from needlecast.audience.profile import contact_profile_by_id
from needlecast.store.schema import contacts
from needlecast.web.app import create_app
from tests.console_site import ConsoleSite, csrf_of, email_of, site


@pytest.fixture()
def web(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, store_url) as running:
        yield running


def _contact_ids(web: ConsoleSite) -> list[int]:
    with web.engine.connect() as conn:
        return [int(i) for i in conn.execute(select(contacts.c.id).order_by(contacts.c.id).limit(2)).scalars()]


def _erase(web: ConsoleSite, contact_id: int) -> None:
    with web.engine.connect() as conn:
        address = contact_profile_by_id(conn, contact_id, unmasked=True).email
    contacts_actions.erase_contact(web.engine, cli_actor(), address)


def _notice(page: httpx.Response) -> str:
    found = re.search(r'<p class="notice bad" role="alert">(.*?)</p>', page.text)
    assert found, page.text[:500]
    return found.group(1).replace("&#34;", '"').replace("&#39;", "'")


# The list each 404 links back to -> the words of its link: the text says where the link goes.
LABELS = {
    "/console/": "the home page",
    "/console/campaigns": "the campaigns",
    "/console/contacts": "the contacts",
    "/console/reports": "the send reports",
    "/console/audiences": "the audiences",
    "/console/templates": "the email templates",
}


# -- the console's 404 page ------------------------------------------------------------------------------------


def test_a_missing_or_hostile_id_in_the_console_gets_the_404_page_saying_what_with_a_link_to_its_list(
    web: ConsoleSite,
) -> None:
    client = web.login("admin")
    erased = _contact_ids(web)[1]
    _erase(web, erased)
    cases = [  # path, words on the page, the list it links back to
        ("/console/contacts/99999", "There is no contact #99999", "/console/contacts"),
        ("/console/contacts/abc", "There is no contact #abc", "/console/contacts"),
        ("/console/contacts/99999999999999999999999", "There is no contact", "/console/contacts"),
        (f"/console/contacts/{erased}", f"There is no contact #{erased}", "/console/contacts"),
        ("/console/contacts/1_0", "There is no contact #1_0", "/console/contacts"),
        (f"/console/contacts/{erased}/confirm/erase", f"There is no contact #{erased}", "/console/contacts"),
        ("/console/campaigns/nope", "There is no campaign “nope”", "/console/campaigns"),
        ("/console/campaigns/nope/edit", "There is no campaign “nope”", "/console/campaigns"),
        (
            "/console/campaigns/spring-guide/confirm/bogus",
            "There is nothing called “bogus” to do here",
            "/console/campaigns",
        ),
        ("/console/campaigns/spring-guide/preview?step=zzz", "This campaign has no email “zzz”", "/console/campaigns"),
        ("/console/reports/nope", "There is no campaign “nope”", "/console/reports"),
        ("/console/reports/nope/report.csv", "There is no campaign “nope”", "/console/reports"),
        ("/console/reports/spring-guide/report.exe", "cannot be downloaded as “exe”", "/console/reports"),
        ("/console/imports/nope", "This import is not known here", "/console/audiences"),
        ("/console/imports/nope/rejects.csv", "This import is not known here", "/console/audiences"),
        ("/console/templates/%2fetc%2fpasswd", "There is no email template “/etc/passwd”", "/console/templates"),
        ("/console/templates/..%2fneedlecast.toml", "There is no email template", "/console/templates"),
        ("/console/no/such/page", "There is no page at this address", "/console/"),
    ]
    for path, words, back in cases:
        page = client.get(path)
        assert page.status_code == 404, (path, page.status_code, page.text[:300])
        assert page.headers["content-type"].startswith("text/html")
        assert words in _notice(page), (path, _notice(page))
        assert f'<a class="button" href="{back}">Back to {LABELS[back]}</a>' in page.text, path
        assert 'href="/console/static/console.css"' in page.text and "Log out" in page.text  # the console's look
        assert "needlecast.toml" not in _notice(page) or "..%2f" in path  # no file of ours named, only what was asked
        assert "Traceback" not in page.text and "campaigns/" not in _notice(page)


@pytest.mark.database_independent
def test_a_bug_behind_a_console_page_is_the_consoles_whole_500_page_naming_nothing(
    web: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug that mentions quinn.1@example.org")

    client = web.login("admin")
    monkeypatch.setattr(audit, "entries", broken)
    page = client.get("/console/audit")
    assert page.status_code == 500
    assert "Something went wrong on our side" in page.text and "/console/static/console.css" in page.text
    assert "RuntimeError" not in page.text and "quinn" not in page.text


@pytest.mark.database_independent
def test_an_anonymous_request_for_a_missing_id_is_sent_to_log_in_first(web: ConsoleSite) -> None:
    page = web.client().get("/console/contacts/99999")
    assert page.status_code == 303 and "/console/login" in page.headers["location"]


@pytest.mark.database_independent
def test_a_console_page_asked_with_a_method_it_does_not_take_is_405_naming_every_method_it_does(
    web: ConsoleSite,
) -> None:
    client = web.login("admin")
    answer = client.put("/console/campaigns/spring-guide/edit")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD, POST"  # the form's page and its post are two routes
    assert client.get("/console/campaigns/spring-guide/test-send").headers["allow"] == "POST"


@pytest.mark.database_independent
def test_an_upload_named_dot_dot_is_refused_with_400_and_nothing_is_written(web: ConsoleSite) -> None:
    client = web.login("admin")
    token = csrf_of(client.get("/console/audiences").text)
    uploads = web.workspace.state_dir / "uploads"
    before = sorted(uploads.rglob("*")) if uploads.exists() else []
    for name in ("..", "a/..", "."):
        answer = client.post(
            "/console/audiences/import",
            data={"csrf": token, "list": ""},
            files={"file": (name, b"email\nx@example.org\n", "text/csv")},
        )
        assert answer.status_code == 400, (name, answer.status_code, answer.text[:300])
        assert "cannot be used. Rename the file" in answer.text
    assert (sorted(uploads.rglob("*")) if uploads.exists() else []) == before


# -- every route, enumerated from the app -------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # with {name} for each parameter
    convertors: dict[str, str]  # parameter -> its convertor: string, integer or path


def _endpoints(routes: list[BaseRoute], prefix: str = "") -> list[Endpoint]:
    found: list[Endpoint] = []
    for route in routes:
        if isinstance(route, Mount):
            found += _endpoints(list(route.routes), prefix + route.path)
        elif isinstance(route, Route) and route.param_convertors:  # FastAPI's APIRoute is a Route too
            kinds = {
                name: type(c).__name__.removesuffix("Convertor").lower() for name, c in route.param_convertors.items()
            }
            found += [
                Endpoint(m, prefix + route.path_format, kinds) for m in sorted(route.methods or ()) if m != "HEAD"
            ]
    return found


# What each parameter names, by its name; a "foreign" id is an existing one of another kind.
KIND_OF = {
    "contact": "contact",
    "contact_id": "contact",
    "campaign": "campaign",
    "campaign_id": "campaign",
    "name": "template",
    "job": "import",
    "user": "user",
    "action": "action",
    "kind": "download",
    "article": "article",
    "slug": "section",
    "segment": "segment",
    "node": "node",
}
MISSING = {"integer": "99999999", "string": "no-such-thing", "path": "no/such/thing"}
MALFORMED = ["abc", "-1", "9" * 25, "1_0", "../../needlecast.toml", "\x00é%" + "x" * 300]


def _existing(web: ConsoleSite) -> dict[str, str]:
    with web.engine.connect() as conn:
        user = find_user(conn, email_of("analyst"))["id"]
    return {
        "contact": str(_contact_ids(web)[0]),
        "campaign": "spring-guide",
        "template": "emails/welcome",
        "user": str(user),
        "action": "pause",
        "download": "csv",
        "import": "no-import-yet",
        "article": "microneedling",
        "section": "safe-for-all-skin-types",
        "segment": "acne",
        "node": "welcome",  # a step of the sample sequence, new-lead-nurture
    }


def _url(endpoint: Endpoint, values: dict[str, str]) -> str:
    path = endpoint.path
    for name, value in values.items():
        safe = "/" if endpoint.convertors[name] == "path" else ""
        path = path.replace("{" + name + "}", quote(value, safe=safe))
    return path


def _walk(web: ConsoleSite, groups: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """Every console and API route with parameters, each parameter in turn given each value of `groups`
    ("missing", "malformed", "foreign"), the others an existing object of their kind: no answer is a 5xx, and a
    missing object's page is the 404 page (410 for a one-time link), an API lookup's a 404 naming the field.
    Returns what was asked and answered."""
    endpoints = [
        e
        for e in _endpoints(list(create_app(web.workspace, web.engine).routes))
        if e.path.startswith(("/console/", "/api/v1/"))
    ]
    assert len({e.path for e in endpoints if e.path.startswith("/api/")}) >= 5  # the enumeration finds the routes
    assert len({e.path for e in endpoints if e.path.startswith("/console/")}) >= 15
    existing = _existing(web)
    console = web.login("admin")
    csrf = csrf_of(console.get("/console/audiences").text)
    api = web.api(web.key())
    served: list[tuple[str, str, int]] = []
    for endpoint in endpoints:
        for name, convertor in endpoint.convertors.items():
            kind = KIND_OF.get(name, name)
            foreign = [value for other, value in existing.items() if other != kind]
            for group, values in (("missing", [MISSING[convertor]]), ("malformed", MALFORMED), ("foreign", foreign)):
                for value in values if group in groups else ():
                    others = {n: existing[KIND_OF.get(n, n)] for n in endpoint.convertors if n != name}
                    url = _url(endpoint, {**others, name: value})
                    if url.startswith("/api/v1/"):
                        answer = api.request(endpoint.method, url.removeprefix("/api/v1"), json={})
                    else:
                        data = {"csrf": csrf} if endpoint.method == "POST" else None
                        answer = console.request(endpoint.method, url, data=data)
                    served.append((endpoint.method, url, answer.status_code))
                    assert answer.status_code < 500, (endpoint.method, url, group, answer.text[:300])
                    if group == "missing" and endpoint.method == "GET" and url.startswith("/console/"):
                        # a one-time account link that does not open is gone, one answer whatever was wrong with it
                        expected = 410 if name == "token" else 404
                        assert answer.status_code == expected and "Back to" in answer.text, (url, answer.status_code)
                    if group == "missing" and endpoint.method == "GET" and url.startswith("/api/"):
                        assert answer.status_code == 404, (url, answer.text)
                        assert answer.json()["error"]["field"] == name, (url, answer.text)
    return served


def test_every_console_and_api_route_answers_a_missing_malformed_or_foreign_id_without_a_5xx(web: ConsoleSite) -> None:
    """The whole walk on SQLite; on PostgreSQL the values a database may choke on where another does not (missing
    and malformed: ids past 64 bits, negative, NUL and non-ASCII text, which PostgreSQL refuses and SQLite
    stores). An id of another kind ("foreign") is a face's answer, refused or not found before the store is
    asked differently (conftest's rule), so it is walked on SQLite alone."""
    if web.engine.dialect.name == "sqlite":
        assert len(_walk(web, ("missing", "malformed", "foreign"))) > 200
    else:
        assert len(_walk(web, ("missing", "malformed"))) > 100


# -- the API -----------------------------------------------------------------------------------------------------


def test_an_api_lookup_of_a_missing_thing_is_404_naming_the_field_that_named_it(web: ConsoleSite) -> None:
    api = web.api(web.key())
    for path, field in (
        ("/contacts/99999", "contact_id"),
        ("/campaigns/nope", "campaign_id"),
        ("/campaigns/nope/plan", "campaign_id"),
        ("/reports/nope", "campaign_id"),
    ):
        answer = api.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"] == {
            "code": "not_found",
            "message": answer.json()["error"]["message"],
            "field": field,
        }
    lookup = api.post("/contacts/lookup", json={"email": "nobody.here@example.org"})
    assert lookup.status_code == 404 and lookup.json()["error"]["field"] == "email"
    assert "nobody.here" not in lookup.text  # the address is not echoed


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_an_api_cursor_beyond_64_bits_or_with_trailing_bytes_is_422_naming_the_cursor(web: ConsoleSite) -> None:
    api = web.api(web.key())
    first = api.get("/contacts", params={"limit": 2}).json()
    good = first["next_cursor"]
    assert api.get("/contacts", params={"limit": 2, "cursor": good}).status_code == 200
    after = int.from_bytes(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)), "big")
    hostile = [
        _b64((2**64 + 5).to_bytes(9, "big")),  # an integer beyond 64 bits
        _b64((2**63).to_bytes(8, "big")),  # beyond what an id column holds
        _b64(after.to_bytes(8, "big") + b"\x00"),  # trailing bytes
        _b64(b"99999999999999999999999"),  # the old decimal form, far beyond 64 bits
        _b64(b"12\n"),
        "!!",
    ]
    for cursor in hostile:
        answer = api.get("/contacts", params={"cursor": cursor})
        assert answer.status_code == 422, (cursor, answer.text)
        assert answer.json()["error"]["field"] == "cursor"
        answer = api.get("/suppressions", params={"cursor": cursor})
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "cursor", (cursor, answer.text)


@pytest.mark.database_independent
def test_get_contacts_lookup_is_405_and_every_405_names_all_the_methods_of_its_path(web: ConsoleSite) -> None:
    api = web.api(web.key())
    lookup = api.get("/contacts/lookup")
    assert lookup.status_code == 405 and lookup.headers["allow"] == "POST", lookup.text
    assert lookup.json()["error"]["code"] == "method_not_allowed"
    assert api.request("OPTIONS", "/contacts/1").headers["allow"] == "DELETE, GET"
    assert api.put("/contacts").headers["allow"] == "GET, POST"
    assert api.get("/contacts/abc").status_code == 404  # not a contact id: no route takes it


@pytest.mark.database_independent
def test_the_other_error_pages_link_back_to_the_home_page_and_say_so(web: ConsoleSite) -> None:
    client = web.login("admin")
    answers = [
        client.get("/console/reports?from=someday"),  # 400: the filters
        client.put("/console/campaigns/spring-guide/edit"),  # 405
    ]
    for page, status in zip(answers, (400, 405), strict=True):
        path = page.request.url.path
        assert page.status_code == status, (path, page.status_code)
        assert '<a href="/console/">Back to the home page</a>' in page.text, path
        assert "Back to the campaigns" not in page.text
