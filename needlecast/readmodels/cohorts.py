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
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from needlecast.audience.sources import source_words
from needlecast.config import Workspace
from needlecast.errors import InvalidRequest
from needlecast.reports.cohorts import BY, load_cohorts
from needlecast.reports.export import SHEETS, cell_text, title, to_json, write_csv, write_parquet, write_xlsx
from needlecast.reports.revenue import load_revenue

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
