"""What an attacker or a careless operator tried: reused ids, hostile files, logs of failing paths, and
timing. Contract tests, on SQLite and PostgreSQL where they touch the store."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from needlecast import signing
from needlecast.audience.contacts import get_contact
from needlecast.audience.importer import import_file
from needlecast.audience.suppression import erase, is_erased
from needlecast.config import ImportSettings
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import AudienceFileError
from needlecast.logs import configure_logging
from needlecast.spreadsheet import original
from needlecast.store.engine import _alembic_config, make_engine, open_store
from needlecast.store.schema import contacts, deliveries, imports

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _csv(path: Path, rows: list[str], header: str = "Email,First Name,Marketing consent") -> Path:
    path.write_text(header + "\n" + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


def test_an_erased_contacts_id_is_never_given_to_the_next_person(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    import_file(engine, _csv(tmp_path / "a.csv", ["a@example.com,A,yes", "b@example.com,B,yes"]), vocabulary)
    with engine.begin() as conn:
        highest = int(get_contact(conn, "b@example.com")["id"])
        conn.execute(
            insert(deliveries),
            [
                {
                    "campaign_id": "c",
                    "step_id": "s",
                    "contact_id": highest,
                    "segment": "g",
                    "variant": "general",
                    "arm": "",
                    "status": "sent",
                    "due_at": NOW,
                    "claimed_at": None,
                    "claim_token": "",
                    "sent_at": NOW,
                    "message_id": "m",
                    "error": "",
                    "attempts": 1,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            ],
        )
        erase(conn, "b@example.com")
    import_file(engine, _csv(tmp_path / "c.csv", ["c@example.com,C,yes"]), vocabulary)
    with engine.connect() as conn:
        newcomer = int(get_contact(conn, "c@example.com")["id"])
        assert newcomer > highest  # the erased id is not handed out again
        assert is_erased(conn, highest) and not is_erased(conn, newcomer)
        linked = conn.execute(select(deliveries.c.contact_id).where(deliveries.c.campaign_id == "c")).scalars().all()
    assert linked and all(c < 0 for c in linked)  # the erased person's ledger rows point at nobody


def test_the_migration_keeps_ids_and_never_reuses_one_freed_before_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
        for contact_id, email in ((1, "a@example.com"), (2, "b@example.com")):
            conn.execute(
                text(
                    "INSERT INTO contacts (id, email, email_hash, first_name, last_name, concerns, time_zone, locale, "
                    "tags, status, marketing_consent, concern_consent, attributes, signed_up_at, created_at, "
                    "updated_at) VALUES (:id, :email, :hash, '', '', '', '', '', '', 'active', 1, 0, '{}', "
                    "'2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                ),
                {"id": contact_id, "email": email, "hash": email},
            )
        # contact 3 was erased under the old schema, but a ledger row still names it
        conn.execute(
            text(
                "INSERT INTO deliveries (campaign_id, step_id, contact_id, segment, variant, arm, status, due_at, "
                "claim_token, message_id, error, attempts, created_at, updated_at, outcome) VALUES ('c', 's', 3, 'g', "
                "'general', '', 'sent', '2026-01-01 00:00:00', '', '', '', 1, '2026-01-01 00:00:00', "
                "'2026-01-01 00:00:00', '')"
            )
        )
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    store = open_store(url)
    with store.begin() as conn:
        assert sorted(conn.execute(select(contacts.c.id)).scalars()) == [1, 2]
        conn.execute(
            text(
                "INSERT INTO contacts (email, email_hash, first_name, last_name, concerns, time_zone, locale, tags, "
                "status, marketing_consent, concern_consent, attributes, signed_up_at, created_at, updated_at) VALUES "
                "('new@example.com', 'new', '', '', '', '', '', '', 'active', 1, 0, '{}', '2026-01-01 00:00:00', "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
        assert conn.execute(select(contacts.c.id).where(contacts.c.email == "new@example.com")).scalar_one() == 4


def test_engines_never_quote_a_failing_statements_values(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    import_file(engine, _csv(tmp_path / "a.csv", ["secret.person@example.com,Secret,yes"]), vocabulary)
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        row = dict(get_contact(conn, "secret.person@example.com"))
        del row["id"]
        conn.execute(insert(contacts), row)
    message = str(caught.value)
    assert "secret.person" not in message.split("DETAIL")[0]  # SQLAlchemy's [parameters: ...] is hidden


def test_no_log_line_carries_an_address_when_a_driver_error_quotes_one(tmp_path: Path) -> None:
    log_file = tmp_path / "needlecast.log"
    configure_logging(logging.INFO, log_file)
    try:
        logger = logging.getLogger("needlecast.test")
        try:
            raise IntegrityError(
                "INSERT", {}, Exception("duplicate key: DETAIL: Key (email)=(secret.person@example.com) exists")
            )
        except IntegrityError:
            logger.exception("import failed for %s", "secret.person@example.com")
        logger.error("a message about %s and jo.bloggs@example.org", "x")
    finally:
        configure_logging(logging.WARNING)
    written = log_file.read_text()
    assert "import failed" in written and "Traceback" in written
    assert "@example" not in written and "secret.person" not in written
    assert "<address>" in written and "Key (email)=(<redacted>)" in written


def test_the_rejects_file_makes_formula_cells_inert_and_keeps_the_original(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    hostile = ["=cmd|' /C calc'!A0", "=2+5", "+SUM(A1)", "@x", "'quoted", "-1"]
    source = _csv(tmp_path / "a.csv", [f"not-an-address-{i},{cell},yes" for i, cell in enumerate(hostile)])
    summary = import_file(engine, source, vocabulary)
    assert summary.rejected == len(hostile)
    rows = list(csv.DictReader(summary.rejects_path.open(encoding="utf-8")))
    written = [row["First Name"] for row in rows]
    assert all(cell.startswith("'") for cell in written)
    assert [original(cell) for cell in written] == hostile


def test_a_huge_cell_is_one_clear_error_and_the_failed_attempt_is_recorded(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = tmp_path / "big.csv"
    source.write_text("Email,First Name\nok@example.com,Ok\nbig@example.com," + "x" * 10_000_000 + "\n")
    with pytest.raises(AudienceFileError, match=r"line 3: a cell is longer than 100,000 characters"):
        import_file(engine, source, vocabulary)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar() == 0
        status, error = conn.execute(select(imports.c.status, imports.c.error)).one()
    assert status == "failed" and "max_cell_chars" in error


def test_too_many_rows_or_columns_are_refused_naming_the_setting(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    source = _csv(tmp_path / "a.csv", [f"p{i}@example.com,P,yes" for i in range(30)])
    with pytest.raises(AudienceFileError, match=r"line 22: more than 20 rows \(\[imports\] max_rows\)"):
        import_file(engine, source, vocabulary, limits=ImportSettings(max_rows=20))
    wide = _csv(tmp_path / "w.csv", ["a@example.com"], header="Email," + ",".join(f"c{i}" for i in range(30)))
    with pytest.raises(AudienceFileError, match=r"31 columns, more than 10 \(\[imports\] max_columns\)"):
        import_file(engine, wide, vocabulary, limits=ImportSettings(max_columns=10))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(contacts)).scalar() == 0


def _xlsx_bomb(path: Path, rows: int) -> Path:
    """A workbook whose one sheet is `rows` identical rows: tiny packed, huge unpacked."""
    sheet = io.StringIO()
    sheet.write(
        '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
        'spreadsheetml/2006/main"><sheetData>'
    )
    sheet.write('<row r="1"><c r="A1" t="inlineStr"><is><t>Email</t></is></c></row>')
    line = '<row><c t="inlineStr"><is><t>someone@example.com</t></is></c></row>'
    sheet.write(line * rows)
    sheet.write("</sheetData></worksheet>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        )
        archive.writestr("xl/worksheets/sheet1.xml", sheet.getvalue())
    return path


def test_an_xlsx_that_unpacks_to_hundreds_of_times_its_size_is_refused_before_it_is_read(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    bomb = _xlsx_bomb(tmp_path / "bomb.xlsx", 400_000)
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(AudienceFileError, match=r"times their size.*max_xlsx_compression_ratio"):
        import_file(engine, bomb, vocabulary)
    with pytest.raises(AudienceFileError, match=r"max_xlsx_uncompressed_bytes"):
        import_file(
            engine,
            bomb,
            vocabulary,
            limits=ImportSettings(max_xlsx_uncompressed_bytes=1_000_000, max_xlsx_compression_ratio=10_000),
        )
    with engine.connect() as conn:
        assert [s for (s,) in conn.execute(select(imports.c.status))] == ["failed", "failed"]


def test_a_link_of_an_erased_person_signs_nothing_for_anyone(
    engine: Engine, vocabulary: Vocabulary, tmp_path: Path
) -> None:
    import_file(engine, _csv(tmp_path / "a.csv", ["z@example.com,Z,yes"]), vocabulary)
    with engine.begin() as conn:
        contact_id = int(get_contact(conn, "z@example.com")["id"])
        erase(conn, "z@example.com")
        token = signing.sign(b"k" * 40, signing.MANAGE, contact_id, "c")
        assert signing.verify(b"k" * 40, signing.MANAGE, token).contact_id == contact_id  # the MAC is fine...
        assert is_erased(conn, contact_id)  # ...but the pages refuse it (tests/test_tracking.py, over HTTP)


@pytest.mark.parametrize(
    ("backend", "accept_unsigned", "status"),
    [("sendgrid", False, 403), ("sendgrid", True, 200), ("outbox", False, 200)],
    ids=["sendgrid-refuses", "sendgrid-accepts-on-purpose", "outbox-dry-run"],
)
def test_unsigned_events_are_refused_unless_nothing_is_really_sent_or_they_are_accepted_on_purpose(
    workspace_dir: Path, monkeypatch: pytest.MonkeyPatch, backend: str, accept_unsigned: bool, status: int
) -> None:
    import httpx

    from needlecast.config import open_workspace
    from needlecast.web.local import serving

    config = workspace_dir / "needlecast.toml"
    text_ = config.read_text().replace('backend = "outbox"', f'backend = "{backend}"')
    if accept_unsigned:
        text_ = text_.replace("[tracking]\n", "[tracking]\naccept_unsigned_events = true\n")
    config.write_text(text_)
    monkeypatch.setenv("NEEDLECAST_SECRET", "s" * 40)
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", f"sqlite:///{workspace_dir / 'w.db'}")
    workspace = open_workspace(workspace_dir)
    engine = open_store(workspace.database_url)
    forged = b'[{"email": "victim@example.com", "event": "spamreport", "sg_event_id": "forged"}]'
    with serving(workspace, engine) as url:
        response = httpx.post(f"{url}/webhooks/sendgrid", content=forged, timeout=10)
    assert response.status_code == status
    from needlecast.audience.suppression import suppression_of

    with engine.connect() as conn:
        assert (suppression_of(conn, "victim@example.com") is None) == (status == 403)


def test_a_sendgrid_workspace_without_a_webhook_key_is_told_how_to_set_one(
    workspace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from needlecast.campaign.definition.checks import workspace_findings
    from needlecast.cli.service import _warn_about_webhook
    from needlecast.config import open_workspace

    config = workspace_dir / "needlecast.toml"
    config.write_text(config.read_text().replace('backend = "outbox"', 'backend = "sendgrid"'))
    monkeypatch.delenv("SENDGRID_WEBHOOK_PUBLIC_KEY", raising=False)
    workspace = open_workspace(workspace_dir)
    assert "config-webhook-unsigned" in {f.rule for f in workspace_findings(workspace)}
    buffer = io.StringIO()
    # The console writes to whatever sys.stderr is at the time: redirect it, never pin the console's file
    # (a monkeypatched `file` is restored to the stream captured for this test, and later tests lose stderr).
    with contextlib.redirect_stderr(buffer):
        _warn_about_webhook(workspace)
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in buffer.getvalue() and "refused (403)" in buffer.getvalue()
