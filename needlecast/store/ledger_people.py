"""The people a campaign's ledger already has a row for, read as one row per step.

Contract: `ledger_people(conn, campaign_id, skipped_prefix)` gives, for each step of the campaign that has
ledger rows, (1) the contact ids of those rows, whatever their state (an erased person's row keeps its
negated id), and (2) the contact ids of its skipped rows whose reason starts with `skipped_prefix`; each an
int64 array, in no particular order. Steps without rows are absent.

Why one row per step: a plan tests every member of a segment against these (200,000 rows for a campaign
being sent to 200,000). Fetched row by row, each row crossed the driver into a Python tuple, and SQLite's
driver gave up the interpreter's lock at every row, so a send running in the same process took it each
time: most of the "Send now" confirmation's time during a send. The database joins each step's ids into one
string (SQLite's `group_concat`, PostgreSQL's `string_agg`), and numpy parses the strings in a few
milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, Connection, Text, and_, cast, func, literal, select

from needlecast.store.delivery.protocol import SKIPPED
from needlecast.store.schema import deliveries


@dataclass(frozen=True)
class StepPeople:
    """One step's ledger rows: every contact id, and those skipped for the reason asked about."""

    contacts: np.ndarray
    skipped: np.ndarray


def ledger_people(conn: Connection, campaign_id: str, skipped_prefix: str) -> dict[str, StepPeople]:
    """Step id -> its ledger rows' people (see the module contract)."""
    d = deliveries.c
    mine = d.campaign_id == campaign_id
    capped = and_(d.status == SKIPPED, d.error.startswith(skipped_prefix, autoescape=True))
    if conn.dialect.name == "postgresql":
        # One pass over the campaign's rows (PostgreSQL reads them from the table either way: a send keeps
        # rewriting them, so the unique key alone cannot answer), the skipped ones picked out as it goes.
        both = select(d.step_id, _joined(conn, d.contact_id), _joined(conn, d.contact_id).filter(capped))
        return {
            str(step): StepPeople(_ids(every), _ids(held))
            for step, every, held in conn.execute(both.where(mine).group_by(d.step_id)).all()
        }
    # Two statements on SQLite: the first reads the ledger's unique key alone (no row of the table, which a
    # send keeps rewriting), the second the campaign's rows in id order for the few skipped ones.
    every = select(d.step_id, _joined(conn, d.contact_id)).where(mine).group_by(d.step_id)
    skipped = select(d.step_id, _joined(conn, d.contact_id)).where(mine, capped).group_by(d.step_id)
    held = {str(step): _ids(text) for step, text in conn.execute(skipped).all()}
    return {str(step): StepPeople(_ids(text), held.get(str(step), _ids(None))) for step, text in conn.execute(every)}


def _joined(conn: Connection, ids: ColumnElement[int]) -> ColumnElement[str]:
    """The group's non-NULL ids as one comma-separated string (NULL when there is none)."""
    if conn.dialect.name == "postgresql":
        return func.string_agg(cast(ids, Text), literal(","))
    return func.group_concat(ids, ",")


def _ids(text: str | None) -> np.ndarray:
    """Comma-separated integers as an int64 array (numpy's text parser: no Python object per id)."""
    if not text:
        return np.zeros(0, dtype=np.int64)
    return np.fromstring(text, dtype=np.int64, sep=",")
