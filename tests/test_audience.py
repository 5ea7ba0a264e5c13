"""The audience contract suite: runs on SQLite and on PostgreSQL (the `engine` fixture)."""

from __future__ import annotations

import base64
import csv
import hmac
import random
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Engine, func, select

from needlecast import signing
from needlecast.addresses import email_hash, email_hasher, mask_email, normalise_email
from needlecast.audience.consent import confirm, consent_history, record_consent, start_double_opt_in
from needlecast.audience.contacts import get_contact
from needlecast.audience.importer import import_file
from needlecast.audience.membership import evaluate, load_frame
from needlecast.audience.segments import Condition, Segment, attributes_of, load_segments
from needlecast.audience.suppression import erase, suppress, suppression_of
from needlecast.content.vocabulary import Vocabulary
from needlecast.devtools.synth import write_audience_csv
from needlecast.errors import AudienceFileError, InvalidAddress, TokenInvalid
from needlecast.store.schema import consent_events, contact_lists, contacts, imports

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _members(engine: Engine, segment: Segment) -> dict[str, str]:
    with engine.connect() as conn:
        result = evaluate(segment, load_frame(conn), NOW)
    return dict(zip(result.members["email"], result.members["variant"], strict=True))


def _reconciles(summary) -> None:  # type: ignore[no-untyped-def]
    assert summary.read == summary.inserted + summary.updated + summary.duplicates + summary.rejected


def test_messy_semicolon_csv_with_bom_quotes_and_newlines(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = tmp_path / "leads.csv"
    source.write_bytes((DATA / "messy_semicolon.csv").read_bytes())
    summary = import_file(engine, source, vocabulary, list_name="spring")
    assert (summary.read, summary.inserted, summary.updated, summary.duplicates, summary.rejected) == (7, 4, 0, 1, 2)
    _reconciles(summary)
    assert summary.conflicting_duplicates == 1
    with engine.connect() as conn:
        bea = get_contact(conn, "bea.moreau@example.com")
        ana = get_contact(conn, "ana@example.com")
        zoe = get_contact(conn, "zoë@example.org")
        dan = get_contact(conn, "dan@example.net")
    assert bea["first_name"] == 'Béatrice "Bea" Moreau'  # embedded newline folded, quotes kept
    assert bea["concerns"] == "ageing;pigmentation"
    assert ana["first_name"] == "Ana Maria"  # the later duplicate row won
    assert zoe["attributes"] == {"booked": "yes"} and zoe["concern_consent"] is False
    assert dan["concerns"] == "" and dan["tags"] == "concern:rosacea"  # kept, never guessed
    assert [w for w in summary.warnings if "rosacea" in w] == [
        "line 8: the concern 'rosacea' is not one the vocabulary knows (acne, ageing, pigmentation), so it was "
        "kept as the tag 'concern:rosacea'. To use it to choose content, add it to a concern's synonyms in the "
        "vocabulary and import the file again."
    ]
    rejects = list(csv.DictReader(summary.rejects_path.open(encoding="utf-8")))
    assert [(r["line"], r["reason"].split(" (")[0].split(":")[0]) for r in rejects] == [
        ("5", "invalid email address"),
        ("10", "unknown time zone 'Mars/Olympus'"),
    ]
    assert rejects[0]["E-mail"] == "not-an-address"


def test_reimport_updates_instead_of_adding(engine: Engine, vocabulary: Vocabulary, tmp_path: Path) -> None:
    source = write_audience_csv(tmp_path / "a.csv", 200, seed=3)
    first = import_file(engine, source, vocabulary)
    second = import_file(engine, source, vocabulary)
    _reconciles(first)
    _reconciles(second)
    assert second.inserted == 0 and second.updated == first.inserted
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar() == first.inserted
        assert [r.status for r in conn.execute(select(imports.c.status))] == ["completed", "completed"]


def test_latin1_file_is_read_with_a_warning(engine: Engine, vocabulary: Vocabulary, tmp_path: Path) -> None:
    source = tmp_path / "latin1.csv"
    source.write_bytes("Email,First Name,Marketing consent\nrene@example.com,Ren\xe9,yes\n".encode("latin-1"))
    summary = import_file(engine, source, vocabulary)
    assert summary.inserted == 1 and "Latin-1" in summary.warnings[0]
    with engine.connect() as conn:
        assert get_contact(conn, "rene@example.com")["first_name"] == "René"


def test_xlsx_import_with_mapping_file(engine: Engine, vocabulary: Vocabulary, tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["Correo", "Nombre", "Preocupación", "Consentimiento"])
    sheet.append(["luz@example.com", "Luz", "manchas", "yes"])
    sheet.append(["sol@example.com", "Sol", "acne", "yes"])
    sheet.append([None, None, None, None])
    sheet.append(["bad@", "X", "acne", "yes"])
    path = tmp_path / "leads.xlsx"
    book.save(path)
    from needlecast.audience.columns import load_mapping

    mapping_file = tmp_path / "map.yaml"
    mapping_file.write_text(
        "Correo: email\nNombre: first_name\nPreocupación: concerns\nConsentimiento: marketing_consent\n"
    )
    summary = import_file(engine, path, vocabulary, mapping=load_mapping(mapping_file))
    _reconciles(summary)
    assert (summary.read, summary.inserted, summary.rejected) == (3, 2, 1)
    reasons = {r["line"]: r["reason"] for r in csv.DictReader(summary.rejects_path.open(encoding="utf-8"))}
    assert set(reasons) == {"5"}
    assert reasons["5"].startswith("invalid email address")
    assert any(w.startswith("line 2: the concern 'manchas' is not one") for w in summary.warnings)
    with engine.connect() as conn:
        luz = get_contact(conn, "luz@example.com")
    assert (luz["concerns"], luz["tags"]) == ("", "concern:manchas")  # a Spanish synonym is not guessed


def test_file_without_email_column_lists_the_columns(engine: Engine, vocabulary: Vocabulary, tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("Name,Phone\nAna,123\n")
    with pytest.raises(AudienceFileError, match=r"no email column\. Columns found: 'Name', 'Phone'.*--mapping"):
        import_file(engine, source, vocabulary)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "file not found"), (b"", "empty"), (b"\n\n", "empty"), (b"\x89PNG\r\n\x1a\n\x00\x00", "binary file")],
)
def test_unreadable_files_give_one_clear_error(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path, content: bytes | None, message: str
) -> None:
    source = tmp_path / "in.csv"
    if content is not None:
        source.write_bytes(content)
    with pytest.raises(AudienceFileError, match=message):
        import_file(engine, source, vocabulary)


def test_failure_mid_import_leaves_the_store_as_it_was(engine: Engine, vocabulary: Vocabulary, tmp_path: Path) -> None:
    import_file(engine, write_audience_csv(tmp_path / "base.csv", 50, seed=1, messy=False), vocabulary)
    with engine.connect() as conn:
        before = conn.execute(select(contacts).order_by(contacts.c.id)).fetchall()
    big = write_audience_csv(tmp_path / "big.csv", 12_000, seed=2, messy=False)

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "writing" and done >= 5000:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C half-way through writing

    with pytest.raises(KeyboardInterrupt):
        import_file(engine, big, vocabulary, progress=interrupt)
    with engine.connect() as conn:
        assert conn.execute(select(contacts).order_by(contacts.c.id)).fetchall() == before
        statuses = [r.status for r in conn.execute(select(imports.c.status).order_by(imports.c.id))]
    assert statuses == ["completed", "failed"]
    summary = import_file(engine, big, vocabulary)  # and the same file then imports cleanly
    assert summary.inserted + summary.updated == 12_000 and summary.rejected == 0


def test_failure_mid_import_into_an_empty_store_leaves_it_empty(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    # Into an empty PostgreSQL store the batches are written by a worker thread (and report from it).
    big = write_audience_csv(tmp_path / "big.csv", 12_000, seed=2, messy=False)

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "writing" and done >= 5000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_file(engine, big, vocabulary, progress=interrupt)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(consent_events)).scalar() == 0
        assert [r.status for r in conn.execute(select(imports.c.status))] == ["failed"]
    summary = import_file(engine, big, vocabulary, list_name="spring")
    assert summary.inserted == 12_000 and summary.reconciles
    with engine.connect() as conn:
        ids = set(conn.execute(select(contacts.c.id)).scalars())
        granted = (
            conn.execute(
                select(consent_events.c.contact_id).where(
                    consent_events.c.purpose == "marketing", consent_events.c.action == "granted"
                )
            )
            .scalars()
            .all()
        )
        listed = set(conn.execute(select(contact_lists.c.contact_id)).scalars())
    assert len(ids) == 12_000 and set(granted) <= ids and listed == ids  # history and lists name real contacts
    assert len(granted) == len(set(granted)) > 0


def test_suppressed_or_erased_address_stays_out_after_reimport(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = tmp_path / "two.csv"
    source.write_text(
        "Email,First Name,Concern,Marketing consent,Concern consent\n"
        "una@example.com,Una,acne,yes,yes\nvic@example.com,Vic,acne,yes,yes\n"
    )
    import_file(engine, source, vocabulary)
    everyone = Segment("all")
    assert set(_members(engine, everyone)) == {"una@example.com", "vic@example.com"}
    with engine.begin() as conn:
        suppress(conn, "UNA@example.com", "unsubscribed")
        assert erase(conn, "vic@example.com") is True
        assert suppression_of(conn, "vic@example.com") == "erased"
    summary = import_file(engine, source, vocabulary)
    _reconciles(summary)
    assert (summary.updated, summary.rejected) == (1, 1)
    assert "erased on request" in summary.rejects_path.read_text()
    assert _members(engine, everyone) == {}
    assert _members(engine, Segment("acne", concerns=("acne",))) == {}


def test_consent_withdrawal_removes_contact_from_concern_targeting(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = tmp_path / "one.csv"
    source.write_text("Email,Concern,Marketing consent,Health data consent\nwin@example.com,acne,yes,yes\n")
    import_file(engine, source, vocabulary)
    acne, everyone = Segment("acne", concerns=("acne",)), Segment("all")
    assert _members(engine, acne) == {"win@example.com": "acne"}
    with engine.begin() as conn:
        contact_id = get_contact(conn, "win@example.com")["id"]
        record_consent(conn, contact_id, "concern", False, source="phone call", wording_version="v2")
    assert _members(engine, acne) == {}
    assert _members(engine, everyone) == {"win@example.com": "general"}
    with engine.begin() as conn:
        record_consent(conn, contact_id, "marketing", False, source="reply to email")
        history = [(e["purpose"], e["action"]) for e in consent_history(conn, contact_id)]
    assert history == [
        ("marketing", "granted"),
        ("concern", "granted"),
        ("concern", "withdrawn"),
        ("marketing", "withdrawn"),
    ]
    assert _members(engine, everyone) == {}


def test_double_opt_in_pending_until_signed_token_is_redeemed(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = tmp_path / "p.csv"
    source.write_text("Email,Marketing consent\nxia@example.com,pending\n")
    import_file(engine, source, vocabulary)
    everyone = Segment("all")
    assert _members(engine, everyone) == {}
    secret = b"s" * 32
    with engine.begin() as conn:
        token = start_double_opt_in(conn, get_contact(conn, "xia@example.com")["id"], secret, source="form")
    with engine.begin() as conn, pytest.raises(TokenInvalid):
        confirm(conn, token[:-2] + ("AA" if not token.endswith("AA") else "BB"), secret)
    with engine.begin() as conn, pytest.raises(TokenInvalid):
        confirm(conn, signing.sign(secret, signing.UNSUBSCRIBE, 1), secret)  # another kind of token
    with engine.begin() as conn:
        confirm(conn, token, secret)
        confirm(conn, token, secret)  # twice is harmless
    assert _members(engine, everyone) == {"xia@example.com": "general"}


def test_the_bulk_email_hasher_gives_the_same_keyed_hashes() -> None:
    hashed = email_hasher(b"k" * 32)
    for address in ("ana@example.com", "zoë@exämple.org", ""):
        assert (
            hashed(address)
            == email_hash(b"k" * 32, address)
            == hmac.new(b"k" * 32, address.encode(), "sha256").hexdigest()
        )
    assert hashed("ana@example.com") != email_hasher(b"j" * 32)("ana@example.com")


@pytest.mark.parametrize("secret", [b"k" * 40, b"s" * 64, b"long" * 30])
def test_tokens_carry_a_standard_hmac_sha256(secret: bytes) -> None:
    token = signing.sign(secret, signing.MANAGE, 42, "spring")
    assert signing.Signer(secret, signing.MANAGE, "spring")(42) == token  # the send's signer: the same tokens
    assert signing.verify(secret, signing.MANAGE, token).contact_id == 42
    body, mac = token.split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert payload == b"42:spring:0"
    assert (
        base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
        == hmac.digest(secret, b"manage|" + payload, "sha256")[:16]
    )


def test_expired_confirmation_token_is_refused() -> None:
    secret = b"s" * 32
    token = signing.sign(secret, signing.CONFIRM, 5, ttl_seconds=60)
    assert signing.verify(secret, signing.CONFIRM, token).contact_id == 5
    with pytest.raises(TokenInvalid, match="expired"):
        signing.verify(secret, signing.CONFIRM, token, now=datetime.now(UTC).timestamp() + 120)


def test_segment_filters(engine: Engine, vocabulary: Vocabulary, tmp_path: Path) -> None:
    source = tmp_path / "f.csv"
    source.write_text(
        "Email,Concern,Marketing consent,Concern consent,Signed up,Tags,Booked,Visits\n"
        "a@example.com,acne;pigmentation,yes,yes,2026-11-20,vip,no,3\n"
        "b@example.com,pigmentation,yes,yes,2026-06-01,,yes,10\n"
        "c@example.com,ageing,yes,no,2026-11-01,vip,no,1\n"
    )
    import_file(engine, source, vocabulary, list_name="autumn")
    assert _members(engine, Segment("p", concerns=("pigmentation",))) == {
        "a@example.com": "pigmentation",
        "b@example.com": "pigmentation",
    }
    assert set(_members(engine, Segment("new", signed_up_within_days=30))) == {"a@example.com", "c@example.com"}
    assert set(_members(engine, Segment("vip", tags=("vip",)))) == {"a@example.com", "c@example.com"}
    assert set(_members(engine, Segment("l", lists=("autumn",)))) == {"a@example.com", "b@example.com", "c@example.com"}
    assert set(_members(engine, Segment("l2", lists=("other",)))) == set()
    assert set(_members(engine, Segment("nb", where=(Condition("booked", "equals", "no"),)))) == {
        "a@example.com",
        "c@example.com",
    }
    assert set(_members(engine, Segment("r", where=(Condition("visits", "between", [2, 5]),)))) == {"a@example.com"}
    assert set(_members(engine, Segment("d", where=(Condition("signed_up_at", "before", "2026-07-01"),)))) == {
        "b@example.com"
    }
    assert _members(engine, Segment("all")) == {
        "a@example.com": "acne",
        "b@example.com": "pigmentation",
        "c@example.com": "general",
    }


def test_an_event_condition_matches_those_who_had_that_event_within_the_days_and_consent_is_a_field(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    from needlecast.audience.events import ContactEvent, store_events

    source = tmp_path / "f.csv"
    source.write_text(
        "Email,Concern,Marketing consent,Concern consent\n"
        "a@example.com,acne,yes,yes\nb@example.com,acne,yes,no\nc@example.com,acne,yes,yes\n"
    )
    import_file(engine, source, vocabulary)
    with engine.begin() as conn:
        store_events(
            conn,
            [
                ContactEvent("e1", "a@example.com", "booked", NOW - timedelta(days=3)),
                ContactEvent("e2", "b@example.com", "booked", NOW - timedelta(days=40)),
                ContactEvent("e3", "c@example.com", "attended", NOW - timedelta(days=1)),
            ],
            "test",
            NOW,
        )
    week = Segment("w", where=(Condition("event:booked", "within_days", 7),))
    quarter = Segment("q", where=(Condition("event:booked", "within_days", 90),))
    never = Segment("n", where=(Condition("event:purchased", "within_days", 90),))
    assert set(_members(engine, week)) == {"a@example.com"}
    assert set(_members(engine, quarter)) == {"a@example.com", "b@example.com"}
    assert set(_members(engine, never)) == set()
    with engine.connect() as conn:  # a segment's own frame reads only the kinds it asks about
        assert evaluate(week, load_frame(conn, week), NOW).size == 1
    given = Segment("g", where=(Condition("concern_consent", "equals", True),))
    assert set(_members(engine, given)) == {"a@example.com", "c@example.com"}


def test_the_segment_reader_returns_every_contact_as_stored(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    # Values that CSV (PostgreSQL's COPY) and JSON (SQLite) transports must carry through unchanged.
    source = tmp_path / "odd.csv"
    source.write_text(
        "Email,First Name,Last Name,Concern,Marketing consent,Concern consent,Signed up,Tags,Note\n"
        'a@example.com,"Ana, María","O\'Neil ""Jr""",acne,yes,no,2026-11-20 08:30,"vip;x,y",\n'
        'b@example.com,Zoë,,ageing;melasma,no,yes,2026-06-01,,"{""not"": ""json""}, really"\n'
        "c@example.com,\\N,NULL,,yes,yes,2026-01-02,,\n",
        encoding="utf-8",
    )
    import_file(engine, source, vocabulary, list_name="odd")
    with engine.begin() as conn:
        suppress(conn, "b@example.com", "complaint")
    with engine.connect() as conn:
        frame = load_frame(conn).set_index("email")
        part = load_frame(conn, Segment("p"), ids=(0, 10**9))
        stored = {row.email: row for row in conn.execute(select(contacts))}
    assert set(frame.index) == set(stored) == {"a@example.com", "b@example.com", "c@example.com"}
    for email, row in stored.items():
        got = frame.loc[email]
        for name in ("first_name", "last_name", "concerns", "time_zone", "tags", "status"):
            assert got[name] == getattr(row, name), (email, name)
        assert bool(got["marketing_consent"]) == row.marketing_consent
        assert bool(got["concern_consent"]) == row.concern_consent
        assert attributes_of(got["attributes"]) == row.attributes
        assert got["signed_up_at"] == pd.Timestamp(row.signed_up_at)
        assert got["lists"] == frozenset({"odd"})
    assert frame.loc["b@example.com", "suppressed"] == "complaint"
    assert frame["suppressed"].notna().sum() == 1
    assert list(part["id"]) == sorted(int(row.id) for row in stored.values())
    assert part["suppressed"].notna().sum() == 1


def test_segments_file_errors_name_the_segment(tmp_path: Path) -> None:
    path = tmp_path / "segments.yaml"
    path.write_text("segments:\n  x:\n    concerns: [rosacea]\n")
    with pytest.raises(Exception, match=r"segment 'x': unknown concern\(s\) \['rosacea'\]"):
        load_segments(path, ("acne",))


def test_sample_segments_file_loads(vocabulary: Vocabulary) -> None:
    segments = load_segments(Path(__file__).parent.parent / "audiences" / "segments.yaml", vocabulary.names)
    assert {"all-leads", "acne", "ageing", "pigmentation", "new-leads"} <= set(segments)


def test_fast_path_accepts_only_what_email_validator_accepts() -> None:
    rng = random.Random(11)
    alphabet = string.ascii_lowercase + string.digits + ".-_+@'!"
    corpus = [
        "a@b.co",
        "x..y@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-b.com",
        "a@b-.com",
        "a@example.local",
        "a@localhost",
        "a@x.test",
        "a@example.c",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.ie",
        "a@example.123",
        "a" * 65 + "@example.com",
        "a@" + "b" * 64 + ".com",
    ]
    corpus += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 20)))
        + rng.choice(["@example.com", "@ex-ample.org", ".com", "@a.b"])
        for _ in range(3000)
    ]
    for address in corpus:
        try:
            expected = validate_email(address, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            expected = None
        try:
            got = normalise_email(address)
        except InvalidAddress:
            got = None
        assert got == expected, address


def test_mask_email_hides_the_address() -> None:
    assert mask_email("ana.lopez@example.com") == "a***@e***.com"


def _repeating_file(path: Path) -> Path:
    """12,000 addresses, then repeats of two of them after the first part (CHUNK addresses) was written."""
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["Email", "First Name", "Concern", "Marketing consent", "Lists"])
        for i in range(12_000):
            out.writerow([f"p{i}@example.com", f"P{i}", "acne", "yes", "spring"])
        out.writerow(["p5@example.com", "Later", "", "", "autumn"])  # a new name and a list: the later row wins
        out.writerow(["p10@example.com", "", "", "", ""])  # nothing new: the stored values stay
    return path


def test_a_repeat_after_the_first_part_of_a_large_file_is_a_duplicate_and_the_later_row_wins(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = _repeating_file(tmp_path / "repeats.csv")
    first = import_file(engine, source, vocabulary)  # into an empty store (PostgreSQL: the COPY path)
    assert (first.inserted, first.updated, first.duplicates, first.rejected) == (12_000, 0, 2, 0)
    assert first.conflicting_duplicates == 1 and first.reconciles
    with engine.connect() as conn:
        names = dict(conn.execute(select(contacts.c.email, contacts.c.first_name)).all())
        lists = {
            name
            for (name,) in conn.execute(
                select(contact_lists.c.list_name)
                .join(contacts, contacts.c.id == contact_lists.c.contact_id)
                .where(contacts.c.email == "p5@example.com")
            )
        }
        granted = conn.execute(select(func.count()).select_from(consent_events)).scalar_one()
    assert names["p5@example.com"] == "Later" and names["p10@example.com"] == "P10" and len(names) == 12_000
    assert lists == {"spring", "autumn"} and granted == 12_000  # consent recorded once per person
    again = import_file(engine, source, vocabulary)  # into a store that has them all
    assert (again.inserted, again.updated, again.duplicates, again.rejected) == (0, 12_000, 2, 0)
    assert again.reconciles
