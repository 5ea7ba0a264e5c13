"""The API's OpenAPI document says what the server does (the fuzz in test_api_fuzz.py checks the whole surface;
these pin each place where the two once differed): addresses, times, booleans, time zones, concerns, an
erased address offered again. Over real HTTP on SQLite and PostgreSQL where the server answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from needlecast.addresses import normalise_email
from needlecast.web.api.schemas import EMAIL_PATTERN, TIME_ZONES
from tests.console_site import ConsoleSite, site

# Pages, forms, permissions and their answers: on SQLite only (conftest's rule).
pytestmark = pytest.mark.database_independent


@pytest.fixture()
def api(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    monkeypatch.setenv("NEEDLECAST_QUIET_HOURS", "off")
    with site(workspace_dir, store_url) as running:
        yield running


# The pattern's shape without its lookaheads (the local part's length, "--", special-use names), which the
# test applies with `assume`: Hypothesis builds strings from a shape and would discard nearly all of them if it
# had to satisfy the lookaheads by filtering.
ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}"
LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,10}[A-Za-z0-9])?"
TLD = r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,10})?[A-Za-z]"
SHAPES = st.from_regex(rf"{ATOM}(?:\.{ATOM}){{0,3}}@(?:{LABEL}\.){{1,3}}{TLD}", fullmatch=True)


@settings(max_examples=500, deadline=None)
@given(SHAPES)
def test_every_address_the_document_admits_the_server_takes(address: str) -> None:
    assume(re.match(EMAIL_PATTERN, address) and len(address) <= 254)
    normalise_email(address)  # raises InvalidAddress for one it refuses


@pytest.mark.parametrize(
    "address",
    ["o8@4y27a1p5.test", "a@b.LOCAL", "x@localhost", "x@y.onion", "0@00", "0@0.00", "a@xn--a.com", "a..b@c.com"],
)
def test_an_address_the_server_refuses_is_outside_the_document(address: str) -> None:
    with pytest.raises(ValueError):
        normalise_email(address)
    assert not re.match(EMAIL_PATTERN, address)


def test_the_document_lists_the_time_zones_and_this_clinics_concerns_the_server_takes(api: ConsoleSite) -> None:
    document = api.client().get("/api/v1/openapi.json").json()
    fields = document["components"]["schemas"]["ContactIn"]["properties"]
    zones = re.compile(fields["time_zone"]["pattern"])
    assert all(zones.match(zone) for zone in [*TIME_ZONES, ""]) and "Europe/London" in TIME_ZONES
    assert not any(zones.match(wrong) for wrong in ("Mars/Olympus", "europe/london", "Europe/London ", "UTC+1"))
    concerns = next(option for option in fields["concerns"]["anyOf"] if option.get("type") == "array")
    assert concerns["items"]["enum"] == ["acne", "ageing", "pigmentation"]
    assert fields["email"]["format"] == "email" and fields["email"]["pattern"] == EMAIL_PATTERN
    cursor = next(p for p in document["paths"]["/contacts"]["get"]["parameters"] if p["name"] == "cursor")
    assert "pattern" in str(cursor["schema"])
    # an attribute's name may not hold NUL either (the server refuses it), and the document says so
    names = re.compile(fields["attributes"]["propertyNames"]["pattern"])
    assert names.match("plan") and not names.match("pl\x00an")


def test_a_time_that_is_not_rfc_3339_with_a_zone_or_a_boolean_that_is_not_one_is_422(api: ConsoleSite) -> None:
    client = api.api(api.key())
    consent = {"granted": True, "source": "front desk"}
    for wrong in (
        {"marketing_consent": {**consent, "at": 0}},
        {"marketing_consent": {**consent, "at": "1700000000"}},
        {"marketing_consent": {**consent, "at": "2026-03-01"}},
        {"marketing_consent": {**consent, "at": "2026-03-01T09:30:00"}},
        {"marketing_consent": {**consent, "granted": "true"}},
        {"marketing_consent": {**consent, "granted": 1}},
    ):
        answer = client.post("/contacts", json={"email": "new.lead@example.org", **wrong})
        assert answer.status_code == 422, (wrong, answer.text)
        assert answer.json()["error"]["field"].startswith("marketing_consent."), answer.text
    right = {**consent, "at": "2026-03-01T09:30:00+01:00"}
    answer = client.post("/contacts", json={"email": "new.lead@example.org", "marketing_consent": right})
    assert answer.status_code == 200 and answer.json()["marketing_consent"] is True, answer.text


def test_an_erased_address_offered_again_is_409_naming_the_email(api: ConsoleSite) -> None:
    client = api.api(api.key())
    contact = client.post("/contacts", json={"email": "gone.soon@example.org"}).json()
    assert client.delete(f"/contacts/{contact['id']}").json() == {"erased": True}
    again = client.post("/contacts", json={"email": "gone.soon@example.org"})
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "erased" and again.json()["error"]["field"] == "email"
