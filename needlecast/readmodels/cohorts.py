"""The cohorts and revenue read model: the tables the console's Cohorts page and `needlecast cohorts`
show, built once (`reports.cohorts`, `reports.revenue`).

Contract: `cohort_tables(engine, workspace, by, now)` returns `CohortTables` (the lead cohorts by `by`,
"source" or "concern", revenue per campaign and currency, and the attribution models side by side) on the
clinic's clock and with its attribution rules; it is a `reports.export.Tables`, so `write_file` writes it as
CSV (the cohort table), XLSX (a sheet per table), Parquet (the cohort table) or JSON (every table).
`shown(data)` gives each table as (name, heading, column titles, rows of text) for a page or a terminal:
rates as percentages ("–" where a window is still open or a group is too small), values with two decimals,
a lead's source in words (`audience.sources.source_words`: "Imported from leads.csv"; the files and the
notebook keep the stored source, an exact key).
`cohort_by(text)` checks the page's or command's `by` and raises `InvalidRequest` naming it and the choices.
`kept_cohort_tables(engine, workspace, by)` is `cohort_tables` as the console's page shows it (`kept.Kept.look`:
never waited for; worked out in the kept figures' process where there is one, `cohorts_elsewhere`): worked out
again off the request when the audience, the ledger's newest row, the events, the clinic's events (bookings),
a workspace file or the clinic's day changes, the kept tables shown meanwhile (`updating`); none the first
time (`ready` False: the page shows a placeholder and updates itself). At 200,000 contacts the tables took
about 8 s of CPU on every view before they were kept.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, func, select

from needlecast.audience.frame_cache import fingerprint
from needlecast.audience.sources import source_words
from needlecast.config import Workspace
from needlecast.errors import InvalidRequest
from needlecast.readmodels.elsewhere import Where, opened
from needlecast.readmodels.home import clinic_today
from needlecast.readmodels.kept import KEPT, Remote, Shown
from needlecast.readmodels.plans import heard_marks, workspace_marks
from needlecast.reports.cohorts import BY, load_cohorts
from needlecast.reports.export import SHEETS, cell_text, title, to_json, write_csv, write_parquet, write_xlsx
from needlecast.reports.revenue import load_revenue
from needlecast.store.schema import deliveries

MONEY = ("value", "value_per_delivered", "value_per_recipient", "last_click_value", "last_delivered_value")
FILE_KINDS = ("csv", "xlsx", "parquet", "json")


@dataclass
class CohortTables:
    cohorts: pd.DataFrame
    revenue: pd.DataFrame
    attribution: pd.DataFrame
    by: str = "source"
    time_zone: str = "UTC"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"cohorts": self.cohorts, "revenue": self.revenue, "attribution": self.attribution}


def cohort_by(text: str | None) -> str:
    by = (text or "source").strip() or "source"
    if by not in BY:
        raise InvalidRequest(f"by: '{by}' is not a grouping; choose {' or '.join(BY)}")
    return by


def cohort_tables(engine: Engine, workspace: Workspace, by: str, now: datetime) -> CohortTables:
    settings = workspace.settings
    revenue = load_revenue(engine, settings.attribution)
    return CohortTables(
        cohorts=load_cohorts(
            engine,
            by,
            now=now,
            time_zone=settings.clinic.time_zone,
            conversions=settings.attribution.conversions,
        ),
        revenue=revenue.campaigns,
        attribution=revenue.attribution,
        by=by,
        time_zone=settings.clinic.time_zone,
    )


def kept_cohort_tables(engine: Engine, workspace: Workspace, by: str) -> Shown[CohortTables]:
    """`cohort_tables` as the console shows it (see the module contract)."""
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(deliveries.c.id))).scalar()
        inputs = (fingerprint(conn), newest, heard_marks(conn), workspace_marks(workspace), clinic_today(workspace))
    where = Where.of(engine, workspace)
    remote = Remote(cohorts_elsewhere, (where, by)) if where is not None else None
    name = ("cohorts", str(workspace.root), str(engine.url), by)
    return KEPT.look(name, inputs, lambda: cohort_tables(engine, workspace, by, datetime.now(UTC)), remote=remote)


def cohorts_elsewhere(where: Where, by: str) -> CohortTables:
    """`cohort_tables` in the kept figures' process (`kept.Remote`), from its own engine."""
    engine, workspace, _ = opened(where)
    return cohort_tables(engine, workspace, by, datetime.now(UTC))


def _text(column: str, value: Any) -> str:
    if column == "source":
        return source_words(str(value))
    if column in MONEY:
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):,.2f}"
    return cell_text(column, value)


def shown(data: CohortTables) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """Every table as (name, heading, column titles, rows of cell text)."""
    out = []
    for name, table in data.tables().items():
        columns = [str(c) for c in table.columns]
        rows = [[_text(c, v) for c, v in zip(columns, row, strict=True)] for row in table.itertuples(index=False)]
        out.append((name, SHEETS.get(name, name), [title(c) for c in columns], rows))
    return out


def write_file(data: CohortTables, kind: str, target: Path | None) -> str | None:
    """Write the tables as `kind` to `target` (a file); CSV and JSON without a target are returned as text."""
    if kind not in FILE_KINDS:
        raise InvalidRequest(f"format: cohorts are written as {', '.join(FILE_KINDS)}, not {kind}")
    if kind == "json":
        if target is None:
            return to_json(data)
        target.write_text(to_json(data), encoding="utf-8")
    elif kind == "csv":
        if target is None:
            buffer = io.StringIO()
            write_csv(data, buffer)
            return buffer.getvalue()
        write_csv(data, target)
    elif target is None:
        raise InvalidRequest(f"format {kind} writes a file: name one")
    else:
        write_xlsx(data, target) if kind == "xlsx" else write_parquet(data, target)
    return None
