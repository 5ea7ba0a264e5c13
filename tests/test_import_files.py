"""Files as clinics really export them, and files no clinic exports: UTF-16 text, UK and US dates, concerns
the vocabulary does not know, a sheet longer than Excel allows, a file of nothing but one mistake. On SQLite
and PostgreSQL (the `engine` fixture)."""

from __future__ import annotations

import codecs
import csv
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import Engine, func, select

from needlecast.audience import importer, table
from needlecast.audience.contacts import get_contact
from needlecast.audience.importer import import_file
from needlecast.audience.membership import evaluate, load_frame
from needlecast.audience.segments import Segment
from needlecast.config import ImportSettings, load_settings
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import AudienceFileError, ConfigurationError
from needlecast.store.schema import contacts, imports

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HEADER = "Email,First Name,Skin concern,Marketing consent,Health data consent,Consent date"


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(contacts)).scalar_one())


def _statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [s for (s,) in conn.execute(select(imports.c.status).order_by(imports.c.id))]


# --- encodings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding, bom",
    [
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-32-le", codecs.BOM_UTF32_LE),
        ("utf-16-le", b""),  # Excel's "Unicode text" without its BOM: the NUL bytes show it
    ],
)
def test_a_utf16_or_bom_marked_file_is_read_as_the_text_it_is(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path, encoding: str, bom: bytes
) -> None:
    text = "Email\tFirst Name\tSkin concern\r\nrené@example.com\tRené\tacne\r\nzoë@example.org\tZoë\tmelasma\r\n"
    source = tmp_path / "unicode.csv"
    source.write_bytes(bom + text.encode(encoding))
    summary = import_file(engine, source, vocabulary)
    assert (summary.read, summary.inserted, summary.rejected) == (2, 2, 0)
    assert not [w for w in summary.warnings if "Latin-1" in w]
    with engine.connect() as conn:
        assert get_contact(conn, "rené@example.com")["first_name"] == "René"
        assert get_contact(conn, "zoë@example.org")["concerns"] == "pigmentation"


def test_a_file_that_breaks_the_utf16_its_bom_declares_names_the_encoding_and_the_fix(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = tmp_path / "broken.csv"
    source.write_bytes(codecs.BOM_UTF16_LE + "Email\r\na@example.com\r\n".encode("utf-16-le") + b"\x00\xdc")
    with pytest.raises(AudienceFileError, match=r'starts as UTF-16 text but is not valid UTF-16.*"CSV UTF-8"'):
        import_file(engine, source, vocabulary)
    assert _count(engine) == 0


# --- dates ---------------------------------------------------------------------------------------------------


def _leads(path: Path, dates: list[str]) -> Path:
    rows = [f"p{i}@example.com,P{i},acne,yes,yes,{date}" for i, date in enumerate(dates)]
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _recorded(engine: Engine, email: str) -> datetime:
    from needlecast.audience.consent import consent_history

    with engine.connect() as conn:
        contact = get_contact(conn, email)
        first = consent_history(conn, contact["id"])[0]["recorded_at"]
    return first if first.tzinfo else first.replace(tzinfo=UTC)


def test_uk_dates_are_read_day_first_when_the_column_shows_it(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    # 03/04/2026 alone could be either; 29/11/2026 in the same column settles it: day first.
    source = _leads(tmp_path / "uk.csv", ["03/04/2026", "29/11/2026 09:30", "2026-01-02", "1.12.2026"])
    summary = import_file(engine, source, vocabulary)
    assert (summary.inserted, summary.rejected) == (4, 0)
    assert [_recorded(engine, f"p{i}@example.com") for i in range(4)] == [
        datetime(2026, 4, 3, tzinfo=UTC),
        datetime(2026, 11, 29, 9, 30, tzinfo=UTC),
        datetime(2026, 1, 2, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    ]


def test_us_dates_are_read_month_first_when_the_column_shows_it(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = _leads(tmp_path / "us.csv", ["03/04/2026", "11/29/2026"])
    summary = import_file(engine, source, vocabulary)
    assert (summary.inserted, summary.rejected) == (2, 0)
    assert _recorded(engine, "p0@example.com") == datetime(2026, 3, 4, tzinfo=UTC)


def test_an_ambiguous_date_column_is_rejected_naming_the_setting_that_decides_it(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = _leads(tmp_path / "either.csv", ["03/04/2026", "2026-05-06", "05/06/2026"])
    summary = import_file(engine, source, vocabulary)
    assert (summary.inserted, summary.rejected) == (1, 2)
    reasons = [r["reason"] for r in csv.DictReader(summary.rejects_path.open(encoding="utf-8"))]
    assert reasons[0] == (
        "consent date '03/04/2026': day and month could be either way round (no value in this column has a "
        'part above 12); write it as 2026-11-29, or set [imports] date_order = "DMY" or "MDY" in needlecast.toml'
    )
    # The clinic says how it writes dates: every one of them is read that way.
    again = import_file(engine, source, vocabulary, limits=ImportSettings(date_order="DMY"))
    assert (again.inserted, again.rejected) == (2, 0)
    assert _recorded(engine, "p0@example.com") == datetime(2026, 4, 3, tzinfo=UTC)


def test_a_column_that_mixes_day_first_and_month_first_dates_is_not_guessed(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = _leads(tmp_path / "mixed.csv", ["29/11/2026", "11/29/2026", "01/02/2026", "2026/03/04", "4/5/26"])
    summary = import_file(engine, source, vocabulary)
    assert (summary.inserted, summary.rejected) == (1, 4)  # only year-first 2026/03/04 is certain
    reasons = {r["line"]: r["reason"] for r in csv.DictReader(summary.rejects_path.open(encoding="utf-8"))}
    assert "day-first dates (line 2: 29/11/2026) and month-first ones (line 3: 11/29/2026)" in reasons["2"]
    assert reasons["6"] == "consent date '4/5/26': write the year in full (like 29/11/2026)"


def test_a_file_of_iso_dates_is_read_once(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def second_reading(*_: object) -> None:
        raise AssertionError("the file was read a second time")

    monkeypatch.setattr(importer, "_date_evidence", second_reading)
    summary = import_file(engine, _leads(tmp_path / "iso.csv", ["2026-03-04", "2026-11-29T09:30:00Z"]), vocabulary)
    assert summary.inserted == 2


@pytest.mark.parametrize("value", ['"DMY"', '"dmy"', '"YMD"'])
def test_date_order_is_read_from_needlecast_toml(tmp_path: Path, value: str) -> None:
    (tmp_path / "needlecast.toml").write_text(f"[imports]\ndate_order = {value}\n")
    assert load_settings(tmp_path).imports.date_order == value.strip('"').upper()


@pytest.mark.parametrize("value", ['"DD/MM/YYYY"', '"UK"', "1"])
def test_a_wrong_date_order_is_a_configuration_error_naming_the_setting(tmp_path: Path, value: str) -> None:
    (tmp_path / "needlecast.toml").write_text(f"[imports]\ndate_order = {value}\n")
    with pytest.raises(ConfigurationError, match=r"\[imports\] date_order must be"):
        load_settings(tmp_path)


# --- concerns ------------------------------------------------------------------------------------------------


def test_an_unknown_concern_is_kept_as_a_tag_with_a_warning_and_never_costs_the_lead(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = tmp_path / "leads.csv"
    source.write_text(
        "Email,Skin concern,Marketing consent,Health data consent,Tags\n"
        "ana@example.com,Rosacea; acne,yes,yes,vip\n"
        "ben@example.com,rosacea,yes,no,\n"
        "cat@example.com,ageing,yes,yes,\n",
        encoding="utf-8",
    )
    summary = import_file(engine, source, vocabulary)
    assert (summary.read, summary.inserted, summary.rejected) == (3, 3, 0)
    assert [w for w in summary.warnings if "concern" in w] == [
        "lines 2, 3: the concern 'rosacea' is not one the vocabulary knows (acne, ageing, pigmentation), so it "
        "was kept as the tag 'concern:rosacea'. To use it to choose content, add it to a concern's synonyms in "
        "the vocabulary and import the file again."
    ]
    with engine.connect() as conn:
        ana = get_contact(conn, "ana@example.com")
        frame = load_frame(conn)
    assert (ana["concerns"], ana["tags"]) == ("acne", "vip;concern:rosacea")
    # The tag is health data: selecting it reaches only those who consented to the use of their concern.
    result = evaluate(Segment(name="rosacea", tags=("concern:rosacea",)), frame, NOW)
    assert list(result.members["email"]) == ["ana@example.com"]
    assert sum(result.excluded.values()) == 1


# --- files no clinic exports ---------------------------------------------------------------------------------


def _sheet(path: Path, rows: int) -> Path:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(["Email", "Marketing consent"])
    for i in range(rows):
        sheet.append([f"p{i}@example.com", "yes"])
    book.save(path)
    return path


def test_a_sheet_longer_than_a_spreadsheet_allows_is_refused_at_the_first_row_past_it(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table, "XLSX_MAX_ROWS", 40)  # Excel's 1,048,576, lowered so the file stays small
    monkeypatch.setattr(importer, "CHUNK", 10)  # progress every 10 rows
    assert import_file(engine, _sheet(tmp_path / "fits.xlsx", 39), vocabulary).inserted == 39
    read: list[int] = []
    with pytest.raises(AudienceFileError) as refused:
        import_file(
            engine,
            _sheet(tmp_path / "long.xlsx", 500),
            vocabulary,
            progress=lambda _stage, done, _total: read.append(done),
        )
    message = str(refused.value)
    assert "\n" not in message and "row 41: a spreadsheet has at most 40 rows" in message
    assert 30 <= max(read) < 40  # refused there, not after reading the other 460 rows
    assert _count(engine) == 39 and _statuses(engine) == ["completed", "failed"]
    assert not list(tmp_path.glob("*rejects*"))


def test_an_import_stops_after_a_run_of_rows_rejected_for_one_reason(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "MAX_REJECT_RUN", 50)  # a million, lowered so the file stays small
    monkeypatch.setattr(importer, "CHUNK", 10)
    good = [f"p{i}@example.com,Europe/London" for i in range(5)]
    interrupted = [f"q{i}@example.com,Mars/Olympus" for i in range(49)] + ["ok@example.com,Europe/London"]
    bad = [f"r{i}@example.com,Mars/Olympus{i}" for i in range(200)]
    source = tmp_path / "zones.csv"
    source.write_text("Email,Time zone\n" + "\n".join(good + interrupted + bad) + "\n", encoding="utf-8")
    parts: list[int] = []

    def watch(_stage: str, done: int, _total: int) -> None:
        # Rejected rows go to disk as they are found: none is kept in memory until the end.
        part = tmp_path / ".zones.rejects.csv.part"
        parts.append(len(part.read_text(encoding="utf-8").splitlines()) if part.exists() else 0)

    with pytest.raises(AudienceFileError) as stopped:
        import_file(engine, source, vocabulary, progress=watch)
    message = str(stopped.value)
    # One line: where the run began and ended, and its reason (quoted values aside, every row's is the same).
    assert "\n" not in message
    assert "lines 57-106: 50 rows in a row were rejected for one reason (unknown time zone 'Mars/Olympus0'" in message
    assert max(parts) >= 50
    assert _count(engine) == 0 and _statuses(engine) == ["failed"]
    assert not list(tmp_path.glob("*rejects*")) and not list(tmp_path.glob(".*part"))

    # A shorter run is an ordinary import with its rejects file.
    source.write_text("Email,Time zone\n" + "\n".join(good + interrupted) + "\n", encoding="utf-8")
    summary = import_file(engine, source, vocabulary)
    assert (summary.read, summary.inserted, summary.rejected) == (55, 6, 49)
    lines = [int(r["line"]) for r in csv.DictReader(summary.rejects_path.open(encoding="utf-8"))]
    assert lines == list(range(7, 56))


def test_a_file_of_many_unknown_concerns_gets_a_few_warnings_not_one_per_value(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = tmp_path / "many.csv"
    rows = [f"p{i}@example.com,made-up-{i}" for i in range(300)]
    source.write_text("Email,Skin concern\n" + "\n".join(rows) + "\n", encoding="utf-8")
    summary = import_file(engine, source, vocabulary)
    assert summary.inserted == 300
    concerns = [w for w in summary.warnings if "concern" in w]
    assert (
        len(concerns) == 21
        and concerns[-1] == "280 more cells name other unknown concerns, kept as tags (concern:...) too"
    )
