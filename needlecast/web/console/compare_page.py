"""The console's Reports page: every campaign side by side, from the query string (no script: links and a form).

Contract: `compare_filters(query)` reads the filters (`from`, `to` as dates, `kind`, `segment`, `concern`,
`article`, `sort` a column, `order` asc or desc) and raises `InvalidRequest` naming the field and the fix;
`compare_page(comparison, query)` is the template's context: what `readmodels.reports.comparison_page` shows
(the campaigns' rows as text, the campaign linking to its report, the totals row, the change on the previous
period, the trend charts with their tables, and which content converts), with each column's sort link (the
current one marked for screen readers) and the downloads' query.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any
from urllib.parse import urlencode

from needlecast.errors import InvalidRequest
from needlecast.readmodels.reports import Comparison, Filters, comparison_filters, comparison_page

DOWNLOADS = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "parquet": "application/vnd.apache.parquet",
}
FILTER_KEYS = ("from", "to", "kind", "segment", "concern", "article")


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
    return comparison_filters(
        _day(query, "from"),
        _day(query, "to"),
        kind=query.get("kind", ""),
        segment=query.get("segment", ""),
        concern=query.get("concern", ""),
        article=query.get("article", ""),
        sort=query.get("sort", "sent") or "sent",
        descending=order == "desc",
    )


def _sort_links(columns: list[tuple[str, str]], filters: Filters, kept: dict[str, str]) -> list[dict[str, str]]:
    """Per column: its title, the link that sorts by it (largest first; again: smallest first), aria-sort."""
    links = []
    for column, heading in columns:
        current = filters.sort == column
        order = "asc" if current and filters.descending else "desc"
        state = ("descending" if filters.descending else "ascending") if current else ""
        links.append(
            {"title": heading, "href": "?" + urlencode({**kept, "sort": column, "order": order}), "sort": state}
        )
    return links


def compare_page(data: Comparison, query: Mapping[str, str]) -> dict[str, Any]:
    kept = {k: query[k] for k in FILTER_KEYS if query.get(k)}
    sortable = {k: v for k, v in query.items() if k in (*FILTER_KEYS, "sort", "order")}
    filters = data.filters
    shown = comparison_page(data)
    return {
        "headers": _sort_links(shown.columns, filters, kept),
        "rows": shown.rows,
        "totals": shown.totals,
        "change": shown.change,
        "period": bool(filters.start and filters.end),
        "previous": filters.previous(),
        "filters": filters,
        "options": data.options,
        "trend_concern": shown.trend_concern,
        "trend_article": shown.trend_article,
        "content_columns": shown.content_columns,
        "content_rows": shown.content_rows,
        "download_query": ("?" + urlencode(sortable)) if sortable else "",
        "time_zone": data.time_zone,
    }
