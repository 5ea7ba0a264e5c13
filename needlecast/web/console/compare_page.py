"""The console's Reports page: every campaign side by side, from the query string (no script: links and a form).

Contract: `compare_filters(query)` reads the filters (`from`, `to` as dates, `kind`, `segment`, `concern`,
`article`, `sort` a column, `order` asc or desc) and raises `InvalidRequest` naming the field and the fix;
`compare_page(comparison, query)` is the template's context: the campaigns' rows as text (the campaign
linking to its report), the totals row, each column's sort link (the current one marked for screen readers),
the change on the previous period, the trend charts with their tables, and which content converts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from needlecast.errors import InvalidRequest
from needlecast.reports.compare import CHANGE_FIGURES, COMPARE_COLUMNS, Comparison, Filters, trend_charts
from needlecast.reports.export import cell_text, title

DOWNLOADS = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}
FILTER_KEYS = ("from", "to", "kind", "segment", "concern", "article")
RATE_WORDS = {"delivered": "Delivered", "sent": "Sent", "bookings_per_1000": "Bookings per 1,000 delivered"}


def _day(query: Mapping[str, str], key: str) -> date | None:
    text = query.get(key, "").strip()
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise InvalidRequest(f"{key}: '{text}' is not a date; pick one, or write it like 2026-11-01") from None


def compare_filters(query: Mapping[str, str]) -> Filters:
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"order: '{order}' must be asc or desc")
    return Filters(
        start=_day(query, "from"),
        end=_day(query, "to"),
        kind=query.get("kind", ""),
        segment=query.get("segment", ""),
        concern=query.get("concern", ""),
        article=query.get("article", ""),
        sort=query.get("sort", "sent") or "sent",
        descending=order == "desc",
    )


def _rows(table: pd.DataFrame, columns: list[str]) -> list[list[str]]:
    return [
        [cell_text(c, v) for c, v in zip(columns, row, strict=True)] for row in table[columns].itertuples(index=False)
    ]


def _sort_links(filters: Filters, kept: dict[str, str]) -> list[dict[str, str]]:
    """Per column: its title, the link that sorts by it (largest first; again: smallest first), aria-sort."""
    links = []
    for column in COMPARE_COLUMNS:
        current = filters.sort == column
        order = "asc" if current and filters.descending else "desc"
        state = ("descending" if filters.descending else "ascending") if current else ""
        links.append(
            {"title": title(column), "href": "?" + urlencode({**kept, "sort": column, "order": order}), "sort": state}
        )
    return links


def _change_rows(change: pd.DataFrame) -> list[list[str]]:
    if change.empty:
        return []
    row = change.iloc[0]
    shown = []
    for figure in CHANGE_FIGURES:
        name = RATE_WORDS.get(figure) or title(figure)
        cells = [row[figure], row[f"previous_{figure}"], row[f"change_{figure}"]]
        text = [cell_text(figure, v) for v in cells]
        if figure.endswith("_rate") and not pd.isna(cells[2]):
            text[2] = f"{float(cells[2]) * 100:+.1f} points"
        elif not pd.isna(cells[2]):
            text[2] = f"{float(cells[2]):+,.1f}" if figure == "bookings_per_1000" else f"{int(cells[2]):+,d}"
        if figure == "bookings_per_1000":
            text[:2] = ["–" if pd.isna(v) else f"{float(v):.1f}" for v in cells[:2]]
        shown.append([name, *text])
    return shown


def _trend(table: pd.DataFrame, by: str) -> dict[str, Any]:
    columns = list(table.columns)
    return {"charts": trend_charts(table, by), "columns": [title(c) for c in columns], "rows": _rows(table, columns)}


def compare_page(data: Comparison, query: Mapping[str, str]) -> dict[str, Any]:
    kept = {k: query[k] for k in FILTER_KEYS if query.get(k)}
    sortable = {k: v for k, v in query.items() if k in (*FILTER_KEYS, "sort", "order")}
    filters = data.filters
    content_columns = list(data.content.columns)
    return {
        "headers": _sort_links(filters, kept),
        "rows": list(zip(data.campaigns["campaign_id"], _rows(data.campaigns, COMPARE_COLUMNS), strict=True)),
        "totals": _rows(data.totals, COMPARE_COLUMNS)[0],
        "change": _change_rows(data.change),
        "period": bool(filters.start and filters.end),
        "previous": filters.previous(),
        "filters": filters,
        "options": data.options,
        "trend_concern": _trend(data.trend_concern, "concern"),
        "trend_article": _trend(data.trend_article, "article"),
        "content_columns": [title(c) for c in content_columns],
        "content_rows": [
            [
                cell_text(c, v) if "per_1000" not in c else f"{float(v):.1f}"
                for c, v in zip(content_columns, r, strict=True)
            ]
            for r in data.content.itertuples(index=False)
        ],
        "download_query": ("?" + urlencode(sortable)) if sortable else "",
        "time_zone": data.time_zone,
    }
