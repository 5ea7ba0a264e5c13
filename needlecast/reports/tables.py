"""The report's tables as people see them: which columns each table shows, in which order, and which tables
a terminal prints. One definition for every face that shows a report to a person: the terminal
(`needlecast report`), the HTML report and the console's Reports page (both through `export.html_tables`),
built into text by `needlecast.readmodels.reports`.

Contract: a table named in `SHOWN_COLUMNS` shows those of its columns that it has, in that order, then any
per-currency `value_<XXX>` columns; a table not named shows every column it has. Files for machines (CSV,
XLSX, Parquet, JSON) carry every column, whatever this says. A figure's meaning is `reports.metrics`'.
"""

from __future__ import annotations

# Counts and their rates side by side: `unsubscribed` and `complained` with `unsubscribed_rate` and
# `complained_rate`, the conversions with their rate, so that no face shows a figure another lacks.
_FIGURES = (
    "sent",
    "delivered",
    "bounced",
    "opened",
    "opened_human",
    "opened_machine",
    "opens",
    "clicked",
    "clicks",
    "opened_rate",
    "clicked_rate",
    "click_to_open_rate",
    "bounce_rate",
    "unsubscribed",
    "unsubscribed_rate",
    "complained",
    "complained_rate",
    "conversions",
    "conversion_rate",
)

SHOWN_COLUMNS: dict[str, tuple[str, ...]] = {
    "funnel": ("campaign_id", "step_id", "segment", "variant", "arm", "recipients", *_FIGURES),
    "totals": ("campaign_id", *_FIGURES),
}

# The tables a terminal prints (`needlecast report`); the files and the pages hold every table.
TERMINAL_TABLES = ("funnel", "totals", "health", "ab_test", "conversions", "journey_funnel", "journey_paths")


def shown_columns(name: str, columns: list[str]) -> list[str]:
    """The columns of table `name` (which has `columns`) that a person is shown, in their order."""
    wanted = SHOWN_COLUMNS.get(name)
    if wanted is None:
        return list(columns)
    shown = [c for c in wanted if c in columns]
    return shown + [c for c in columns if c.startswith("value_") and c not in shown]
