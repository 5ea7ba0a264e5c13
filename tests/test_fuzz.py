"""Random and hostile input (Hypothesis) against the webhook parser and the audience file readers.

The properties: nothing but needlecast's own errors ever comes out; a valid event survives whatever shares
its batch; no log line carries an address.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from needlecast.audience.importer import import_file
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import NeedlecastError
from needlecast.logs import configure_logging
from needlecast.store.engine import open_store
from needlecast.tracking.events import parse_sendgrid
from needlecast.tracking.webhook import ingest

SECRET_ADDRESS = "hidden.person@example.com"
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "\x00",
            "\ud800",
            "\udfff",
            "=cmd|' /C calc'!A0",
            "\u202e",
            "%%first_name%%",
            SECRET_ADDRESS,
            "a" * 5000,
            "{{ 7*7 }}",
            "\r\n",
            '"',
            "\\",
        ]
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    HOSTILE_TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(HOSTILE_TEXT, inner, max_size=4)),
    max_leaves=12,
)
FIELDS = st.sampled_from(
    [
        "email",
        "event",
        "timestamp",
        "sg_event_id",
        "delivery_id",
        "campaign",
        "step",
        "url",
        "reason",
        "type",
        "category",
        "sg_message_id",
    ]
)
EVENTS = st.dictionaries(FIELDS, JSON_VALUES, max_size=8)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = open_store(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'store.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("logs") / "needlecast.log"
    configure_logging(logging.DEBUG, path)
    yield path
    configure_logging(logging.WARNING)
    assert SECRET_ADDRESS not in path.read_text()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=st.lists(st.one_of(EVENTS, JSON_VALUES), max_size=6), position=st.integers(min_value=0, max_value=6))
def test_a_valid_event_survives_any_batch_and_nothing_but_our_errors_comes_out(
    store: Engine, log_file: Path, noise: list[object], position: int
) -> None:
    valid_id = f"valid-{uuid.uuid4().hex}"
    valid = {"email": "reader@example.com", "event": "open", "sg_event_id": valid_id, "timestamp": 1795000000}
    items = list(noise)
    items.insert(min(position, len(items)), valid)
    body = json.dumps(items, allow_nan=True).encode()
    parsed = parse_sendgrid(body)
    assert valid_id in {e.provider_event_id for e in parsed.events}
    assert len(parsed.events) + len(parsed.rejected) == len(items)
    result = ingest(store, parsed)  # never a database error, whatever the events hold
    assert result.stored + result.duplicates == len(parsed.events)
    logging.getLogger("needlecast.fuzz").info("stored %s", [e.email for e in parsed.events])


@settings(max_examples=150, deadline=None)
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_the_webhook_parser_raises_only_its_own_errors_on_any_bytes(body: bytes) -> None:
    with contextlib.suppress(NeedlecastError):
        parse_sendgrid(body)


CELLS = st.one_of(HOSTILE_TEXT, st.sampled_from(["yes", "no", "pending", "acne", "Europe/London", "2026-03-01"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(
        st.sampled_from(["Email", "First Name", "Concern", "Time zone", "Marketing consent", "Tags", "Booked", "x"]),
        min_size=1,
        max_size=6,
    ),
    rows=st.lists(st.lists(CELLS, max_size=7), max_size=8),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_any_csv_imports_or_fails_with_one_of_our_errors_and_always_reconciles(
    store: Engine,
    log_file: Path,
    vocabulary: Vocabulary,
    tmp_path_factory: pytest.TempPathFactory,
    header: list[str],
    rows: list[list[str]],
    delimiter: str,
) -> None:
    import csv

    path = tmp_path_factory.mktemp("csv") / "leads.csv"
    with path.open("w", encoding="utf-8", errors="surrogatepass", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    try:
        summary = import_file(store, path, vocabulary)
    except NeedlecastError:
        return
    assert summary.read == summary.inserted + summary.updated + summary.duplicates + summary.rejected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=2000), as_zip=st.booleans())
def test_any_xlsx_file_is_read_or_refused_with_one_of_our_errors(
    store: Engine, vocabulary: Vocabulary, tmp_path_factory: pytest.TempPathFactory, content: bytes, as_zip: bool
) -> None:
    import zipfile

    path = tmp_path_factory.mktemp("xlsx") / "leads.xlsx"
    if as_zip:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("xl/worksheets/sheet1.xml", content)
            archive.writestr("[Content_Types].xml", content[:100])
    else:
        path.write_bytes(content)
    with contextlib.suppress(NeedlecastError):
        import_file(store, path, vocabulary)
