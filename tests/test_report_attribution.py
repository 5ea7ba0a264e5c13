"""The comparison's bookings attributed in the database (`store.reports.credited_emails`) against the attribution
a campaign's report makes in pandas (`statistics.attribution.attribute` over `delivery_flags`), on SQLite and
PostgreSQL; and the comparison's counting split into ranges of the ledger (`store.reports.count_groups`)
against one statement.

Hypothesis generates a few people with emails of two campaigns (some not sent, some bounced, dropped or
delivered by an event or by the ledger's outcome), clicks at moments that tie, fall on the edges of the
attribution window and outside it, and bookings linked to their person by id, by the address hash only, or to
nobody; with windows of one and seven days. Every booking must be credited to the same email (or to none)
both ways, and each credited email must carry its group, day and fate as the report counts them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert

from needlecast.reports import groups
from needlecast.reports.groups import utc_offsets
from needlecast.statistics.attribution import attribute
from needlecast.statistics.engagement import conversion_events, delivery_flags, ledger_and_events
from needlecast.store import reports as sql
from needlecast.store.schema import contact_events, contacts, deliveries, events

BASE = datetime(2026, 3, 27, 23, 30, tzinfo=UTC)  # London's clocks go forward two days later
HOURS = [0, 1, 24, 47.5, 48, 168, 169, -1]  # a booking's or click's moment, hours after BASE
ZONE = "Europe/London"


@dataclass(frozen=True)
class Email:
    person: int
    campaign: str
    sent: bool
    sent_hours: float
    fate: str  # the event it had ("" none), or "outcome:<ledger outcome>"
    clicks: tuple[float, ...]


@dataclass(frozen=True)
class Booking:
    person: int | None  # None: nobody; a person may be linked by id or by the address hash only
    by_hash: bool
    hours: float
    value: float | None


emails = st.lists(
    st.builds(
        Email,
        person=st.integers(1, 3),
        campaign=st.sampled_from(["spring", "autumn"]),
        sent=st.sampled_from([True, True, True, False]),
        sent_hours=st.sampled_from([-170.0, -168.0, -24.0, -1.0, 0.0, 0.0]),
        fate=st.sampled_from(["", "delivered", "bounced", "blocked", "dropped", "outcome:bounced", "outcome:dropped"]),
        clicks=st.lists(st.sampled_from(HOURS), max_size=3).map(tuple),
    ),
    max_size=8,
)
bookings = st.lists(
    st.builds(
        Booking,
        person=st.sampled_from([1, 2, 3, None]),
        by_hash=st.booleans(),
        hours=st.sampled_from(HOURS),
        value=st.sampled_from([60.0, 0.1, None]),
    ),
    min_size=1,
    max_size=5,
)


def at(hours: float) -> datetime:
    return BASE + timedelta(hours=hours)


def store(engine: Engine, generated: list[Email], booked: list[Booking]) -> None:
    with engine.begin() as conn:
        for table in (events, contact_events, deliveries, contacts):
            conn.execute(delete(table))
        for person in (1, 2, 3):
            conn.execute(
                insert(contacts).values(
                    id=person,
                    email=f"p{person}@example.com",
                    email_hash=f"h{person}",
                    concerns="",
                    time_zone="",
                    locale="",
                    tags="",
                    status="active",
                    marketing_consent=True,
                    concern_consent=True,
                    attributes={},
                    signed_up_at=BASE,
                    created_at=BASE,
                    updated_at=BASE,
                )
            )
        used: set[tuple[str, int]] = set()
        for i, email in enumerate(generated, start=1):
            if (email.campaign, email.person) in used:  # one email per campaign and person (the ledger's key)
                continue
            used.add((email.campaign, email.person))
            outcome = email.fate.split(":")[1] if email.fate.startswith("outcome:") else ""
            conn.execute(
                insert(deliveries).values(
                    id=i,
                    campaign_id=email.campaign,
                    step_id="only",
                    contact_id=email.person,
                    segment="everyone",
                    variant="acne",
                    arm="",
                    status="sent" if email.sent else "queued",
                    due_at=at(email.sent_hours),
                    claim_token="",
                    sent_at=at(email.sent_hours) if email.sent else None,
                    message_id=f"m{i}",
                    error="",
                    attempts=1,
                    created_at=BASE,
                    updated_at=BASE,
                    outcome=outcome,
                    timing="",
                    request_id="",
                )
            )
            kinds = [("clicked", hours) for hours in email.clicks]
            if email.fate and not outcome:
                kinds.append((email.fate, email.sent_hours + 0.5))
            for n, (kind, hours) in enumerate(kinds):
                conn.execute(
                    insert(events).values(
                        provider_event_id=f"e{i}-{n}",
                        kind=kind,
                        delivery_id=i,
                        campaign_id=email.campaign,
                        step_id="only",
                        message_id="",
                        email_hash="",
                        occurred_at=at(hours),
                        received_at=BASE,
                        detail="",
                        raw={},
                    )
                )
        for n, booking in enumerate(booked):
            conn.execute(
                insert(contact_events).values(
                    source_id=f"b{n}",
                    email_hash=f"h{booking.person}" if booking.person else "h-nobody",
                    contact_id=None if booking.by_hash or booking.person is None else booking.person,
                    type="booked",
                    occurred_at=at(booking.hours),
                    value=booking.value,
                    currency="GBP",
                    source="test",
                    received_at=BASE,
                    treatment="",
                    appointment_at=None,
                )
            )


def credited_both_ways(engine: Engine, window_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(in SQL, in pandas): per credited booking, its email, group, day and fate."""
    with engine.connect() as conn:
        offsets = groups._counted(conn, ZONE)[0]  # as the comparison works them out
        found = sql.credited_emails(conn, offsets, ("booked",), window_days)
    ledger, stored = ledger_and_events(engine, None, None)
    flags = delivery_flags(ledger, stored)
    credited = attribute(flags, stored, conversion_events(engine, ("booked",), None), window_days)
    credited = credited.dropna(subset=["delivery_id"]).astype({"delivery_id": "int64"})
    emails = flags.assign(
        day=(flags["sent_at"].dt.tz_convert(ZONE).dt.tz_localize(None).dt.normalize() - pd.Timestamp(0)).dt.days,
        delivered=flags["delivered"].astype("int64"),
    )
    wanted = credited[["conversion_id", "delivery_id"]].merge(
        emails.rename(columns={"id": "delivery_id"})[["delivery_id", *sql.KEYS, "delivered"]], on="delivery_id"
    )
    return found, wanted


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=emails, booked=bookings, window_days=st.sampled_from([1, 7]))
def test_bookings_are_credited_in_the_database_as_a_campaigns_report_credits_them(
    engine: Engine, generated: list[Email], booked: list[Booking], window_days: int
) -> None:
    store(engine, generated, booked)
    found, wanted = credited_both_ways(engine, window_days)
    columns = ["conversion_id", "delivery_id", *sql.KEYS, "delivered"]
    found = found[columns].astype({"delivery_id": "int64", "day": "int64", "delivered": "int64"})
    pd.testing.assert_frame_equal(
        found.sort_values("conversion_id").reset_index(drop=True),
        wanted[columns].astype({"day": "int64"}).sort_values("conversion_id").reset_index(drop=True),
        check_dtype=False,
    )


def test_a_tie_goes_to_the_later_email_and_the_window_includes_both_ends(engine: Engine) -> None:
    """Two emails clicked at the same moment: the later delivery id is credited; a booking exactly seven days
    after a click, or at the very moment of one, is credited to it; without a click, the last email sent
    within the window and neither bounced nor dropped is."""
    store(
        engine,
        [
            Email(1, "spring", True, -1.0, "delivered", (0.0,)),
            Email(1, "autumn", True, -1.0, "", (0.0,)),
            Email(2, "spring", True, -168.0, "", (-168.0,)),
            Email(3, "spring", True, -24.0, "dropped", ()),
            Email(3, "autumn", True, -170.0, "", ()),
            Email(3, "summer", True, -1.0, "outcome:bounced", ()),
        ],
        [Booking(1, False, 0.0, 60.0), Booking(2, True, 0.0, None), Booking(3, False, 0.0, 60.0)],
    )
    found, wanted = credited_both_ways(engine, 7)
    assert dict(zip(found["conversion_id"], found["delivery_id"], strict=True)) == {"b0": 2, "b1": 3}
    assert sorted(wanted["conversion_id"]) == ["b0", "b1"]


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_the_ledger_counted_in_ranges_gives_the_counts_of_one_statement(engine: Engine, parts: int) -> None:
    """`count_groups` on SQLite counts ranges of the ledger at once (each in its own thread) and sums them:
    the same rows as one statement (PostgreSQL counts in one statement whatever `parts` says)."""
    store(
        engine,
        [
            Email(person, campaign, True, hours, fate, clicks)
            for person in (1, 2, 3)
            for campaign, hours, fate, clicks in [
                ("spring", -24.0, "delivered", (1.0,)),
                ("autumn", 0.0, "bounced", ()),
                ("summer", 1.0, "", (24.0, 48.0)),
            ]
        ],
        [Booking(1, False, 1.0, 60.0)],
    )
    with engine.connect() as conn:
        offsets = utc_offsets(ZONE, at(-48), at(48))
        whole = sql.email_groups(conn, offsets)
        split = sql.count_groups(conn, offsets, parts)
    assert int(whole["emails"].sum()) == 9
    pd.testing.assert_frame_equal(whole.reset_index(drop=True), split.reset_index(drop=True))


@pytest.mark.database_independent  # SQLite alone: PostgreSQL counts in one statement, in its server
def test_the_ranges_of_the_ledger_are_counted_at_the_same_time_on_sqlite(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a thread per range, every range's statement is running before any of them finishes: each waits at
    a barrier that only opens when all `parts` have reached it (a count that waited for the others first would
    never open it)."""
    assert engine.dialect.name == "sqlite"
    store(engine, [Email(person, "spring", True, -24.0, "delivered", ()) for person in (1, 2, 3, 4)], [])
    parts = 3
    together = threading.Barrier(parts, timeout=60)
    one_statement = sql.email_groups

    def counted_together(conn: Any, offsets: Any, ids: Any = None) -> pd.DataFrame:
        together.wait()  # raises BrokenBarrierError when the ranges are counted one after another
        return one_statement(conn, offsets, ids)

    monkeypatch.setattr(sql, "email_groups", counted_together)
    with engine.connect() as conn:
        offsets = utc_offsets(ZONE, at(-48), at(48))
        split = sql.count_groups(conn, offsets, parts, threads=parts)
    assert int(split["emails"].sum()) == 4


@pytest.mark.database_independent  # the threads' sharing of the ranges: no database's work
def test_a_thread_that_finishes_its_range_takes_the_next_while_another_is_still_busy(engine: Engine) -> None:
    """Ranges of unequal work (a ledger's sent emails are its older rows) are shared out: while this thread is
    held on the first range, the other thread works every other range, each exactly once, and the results
    come back in the ranges' order."""
    ranges = [(n * 10, n * 10 + 9) for n in range(6)]
    others_done = threading.Event()
    worked: list[tuple[int, int]] = []

    def work(conn: Any, ids: tuple[int, int]) -> int:
        if ids == ranges[0]:
            assert others_done.wait(60), f"the other thread took only {worked} while this one was busy"
        worked.append(ids)
        if len(worked) == len(ranges) - 1:  # every range but the first, all by the other thread
            others_done.set()
        return ids[0]

    with engine.connect() as conn:
        found = sql._in_ranges(conn, ranges, work, threads=2)
    assert found == [low for low, _ in ranges]
    assert sorted(worked) == ranges and worked[-1] == ranges[0]


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_the_first_and_last_sending_counted_in_ranges_are_those_of_one_statement(engine: Engine, parts: int) -> None:
    """Every group's first and last sending, which prove that the clinic's offsets covered every email: the same
    whether the ledger is counted in ranges (SQLite) or in one statement."""
    store(
        engine,
        [
            Email(person, campaign, True, hours, "delivered", ())
            for person, campaign, hours in [
                (1, "spring", -30.0),
                (2, "spring", 5.0),
                (3, "autumn", -2.0),
                (1, "autumn", 40.0),
                (2, "summer", 1.0),
            ]
        ],
        [],
    )
    with engine.connect() as conn:
        offsets = utc_offsets(ZONE, at(-48), at(48))
        for counted in (sql.count_groups(conn, offsets, parts), sql.count_groups(conn, offsets, 1)):
            assert (counted["first_sent"].min(), counted["last_sent"].max()) == (at(-30), at(40))
            spring = counted[counted["campaign_id"] == "spring"]
            assert (spring["first_sent"].min(), spring["last_sent"].max()) == (at(-30), at(5))
        assert sql.likely_sent_bounds(conn) == (at(-30), at(1))  # the first and last sent rows by id


def test_an_email_sent_long_before_the_first_sent_row_is_counted_again_on_its_own_local_day(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The offsets are worked out over a span from `EARLIER` before the first sent row by id (here in summer:
    London an hour ahead); an email sent long before it, in winter at 23:30 UTC (the same day in London), lies
    outside: the counting's own first sending shows it, and the ledger is counted again with the offsets of the
    true span, so that every email counts on its day on the clinic's clock (with the summer offset it would
    have counted on the next day)."""
    summer = at(24 * 120)  # 25 July 2026, 23:30 UTC: 26 July in London
    winter = datetime(2024, 1, 15, 23, 30, tzinfo=UTC)  # 15 January 2024 in London
    moments = [summer, winter, summer + timedelta(hours=1)]  # in the ledger's order: the first is not the first sent
    assert winter < summer - groups.EARLIER - timedelta(days=1)
    store(
        engine,
        [
            Email(person, "spring", True, (moment - BASE) / timedelta(hours=1), "delivered", ())
            for person, moment in enumerate(moments, start=1)
        ],
        [],
    )
    counting, counted = sql.count_groups, []

    def count_groups(*args: Any, **kwargs: Any) -> pd.DataFrame:
        counted.append(args[1])
        return counting(*args, **kwargs)

    monkeypatch.setattr(sql, "count_groups", count_groups)
    found = groups.email_groups(engine, None, ZONE)
    assert len(counted) == 2 and counted[1][0][0] < winter.timestamp()  # counted again over the true span
    assert found.groupby("day")["emails"].sum().to_dict() == {
        pd.Timestamp("2024-01-15"): 1,
        pd.Timestamp("2026-07-26"): 2,
    }
    assert "first_sent" not in found.columns and "last_sent" not in found.columns


def test_an_email_sent_a_moment_either_side_of_a_clock_change_at_midnight_counts_on_its_own_local_day(
    engine: Engine,
) -> None:
    """Santiago's clocks go forward at local midnight (23:59:59 -04 is followed by 01:00:00 -03), so the second
    of the change decides the day: the counting's offset changes at that second, to the microsecond."""
    zone = "America/Santiago"
    pieces = utc_offsets(zone, datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 9, 10, tzinfo=UTC))
    assert len(pieces) == 2, pieces  # the change of 6 September 2026
    change = datetime.fromtimestamp(pieces[1][0], UTC)
    moments = [
        change - timedelta(days=1),
        change - timedelta(seconds=1),
        change - timedelta(microseconds=1),
        change,
        change + timedelta(microseconds=1),
        change + timedelta(seconds=1),
    ]
    slots = [(person, campaign) for campaign in ("spring", "autumn") for person in (1, 2, 3)]
    store(
        engine,
        [
            Email(person, campaign, True, (moment - BASE) / timedelta(hours=1), "delivered", ())
            for (person, campaign), moment in zip(slots, moments, strict=True)
        ],
        [],
    )
    with engine.connect() as conn:
        counted = sql.email_groups(conn, utc_offsets(zone, min(moments), max(moments)))
    local_days = pd.Series([pd.Timestamp(m).tz_convert(zone).tz_localize(None).normalize() for m in moments])
    wanted = (local_days - pd.Timestamp("1970-01-01")).dt.days.value_counts().sort_index()
    found = counted.groupby(counted["day"].astype("int64"))["emails"].sum().sort_index()
    assert found.to_dict() == wanted.to_dict()
    assert wanted.tolist() == [3, 3]  # 5 September (its midnight, its last second and microsecond), 6 September
