"""Journey entries, re-entry rules and the goal, on SQLite and PostgreSQL, with a frozen clock; a treatment
recall held back by a future booking and sent after its cancellation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from needlecast.accounts.roles import Actor
from needlecast.actions import journeys as journey_actions
from needlecast.config import Workspace
from needlecast.errors import PermissionDenied
from needlecast.store.schema import appointments, audit_log, contacts, signup_requests
from tests.journey_helpers import (
    NOW,
    journey_workspace,
    ledger_rows,
    positions,
    record_event,
    steps_of,
    store,
    sweep,
    where_is,
    write_journey,
)
from tests.journey_helpers import ids as lead_ids

ADMIN = Actor("user", "admin@example.com", 1, "admin")
ANALYST = Actor("user", "analyst@example.com", 2, "analyst")


@pytest.fixture()
def ws(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    return journey_workspace(workspace_dir, store_url, monkeypatch)


HELLO = """
steps:
  - {id: hello, template: emails/welcome}
  - {id: pause, kind: wait, delay: 2d}
  - {id: later, template: emails/deep_dive}
"""


def test_an_event_entry_admits_whoever_had_the_event_since_the_journey_started(ws: Workspace) -> None:
    write_journey(ws, "entry: {event: enquired}\n" + HELLO)
    engine = store(ws)
    leads = lead_ids(engine)
    assert sweep(ws, engine, NOW).entered == 0  # the journey starts now: nobody enquired since
    record_event(engine, leads["lead0"], "enquired", NOW + timedelta(hours=1), "e0")
    report = sweep(ws, engine, NOW + timedelta(hours=2))
    assert report.entered == 1 and steps_of(engine, leads["lead0"]) == ["hello"]


def test_a_confirmed_signup_entry_admits_whoever_confirmed_since_the_start(ws: Workspace) -> None:
    write_journey(ws, "entry: {signup: confirmed}\n" + HELLO)
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    with engine.begin() as conn:
        for name, confirmed in (("lead1", NOW + timedelta(hours=1)), ("lead2", None)):
            conn.execute(
                insert(signup_requests).values(
                    contact_id=leads[name],
                    first_name="",
                    concerns="",
                    marketing=True,
                    concern_consent=False,
                    marketing_wording="v1",
                    concern_wording="v1",
                    source="form",
                    address_hash="",
                    created_at=NOW,
                    confirmed_at=confirmed,
                )
            )
    assert sweep(ws, engine, NOW + timedelta(hours=2)).entered == 1
    assert steps_of(engine, leads["lead1"]) == ["hello"] and steps_of(engine, leads["lead2"]) == []


def test_a_segment_entry_admits_every_member_once_and_never_again(ws: Workspace) -> None:
    write_journey(ws, "entry: {segment: true}\nreentry: never\n" + HELLO)
    engine = store(ws)
    assert sweep(ws, engine, NOW).entered == 6
    sweep(ws, engine, NOW + timedelta(days=2))
    assert sweep(ws, engine, NOW + timedelta(days=60)).entered == 0
    assert len(ledger_rows(engine)) == 12


def test_reentry_after_30_days_starts_a_new_entry_whose_emails_are_new_ledger_rows(ws: Workspace) -> None:
    write_journey(ws, "entry: {segment: true}\nreentry: {after: 30d}\n" + HELLO)
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    sweep(ws, engine, NOW + timedelta(days=2))  # everyone done
    assert sweep(ws, engine, NOW + timedelta(days=29)).entered == 0
    assert sweep(ws, engine, NOW + timedelta(days=30)).entered == 6
    assert steps_of(engine, leads["lead0"]) == ["hello", "hello#2", "later"]
    assert where_is(engine, leads["lead0"]) == ("pause", "active", 2)


def test_reentry_each_event_enters_again_for_each_new_event_once_the_last_entry_ended(ws: Workspace) -> None:
    write_journey(ws, "entry: {event: no_show}\nreentry: each_event\n" + HELLO)
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    record_event(engine, leads["lead0"], "no_show", NOW + timedelta(hours=1), "n1")
    assert sweep(ws, engine, NOW + timedelta(hours=2)).entered == 1
    record_event(engine, leads["lead0"], "no_show", NOW + timedelta(days=1), "n2")  # while in it: not a second entry
    assert sweep(ws, engine, NOW + timedelta(days=1, hours=1)).entered == 0
    sweep(ws, engine, NOW + timedelta(days=3))  # the first entry ends
    assert sweep(ws, engine, NOW + timedelta(days=3, hours=1)).entered == 1  # the later no-show counts now
    assert sweep(ws, engine, NOW + timedelta(days=6)).entered == 0  # no newer event
    assert steps_of(engine, leads["lead0"]) == ["hello", "hello#2", "later", "later#2"]


def test_the_goal_exits_the_person_wherever_they_are_as_a_conversion(ws: Workspace) -> None:
    write_journey(ws, "goal: {event: booked}\n" + HELLO)
    engine = store(ws)
    leads = lead_ids(engine)
    sweep(ws, engine, NOW)
    record_event(engine, leads["lead4"], "booked", NOW + timedelta(days=1), "b4")
    report = sweep(ws, engine, NOW + timedelta(days=1, hours=1))
    assert report.converted == 1
    assert where_is(engine, leads["lead4"]) == ("pause", "converted", 1)
    sweep(ws, engine, NOW + timedelta(days=2))
    assert steps_of(engine, leads["lead4"]) == ["hello"] and steps_of(engine, leads["lead0"]) == ["hello", "later"]


RECALL = """
entry: {date: last_treatment_at, after: 90d, where: [{field: last_treatment, equals: anti-wrinkle}],
        unless: future_appointment}
reentry: each_event
steps:
  - {id: recall, template: emails/consultation}
"""


def test_a_recall_is_silent_while_a_future_appointment_exists_and_sent_after_it_is_cancelled(ws: Workspace) -> None:
    write_journey(ws, RECALL)
    engine = store(ws)
    leads = lead_ids(engine)
    treated = (NOW + timedelta(days=2) - timedelta(days=90)).date().isoformat()  # 90 days after: NOW + 2 days
    with engine.begin() as conn:
        conn.execute(
            update(contacts).values(attributes={"last_treatment_at": treated, "last_treatment": "anti-wrinkle"})
        )
        conn.execute(
            update(contacts)
            .where(contacts.c.id == leads["lead5"])
            .values(attributes={"last_treatment_at": treated, "last_treatment": "peel"})
        )
        conn.execute(
            insert(appointments).values(
                appointment="calendly:1",
                email_hash="",
                contact_id=leads["lead0"],
                treatment="anti-wrinkle",
                appointment_type="Consultation",
                starts_at=NOW + timedelta(days=10),
                open=True,
                last_event_at=NOW,
                updated_at=NOW,
            )
        )
    assert sweep(ws, engine, NOW).entered == 0  # day 88: not yet
    report = sweep(ws, engine, NOW + timedelta(days=2))  # day 90 in London
    assert report.entered == 4  # lead0 has a booking ahead; lead5's treatment was another one
    assert steps_of(engine, leads["lead0"]) == [] and steps_of(engine, leads["lead5"]) == []
    with engine.begin() as conn:  # the booking is cancelled
        conn.execute(update(appointments).values(open=False, updated_at=NOW + timedelta(days=3)))
    assert sweep(ws, engine, NOW + timedelta(days=3)).entered == 1
    assert steps_of(engine, leads["lead0"]) == ["recall"]
    assert sweep(ws, engine, NOW + timedelta(days=4)).entered == 0  # once per treatment date


def test_the_api_and_console_entry_enters_a_selection_once_and_is_audited(ws: Workspace) -> None:
    write_journey(ws, "entry: {manual: true}\n" + HELLO)
    engine = store(ws)
    leads = lead_ids(engine)
    assert sweep(ws, engine, NOW).entered == 0
    with pytest.raises(PermissionDenied):
        journey_actions.enter(engine, ws, ANALYST, "j", [leads["lead0"]], now=NOW)
    chosen = [leads["lead0"], leads["lead1"], 999_999]
    result = journey_actions.enter(engine, ws, ADMIN, "j", chosen, now=NOW)
    assert sorted(result.entered) == sorted(chosen[:2]) and result.unknown == [999_999]
    again = journey_actions.enter(engine, ws, ADMIN, "j", chosen[:1], now=NOW + timedelta(minutes=1))
    assert again.entered == [] and again.already_in == [leads["lead0"]]
    sweep(ws, engine, NOW + timedelta(minutes=2))
    assert {c for _, c in ledger_rows(engine)} == set(chosen[:2])
    assert len(positions(engine)) == 2
    with engine.connect() as conn:
        details = conn.execute(select(audit_log.c.detail).where(audit_log.c.action == "journey.entered")).scalars()
        assert all("@" not in d for d in details)


def test_a_past_date_wait_and_a_missing_date_never_strand_anyone(ws: Workspace) -> None:
    write_journey(
        ws,
        """
steps:
  - {id: before-visit, kind: wait, until_date: next_visit, offset: -2d}
  - {id: reminder, template: emails/consultation}
""",
    )
    engine = store(ws)
    leads = lead_ids(engine)
    with engine.begin() as conn:
        conn.execute(update(contacts).values(attributes={"next_visit": "2026-11-01"}))  # already past
    sweep(ws, engine, NOW)
    assert steps_of(engine, leads["lead0"]) == ["reminder"]
    assert {where_is(engine, c)[1] for c in leads.values()} == {"done"}
    assert datetime(2026, 11, 1, tzinfo=UTC) < NOW
