"""Report files: CSV, XLSX (a sheet per table), JSON, and a self-contained HTML report with charts.

Columns carry readable titles ("Open rate", "Click-to-open rate"). Rates are shown as percentages rounded to
0.1 % in the terminal and HTML; in CSV and XLSX they are numbers (fractions rounded to 0.1 %: 0.423), and
XLSX formats them as percentages, with the header row frozen. JSON keeps the raw column names and values.

Spreadsheet safety (`neutralise`): in CSV and XLSX every text cell that starts with `=`, `+`, `-`, `@`, a
tab or a carriage return is prefixed with `'`, so a hostile value (`=HYPERLINK(...)`) is shown as text, never
run as a formula; a cell that already starts with `'` gets one more. The original value is therefore always
the cell with its first `'` removed, when it starts with one. The HTML report embeds its charts as inline
SVG, needs no network, and fits a 1280 px window.
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import IO, Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from needlecast.reports.data import Report
from needlecast.spreadsheet import neutralise

_html = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=select_autoescape(["html"])
)

TITLES = {
    "campaign_id": "Campaign",
    "step_id": "Step",
    "segment": "Segment",
    "variant": "Variant",
    "arm": "Arm",
    "subject": "Subject",
    "recipients": "Recipients",
    "sent": "Sent",
    "delivered": "Delivered",
    "bounced_hard": "Hard bounces",
    "bounced_soft": "Soft bounces",
    "dropped": "Dropped",
    "opened": "Unique opens",
    "clicked": "Unique clicks",
    "opens": "Total opens",
    "clicks": "Total clicks",
    "unsubscribed": "Unsubscribed",
    "complained": "Complaints",
    "delivery_rate": "Delivery rate",
    "bounce_rate": "Bounce rate",
    "opened_rate": "Open rate",
    "clicked_rate": "Click rate",
    "click_to_open_rate": "Click-to-open rate",
    "unsubscribed_rate": "Unsubscribe rate",
    "complained_rate": "Complaint rate",
    "complaint_rate": "Complaint rate",
    "rates": "Rates",
    "open_rate": "Open rate",
    "click_rate": "Click rate",
    "open_diff": "Open rate vs A",
    "click_diff": "Click rate vs A",
    "open_p_value": "Open p-value",
    "click_p_value": "Click p-value",
    "open_winner": "Winner (opens)",
    "click_winner": "Winner (clicks)",
    "flag": "Health",
    "period": "Period",
    "url": "Link",
    "unique_clickers": "Unique clickers",
    "email": "Email",
    "status": "Status",
    "conversions": "Conversions",
    "converted": "Converting recipients",
    "conversion_rate": "Conversion rate",
    "conversion_diff": "Conversion rate vs A",
    "conversion_p_value": "Conversion p-value",
    "conversion_winner": "Winner (conversions)",
    "conversion_id": "Conversion",
    "type": "Type",
    "occurred_at": "When",
    "value": "Value",
    "currency": "Currency",
    "rule": "Credited by",
    "delivery_id": "Email (delivery id)",
}
SHEETS = {
    "funnel": "Funnel",
    "totals": "Totals per campaign",
    "health": "Deliverability health",
    "ab_test": "A-B test",
    "ab_decisions": "A-B winner decisions",
    "send_time": "Send-time optimisation",
    "timeline": "Timeline",
    "links": "Links",
    "recipients": "Recipients",
    "conversions": "Conversions",
}


def is_rate(column: str) -> bool:
    return column.endswith(("_rate", "_diff", "_low", "_high"))


def title(column: str) -> str:
    if column.startswith("value_"):
        return f"Value ({column.removeprefix('value_')})"
    return TITLES.get(column, column.replace("_", " ").capitalize())


def percent(value: Any) -> str:
    """A rate for people: '42.3 %', or '–' when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value) * 100:.1f} %"


def cell_text(column: str, value: Any) -> str:
    """One cell as people read it (terminal and HTML)."""
    if is_rate(column):
        return percent(value)
    if column.endswith("p_value"):
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.3f}"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return "–" if value is None or value == "" else str(value)


def safe_table(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(neutralise) if not table.empty else table


def for_spreadsheet(table: pd.DataFrame) -> pd.DataFrame:
    """Readable titles, rates rounded to 0.1 % (as fractions), formula-like text neutralised."""
    out = safe_table(table).copy()
    for column in out.columns:
        if is_rate(str(column)) or str(column).endswith("p_value"):
            out[column] = pd.to_numeric(out[column], errors="coerce").round(3 if is_rate(str(column)) else 4)
    return out.rename(columns={c: title(str(c)) for c in out.columns})


def write_csv(report: Report, target: Path | IO[str] | None) -> None:
    """The funnel table as CSV, to a file or a text stream (stdout when `target` is None)."""
    table = for_spreadsheet(report.funnel)
    if target is None:
        table.to_csv(sys.stdout, index=False)
    elif isinstance(target, Path):
        table.to_csv(target, index=False)
    else:
        table.to_csv(target, index=False)


def write_xlsx(report: Report, path: Path) -> None:
    """A sheet per table: readable titles, rates formatted as percentages, the header row frozen."""
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, table in report.tables().items():
            sheet_name = SHEETS.get(name, name)[:31]
            for_spreadsheet(table).to_excel(writer, sheet_name=sheet_name, index=False)
            sheet = writer.sheets[sheet_name]
            sheet.freeze_panes = "A2"
            for index, column in enumerate(table.columns, start=1):
                letter = sheet.cell(row=1, column=index).column_letter
                sheet.column_dimensions[letter].width = max(10, min(40, len(title(str(column))) + 2))
                if is_rate(str(column)):
                    for row in range(2, len(table) + 2):
                        sheet.cell(row=row, column=index).number_format = "0.0%"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-ready rows (NaN as null, numpy numbers as Python ones, times as ISO text)."""
    rows = []
    for row in table.to_dict("records"):
        rows.append({str(k): (v.isoformat() if hasattr(v, "isoformat") else _plain(v)) for k, v in row.items()})
    return rows


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
    totals = totals.rename(columns={c: title(c) for c in totals.columns})
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


# The HTML funnel shows the columns an analyst reads first; the full table is in the CSV and XLSX.
HTML_COLUMNS = {
    "funnel": [
        "campaign_id",
        "step_id",
        "segment",
        "variant",
        "arm",
        "sent",
        "delivered",
        "opened",
        "opens",
        "clicked",
        "clicks",
        "opened_rate",
        "clicked_rate",
        "click_to_open_rate",
        "bounce_rate",
        "unsubscribed",
        "complained",
        "conversions",
        "conversion_rate",
    ],
    "totals": [
        "campaign_id",
        "sent",
        "delivered",
        "opened",
        "opens",
        "clicked",
        "clicks",
        "opened_rate",
        "clicked_rate",
        "click_to_open_rate",
        "bounce_rate",
        "unsubscribed_rate",
        "complained_rate",
        "conversions",
        "conversion_rate",
    ],
}


def html_tables(report: Report) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(name, title, column titles, rows of cell text) of every table, as the HTML report and the console
    show them."""
    shown = []
    for name, table in report.tables().items():
        wanted = HTML_COLUMNS.get(name, list(table.columns))
        columns = [c for c in wanted if c in table.columns]
        columns += [c for c in table.columns if str(c).startswith("value_") and c not in columns]
        rows = (
            [
                [cell_text(c, v) for c, v in zip(columns, row, strict=True)]
                for row in table[columns].itertuples(index=False)
            ]
            if not table.empty
            else []
        )
        shown.append((name, SHEETS.get(name, name), [title(c) for c in columns], rows))
    return shown


def write_html(report: Report, path: Path, report_title: str) -> None:
    html = _html.get_template("report.html").render(
        title=report_title, tables=html_tables(report), funnel=funnel_chart(report), timeline=timeline_chart(report)
    )
    path.write_text(html, encoding="utf-8")
