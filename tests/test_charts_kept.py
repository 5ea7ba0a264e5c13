"""Charts are drawn once per drawing (`reports.charts_kept`): the same table and options give the kept SVG
without drawing again; any changed value, row, column type or option draws anew."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from markupsafe import Markup

from needlecast.reports import charts_kept
from needlecast.reports.charts_kept import kept_chart
from needlecast.reports.compare import trend_charts


def _trend() -> pd.DataFrame:
    weeks = pd.to_datetime(["2026-11-02", "2026-11-09"] * 2)
    return pd.DataFrame(
        {
            "week": weeks,
            "concern": ["acne", "acne", "ageing", "ageing"],
            "delivered": [10, 20, 30, 40],
            "opened_rate": [0.1, 0.2, 0.3, 0.4],
            "clicked_rate": [0.01, 0.02, 0.03, 0.04],
            "conversion_rate": [0.0, 0.01, 0.0, 0.02],
        }
    )


def test_the_same_table_and_options_are_drawn_once_and_any_change_draws_again() -> None:
    drawn: list[str] = []

    def draw(text: str) -> Markup:
        drawn.append(text)
        return Markup(f"<svg>{text}</svg>")

    table = _trend()
    first = kept_chart("test", table, ("concern",), lambda: draw("a"))
    assert kept_chart("test", table.copy(), ("concern",), lambda: draw("b")) == first == Markup("<svg>a</svg>")
    assert drawn == ["a"]
    changed = table.copy()
    changed.loc[3, "delivered"] = 41
    retyped = table.astype({"delivered": "float64"})
    for other_table, options, kind in (
        (changed, ("concern",), "test"),  # a value
        (table.iloc[:3], ("concern",), "test"),  # a row
        (retyped, ("concern",), "test"),  # a column's type
        (table, ("article",), "test"),  # an option
        (table, ("concern",), "other"),  # the kind of chart
    ):
        kept_chart(kind, other_table, options, lambda: draw("again"))
    assert drawn == ["a"] + ["again"] * 5


def test_only_the_newest_drawings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charts_kept, "KEPT", 2)
    drawn: list[int] = []
    tables = [pd.DataFrame({"n": [n]}) for n in range(3)]
    for n, table in enumerate(tables):
        kept_chart("few", table, (), lambda n=n: drawn.append(n))  # type: ignore[misc]
    kept_chart("few", tables[2], (), lambda: drawn.append(99))  # kept
    kept_chart("few", tables[0], (), lambda: drawn.append(100))  # the oldest went
    assert drawn == [0, 1, 2, 100]


def _unnamed(svg: str) -> str:
    names = re.findall(r'id="([^"]+)"', svg)
    for number, name in enumerate(names):
        svg = svg.replace(name, f"n{number}")
    return svg


def test_a_kept_trend_chart_is_the_chart_drawn_from_scratch() -> None:
    table = _trend()
    kept = trend_charts(table, "concern")
    assert len(kept) == 4 and all(str(c).startswith("<svg") and 'role="img"' in c for c in kept)
    fresh = charts_kept._kept.copy()
    charts_kept._kept.clear()
    try:
        # the same drawing; matplotlib names its clip paths and markers afresh each time it draws
        assert [_unnamed(c) for c in trend_charts(table.copy(), "concern")] == [_unnamed(c) for c in kept]
    finally:
        charts_kept._kept.update(fresh)
