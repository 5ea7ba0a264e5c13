"""Report files: CSV, XLSX (a sheet per table), JSON, and a self-contained HTML report with charts.

Columns carry readable titles ("Open rate", "Click-to-open rate"). Rates are shown as percentages rounded to
0.1 % in the terminal and HTML; in CSV and XLSX they are numbers (fractions rounded to 0.1 %: 0.423), and
XLSX formats them as percentages, with the header row frozen. JSON keeps the raw column names and values.
Times are on the clinic's clock (`Report.time_zone`, named in the column's title): to the minute in the
terminal and HTML; in CSV and JSON ISO 8601 with the offset; in XLSX a date cell (without a zone, which
Excel cannot hold) shown to the minute; in Parquet a timestamp with the zone. CSV and Parquet hold one table
(a report's funnel, the comparison's campaigns), XLSX and JSON every table.

Spreadsheet safety (`neutralise`): in CSV and XLSX every text cell that starts with `=`, `+`, `-`, `@`, a
tab or a carriage return is prefixed with `'`, so a hostile value (`=HYPERLINK(...)`) is shown as text, never
run as a formula; a cell that already starts with `'` gets one more. The original value is therefore always
the cell with its first `'` removed, when it starts with one. The HTML report embeds its charts as inline
SVG, needs no network, and fits a 1280 px window. The charts carry no `style` attribute or element (their
colours are presentation attributes), so they draw the same under a Content-Security-Policy that forbids
inline styles, as the console's does, and scale to their box.
"""

from __future__ import annotations

import io
import json
import math
import sys
import xml.etree.ElementTree as ElementTree
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Protocol

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from needlecast.reports.charts_kept import kept_chart
from needlecast.reports.data import Report
from needlecast.reports.tables import shown_columns
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
    "bounced": "Bounced",
    "bounced_hard": "Hard bounces",
    "bounced_soft": "Soft bounces",
    "dropped": "Dropped",
    "opened": "Unique opens",
    "clicked": "Unique clicks",
    "opened_human": "Human opens",
    "opened_machine": "Machine opens",
    "opens": "Total opens",
    "clicks": "Total clicks",
    "unsubscribed": "Unsubscribed",
    "complained": "Complaints",
    "delivery_rate": "Delivery rate",
    "bounce_rate": "Bounce rate",
    "opened_rate": "Open rate",
    "clicked_rate": "Click rate",
    "click_to_open_rate": "Click-to-open rate",
    "human_open_rate": "Human open rate",
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
    "name": "Name",
    "kind": "Kind",
    "week": "Week (from Monday)",
    "concern": "Concern",
    "article": "Article",
    "section": "Lead section",
    "booked": "Emails with a booking",
    "bookings_per_1000": "Bookings per 1,000 delivered",
    "per_1000_lower": "95 % interval from",
    "per_1000_upper": "95 % interval to",
    # cohorts and revenue (`reports.cohorts`, `reports.revenue`)
    "month": "Signup month",
    "source": "Source",
    "leads": "Leads",
    **{f"booked_{n}d": f"Booked within {n} days" for n in (30, 60, 90)},
    **{f"booked_{n}d_rate": f"Share booked within {n} days" for n in (30, 60, 90)},
    "bookings": "Bookings",
    "mailed": "People mailed",
    "value_per_delivered": "Value per email delivered",
    "value_per_recipient": "Value per person mailed",
    "last_click": "Bookings by last click",
    "last_click_value": "Value by last click",
    "last_delivered": "Bookings by last delivered",
    "last_delivered_value": "Value by last delivered",
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
    "journey_funnel": "Funnel per step of the journey",
    "journey_paths": "Paths taken through the journey",
    "compare": "Campaigns compared",
    "change": "Change on the previous period",
    "cohorts": "Lead cohorts",
    "revenue": "Revenue per campaign",
    "attribution": "Attribution models",
    "trend_concern": "Weekly trend per concern",
    "trend_article": "Weekly trend per article",
    "content": "Which content converts",
}


def is_rate(column: str) -> bool:
    return column.endswith(("_rate", "_diff", "_low", "_high"))


def title(column: str) -> str:
    if column.startswith(("previous_", "change_")):
        when, _, figure = column.partition("_")
        return f"{title(figure)}: {'previous period' if when == 'previous' else 'change'}"
    if column.startswith("value_") and column not in TITLES:
        return f"Value ({column.removeprefix('value_')})"
    return TITLES.get(column, column.replace("_", " ").capitalize())


def is_time(table: pd.DataFrame, column: str) -> bool:
    return isinstance(table[column].dtype, pd.DatetimeTZDtype)


def titles(table: pd.DataFrame, columns: list[str], time_zone: str) -> list[str]:
    """The columns' readable titles; a time column's names the zone its times are on ("When (Europe/London)")."""
    return [f"{title(c)} ({time_zone})" if is_time(table, c) else title(c) for c in columns]


MINUTE = "%Y-%m-%d %H:%M"


def percent(value: Any) -> str:
    """A rate for people: '42.3 %', or '–' when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value) * 100:.1f} %"


def cell_text(column: str, value: Any) -> str:
    """One cell as people read it (terminal and HTML)."""
    if isinstance(value, datetime):  # already on the clinic's clock (`load_report`)
        return "–" if pd.isna(value) else value.strftime(MINUTE)
    if is_rate(column):
        return percent(value)
    if column.endswith("p_value"):
        return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.3f}"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4g}"
    return "–" if value is None or value == "" else str(value)


def safe_table(table: pd.DataFrame) -> pd.DataFrame:
    return table.map(neutralise) if not table.empty else table


def for_spreadsheet(table: pd.DataFrame, time_zone: str = "UTC") -> pd.DataFrame:
    """Readable titles, rates rounded to 0.1 % (as fractions), times as the wall-clock time of `time_zone`
    without a zone (which spreadsheets cannot hold; the title names it), formula-like text neutralised."""
    out = table.copy()
    names = dict(zip(out.columns, titles(out, [str(c) for c in out.columns], time_zone), strict=True))
    for column in out.columns:
        if is_time(out, str(column)):
            out[column] = out[column].dt.tz_convert(time_zone).dt.tz_localize(None)
    out = safe_table(out)
    for column in out.columns:
        if is_rate(str(column)) or str(column).endswith("p_value"):
            out[column] = pd.to_numeric(out[column], errors="coerce").round(3 if is_rate(str(column)) else 4)
    return out.rename(columns=names)


class Tables(Protocol):
    """What the file writers read: a report, or the comparison of every campaign (`compare.Comparison`)."""

    time_zone: str

    def tables(self) -> dict[str, pd.DataFrame]: ...


def primary(report: Tables) -> pd.DataFrame:
    """The table a one-table format (CSV, Parquet) holds: the first (a report's funnel, the comparison)."""
    return next(iter(report.tables().values()))


def iso_times(table: pd.DataFrame, time_zone: str) -> pd.DataFrame:
    """`table` with each time as ISO 8601 text on the clinic's clock, with its offset (2026-03-29T09:00:00+01:00)."""
    out = table.copy()
    for column in out.columns:
        if is_time(out, str(column)):
            local = out[column].dt.tz_convert(time_zone)
            out[column] = [t.isoformat(timespec="seconds") if not pd.isna(t) else "" for t in local]
    return out


def write_csv(report: Tables, target: Path | IO[str] | None) -> None:
    """The primary table (`primary`) as CSV, to a file or a text stream (stdout when `target` is None): readable
    titles, rates as fractions, times ISO 8601 with the offset of the clinic's clock."""
    table = for_spreadsheet(iso_times(primary(report), report.time_zone), report.time_zone)
    table.to_csv(sys.stdout if target is None else target, index=False)


def write_parquet(report: Tables, path: Path) -> None:
    """The primary table as Parquet (pyarrow) with typed columns under their raw names: counts int64, rates
    float64 (NaN where a rate is suppressed or has no denominator), times timestamps on the clinic's clock
    with its zone, text as strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = on_zone(primary(report), report.time_zone)
    for column in table.columns:
        if table[column].dtype == object:  # text (or empty): strings, never pickled objects
            table[column] = table[column].map(lambda v: None if v is None else str(v)).astype("string")
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path)


def on_zone(table: pd.DataFrame, time_zone: str) -> pd.DataFrame:
    out = table.copy()
    for column in out.columns:
        if is_time(out, str(column)):
            out[column] = out[column].dt.tz_convert(time_zone)
    return out


def write_xlsx(report: Tables, path: Path) -> None:
    """A sheet per table: readable titles, rates formatted as percentages, times as dates shown to the
    minute, the header row frozen."""
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, table in report.tables().items():
            sheet_name = SHEETS.get(name, name)[:31]
            shown = for_spreadsheet(table, report.time_zone)
            shown.to_excel(writer, sheet_name=sheet_name, index=False)
            sheet = writer.sheets[sheet_name]
            sheet.freeze_panes = "A2"
            for index, column in enumerate(table.columns, start=1):
                letter = sheet.cell(row=1, column=index).column_letter
                sheet.column_dimensions[letter].width = max(10, min(40, len(str(shown.columns[index - 1])) + 2))
                shape = "0.0%" if is_rate(str(column)) else "yyyy-mm-dd hh:mm" if is_time(table, column) else ""
                for row in range(2, len(table) + 2) if shape else ():
                    sheet.cell(row=row, column=index).number_format = shape


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime) and pd.isna(value):  # NaT
        return None
    if hasattr(value, "isoformat"):  # ISO 8601; a time with the offset of the clinic's clock
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-ready rows (NaN as null, numpy numbers as Python ones, times as ISO text)."""
    return [{str(k): _plain(v) for k, v in row.items()} for row in table.to_dict("records")]


def to_json(report: Tables) -> str:
    return json.dumps({name: records(table) for name, table in report.tables().items()}, indent=2, default=str)


SVG_NS, XLINK_NS = "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"
ElementTree.register_namespace("", SVG_NS)
ElementTree.register_namespace("xlink", XLINK_NS)
DROPPED = {f"{{{SVG_NS}}}style", f"{{{SVG_NS}}}metadata"}


def without_inline_styles(svg: str, label: str) -> str:
    """Matplotlib's SVG with each `style` attribute turned into the presentation attributes it lists (every
    property matplotlib writes, fill, stroke, stroke-width, opacity and the like, is one) and its `<style>`
    element (`*{stroke-linejoin: round; stroke-linecap: butt}`) into attributes of the root, which every
    element inherits: the same drawing, with nothing that a CSP without 'unsafe-inline' styles blocks.
    The metadata goes (a creation date); the root is an image named `label` for screen readers."""
    root = ElementTree.fromstring(svg)
    for parent in list(root.iter()):
        for child in [c for c in parent if c.tag in DROPPED]:
            parent.remove(child)
    for element in root.iter():
        for declaration in element.attrib.pop("style", "").split(";"):
            name, _, value = declaration.partition(":")
            if name.strip():
                element.set(name.strip(), value.strip())
    root.set("stroke-linejoin", "round")
    root.set("stroke-linecap", "butt")
    root.set("role", "img")
    root.set("aria-label", label)
    return ElementTree.tostring(root, encoding="unicode")


def _svg(figure: Any, label: str) -> Markup:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    return Markup(without_inline_styles(buffer.getvalue(), label))


def funnel_chart(report: Report) -> Markup | None:
    """The funnel per campaign as a bar chart (drawn once per funnel table: `charts_kept`)."""
    return kept_chart("funnel", report.funnel, (), lambda: _draw_funnel_chart(report))


def _draw_funnel_chart(report: Report) -> Markup | None:
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
    return _svg(figure, "Bar chart of sent, delivered, unique opens and unique clicks per campaign")


# The funnel chart's colours; a total (every event) in a lighter shade, dashed, beside its unique count.
TIMELINE_LINES = {
    "sent": ("#2f4858", ":"),
    "delivered": ("#55828b", "-"),
    "opened": ("#b5654a", "-"),
    "opens": ("#dba58f", "--"),
    "clicked": ("#e0a458", "-"),
    "clicks": ("#f0d2a4", "--"),
}


def timeline_chart(report: Report) -> Markup | None:
    """Emails sent, delivered, opened and clicked per period (drawn once per timeline table and clock:
    `charts_kept`)."""
    return kept_chart("timeline", report.timeline, (str(report.time_zone),), lambda: _draw_timeline_chart(report))


def _draw_timeline_chart(report: Report) -> Markup | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = report.timeline
    drawn = [c for c in TIMELINE_LINES if c in table]
    if table.empty or not drawn:
        return None
    figure, axis = plt.subplots(figsize=(8, 3.2))
    colours = [TIMELINE_LINES[c][0] for c in drawn]
    if len(table) == 1:  # one period: bars say more than lone points
        table.set_index("period")[drawn].rename(columns=title).plot.bar(ax=axis, rot=0, color=colours)
        axis.set_xlabel("")
    for column in drawn if len(table) > 1 else []:
        colour, line = TIMELINE_LINES[column]
        axis.plot(table["period"], table[column], color=colour, linestyle=line, marker="o", label=title(column))
    axis.set_title(f"Over time ({report.time_zone})")
    axis.set_ylabel("emails (totals: events)")  # unique opens count emails; total opens count every open
    axis.legend(fontsize=8, ncol=3)
    axis.tick_params(axis="x", rotation=30, labelsize=8)
    return _svg(figure, "Line chart of emails sent, delivered, opened and clicked per period (see the Timeline table)")


def html_tables(report: Tables) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(name, title, column titles, rows of cell text) of every table, as the HTML report and the console
    show them: the columns `reports.tables.shown_columns` names."""
    shown = []
    for name, table in report.tables().items():
        columns = shown_columns(name, [str(c) for c in table.columns])
        rows = (
            [
                [cell_text(c, v) for c, v in zip(columns, row, strict=True)]
                for row in table[columns].itertuples(index=False)
            ]
            if not table.empty
            else []
        )
        shown.append((name, SHEETS.get(name, name), titles(table, [str(c) for c in columns], report.time_zone), rows))
    return shown


def write_html(report: Report, path: Path, report_title: str) -> None:
    html = _html.get_template("report.html").render(
        title=report_title,
        tables=html_tables(report),
        funnel=funnel_chart(report),
        timeline=timeline_chart(report),
        time_zone=report.time_zone,
    )
    path.write_text(html, encoding="utf-8")
