"""The web app's contacts frame is read again after every kind of change to the audience (SQLite and
PostgreSQL), and not otherwise."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select

from needlecast.audience import recipient_changes
from needlecast.audience.consent import record_consent
from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.importer import import_file
from needlecast.audience.suppression import erase, suppress
from needlecast.content.vocabulary import Vocabulary
from needlecast.store.schema import contacts


def _id(engine: Engine, email: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(contacts.c.id).where(contacts.c.email == email)).scalar_one())


def test_the_frame_is_reused_until_the_audience_changes_in_any_way(
    engine: Engine, vocabulary: Vocabulary, workspace_dir: Path, tmp_path: Path
) -> None:
    import_file(engine, workspace_dir / "audiences" / "sample.csv", vocabulary)
    cache = FrameCache(engine)
    with engine.connect() as conn:
        first = cache.frame(conn)
        assert cache.frame(conn) is first  # nothing changed: not read again
    quinn = _id(engine, "quinn.1@example.org")

    def fresh() -> object:
        with engine.connect() as conn:
            return cache.frame(conn)

    with engine.begin() as conn:
        suppress(conn, "quinn.1@example.org", "unsubscribed")
    frame = fresh()
    assert frame is not first and frame.set_index("id").loc[quinn, "suppressed"] == "unsubscribed"  # type: ignore[attr-defined]

    other = _id(engine, "quinn.30@example.com")
    with engine.begin() as conn:
        record_consent(conn, other, "concern", False, source="test")
    after_consent = fresh()
    assert after_consent is not frame and not after_consent.set_index("id").loc[other, "concern_consent"]  # type: ignore[attr-defined]

    with engine.begin() as conn:
        recipient_changes.set_concerns(conn, other, ["ageing"])
    after_preferences = fresh()
    assert after_preferences is not after_consent
    assert after_preferences.set_index("id").loc[other, "concerns"] == "ageing"  # type: ignore[attr-defined]

    extra = tmp_path / "more.csv"
    extra.write_text("Email,First Name,Marketing consent\nnew.person@example.org,New,yes\n")
    import_file(engine, extra, vocabulary)
    after_import = fresh()
    assert len(after_import) == len(after_preferences) + 1  # type: ignore[arg-type]

    with engine.begin() as conn:
        erase(conn, "new.person@example.org")
    assert len(fresh()) == len(after_preferences)  # type: ignore[arg-type]


def test_an_old_frame_is_read_again_after_its_time_to_live(
    engine: Engine, vocabulary: Vocabulary, workspace_dir: Path
) -> None:
    import_file(engine, workspace_dir / "audiences" / "sample.csv", vocabulary)
    cache = FrameCache(engine, ttl_seconds=0)
    with engine.connect() as conn:
        assert cache.frame(conn) is not cache.frame(conn)


def test_a_segment_is_evaluated_once_per_frame_and_again_when_the_audience_changes(
    engine: Engine, vocabulary: Vocabulary, workspace_dir: Path
) -> None:
    from datetime import UTC, datetime

    from needlecast.audience.membership import evaluate
    from needlecast.audience.segments import load_segments

    import_file(engine, workspace_dir / "audiences" / "sample.csv", vocabulary)
    segment = load_segments(workspace_dir / "audiences" / "segments.yaml", vocabulary.names)["acne"]
    cache, now = FrameCache(engine), datetime.now(UTC)
    with engine.connect() as conn:
        first = cache.segment(conn, segment, now)
        assert cache.segment(conn, segment, now) is first
        assert first.size == evaluate(segment, cache.frame(conn), now).size
    member = int(first.members["id"].iloc[0])
    with engine.connect() as conn:
        email = conn.execute(select(contacts.c.email).where(contacts.c.id == member)).scalar_one()
    with engine.begin() as conn:
        suppress(conn, email, "complaint")
    with engine.connect() as conn:
        again = cache.segment(conn, segment, now)
    assert again.size == first.size - 1 and again.excluded["suppressed: complaint"] == 1
