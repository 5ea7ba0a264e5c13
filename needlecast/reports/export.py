"""Report files: CSV, XLSX (a sheet per table), JSON, and a self-contained HTML report with charts.

Spreadsheet safety: in CSV and XLSX every text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
return is prefixed with `'`, so a hostile value (`=HYPERLINK(...)`) is shown as text, never run as a
formula. The HTML report embeds its charts as inline SVG and needs no network to open.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from needlecast.reports.data import Report

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_html = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=select_autoescape(["html"])
)


def neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would read as a formula, made inert."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def safe_table(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(neutralise) if not table.empty else table


def write_csv(report: Report, path: Path) -> None:
    """The funnel table as CSV (the main table; the other tables are in XLSX, HTML and JSON)."""
    safe_table(report.funnel).to_csv(path, index=False)


def write_xlsx(report: Report, path: Path) -> None:
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, table in report.tables().items():
            safe_table(table).to_excel(writer, sheet_name=name[:31], index=False)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def to_json(report: Report) -> str:
    return json.dumps(
        {
            name: [{k: _plain(v) for k, v in row.items()} for row in table.to_dict("records")]
            for name, table in report.tables().items()
        },
        indent=2,
        default=str,
    )


def _svg(figure: Any) -> Markup:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    svg = buffer.getvalue()
    return Markup(svg[svg.index("<svg") :])  # drop the XML prologue to inline it


def funnel_chart(report: Report) -> Markup | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = report.funnel
    if table.empty:
        return None
    totals = table.groupby("campaign_id")[["sent", "delivered", "opened", "clicked"]].sum()
    figure, axis = plt.subplots(figsize=(8, 3.2))
    totals.plot.bar(ax=axis, color=["#2f4858", "#55828b", "#b5654a", "#e0a458"])
    axis.set_title("Funnel per campaign")
    axis.set_xlabel("")
    axis.set_ylabel("recipients")
    axis.tick_params(axis="x", rotation=0)
    return _svg(figure)


def timeline_chart(report: Report) -> Markup | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = report.timeline
    if table.empty:
        return None
    figure, axis = plt.subplots(figsize=(8, 3.2))
    for kind in [c for c in table.columns if c != "period"]:
        axis.plot(table["period"], table[kind], marker="o", label=kind)
    axis.set_title("Events over time")
    axis.legend(fontsize=8, ncol=3)
    axis.tick_params(axis="x", rotation=30, labelsize=8)
    return _svg(figure)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_html(report: Report, path: Path, title: str) -> None:
    tables = [
        (name, list(table.columns), [[_format(v) for v in row] for row in table.itertuples(index=False)])
        for name, table in report.tables().items()
    ]
    html = _html.get_template("report.html").render(
        title=title, tables=tables, funnel=funnel_chart(report), timeline=timeline_chart(report)
    )
    path.write_text(html, encoding="utf-8")
