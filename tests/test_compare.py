"""Every campaign side by side (`needlecast.reports.compare`): the comparison, its filters and sorting, the
change on the previous period, the weekly trends and which content converts, against figures worked out by
hand from a fixed ledger (times fixed, nothing read from the clock); its faces: `report --all`, the console's
Reports page and its downloads, opened back with pandas, openpyxl and pyarrow."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

from needlecast.errors import InvalidRequest
from needlecast.reports.compare import Catalogue, Filters, annotate, compare, email_flags, load_comparison
from needlecast.reports.groups import utc_offsets
from needlecast.store.engine import open_store
from needlecast.store.schema import deliveries
from tests.cli_runner import Result, run
from tests.console_site import site
from tests.test_report_figures import Email, store

# Mondays 2 and 9 March 2026 (London is on UTC until the 29th). Person k gets emails 2k and 2k+1.
LEDGER = [
    Email("spring", "acne", True, [("delivered", 0, False), ("open", 600, False), ("click", 700, False)], [2], 0),
    Email("autumn", "general", True, [("delivered", 0, False)], [], 0),
    Email("spring", "general", True, [("delivered", 0, False), ("open", 600, False)], [], 7),
    Email("autumn", "acne", True, [("bounce", 5, False)], [], 7),
    Email("spring", "acne", True, [("delivered", 0, False)], [5], 8),
    Email("autumn", "acne", False, [], [], 8),  # still queued: not in any figure
]
CATALOGUE = Catalogue(
    campaigns={"spring": ("Spring guide", "broadcast"), "autumn": ("Autumn nurture", "sequence")},
    articles={("spring", "only"): "microneedling", ("autumn", "only"): "peels"},
    leads={
        (c, "only", v): ("microneedling", "Collagen" if v == "acne" else "Absorption")
        for c in ("spring", "autumn")
        for v in ("acne", "general")
    },
)


@pytest.fixture()
def ledger(store_url: str) -> Iterator[pd.DataFrame]:
    engine = open_store(store_url)
    store(engine, LEDGER, set(), random.Random(0))
    yield annotate(email_flags(engine), CATALOGUE, "Europe/London")
    engine.dispose()


def figures(table: pd.DataFrame, *columns: str) -> dict[str, tuple[object, ...]]:
    return {row.campaign_id: tuple(getattr(row, c) for c in columns) for row in table.itertuples()}


def test_the_comparison_counts_each_campaign_and_the_totals_by_hand(ledger: pd.DataFrame) -> None:
    data = compare(ledger, Filters(), "Europe/London", min_group=0)
    assert list(data.campaigns["campaign_id"]) == ["spring", "autumn"]  # by sent, largest first
    counted = figures(
        data.campaigns, "sent", "delivered", "bounced", "opened", "opened_human", "clicked", "conversions"
    )
    assert counted == {"spring": (3, 3, 0, 2, 2, 1, 2), "autumn": (2, 1, 1, 0, 0, 0, 0)}
    rates = figures(data.campaigns, "opened_rate", "clicked_rate", "conversion_rate", "bounce_rate")
    assert rates["spring"] == pytest.approx((2 / 3, 1 / 3, 2 / 3, 0.0))
    assert rates["autumn"][3] == 0.5
    total = data.totals.iloc[0]
    assert (total["campaign_id"], total["sent"], total["delivered"], total["bounced"], total["conversions"]) == (
        "All campaigns",
        5,
        4,
        1,
        2,
    )
    assert total["opened_rate"] == pytest.approx(2 / 4)
    assert data.change.empty  # no period chosen: nothing to compare it with
    assert data.options == {
        "kind": ["broadcast", "sequence"],
        "segment": ["everyone"],
        "concern": ["acne", "general"],
        "article": ["microneedling", "peels"],
    }


def test_the_comparison_sorts_and_filters(ledger: pd.DataFrame) -> None:
    by_bounces = compare(ledger, Filters(sort="bounce_rate"), min_group=0)
    assert list(by_bounces.campaigns["campaign_id"]) == ["autumn", "spring"]
    ascending = compare(ledger, Filters(sort="bounce_rate", descending=False), min_group=0)
    assert list(ascending.campaigns["campaign_id"]) == ["spring", "autumn"]
    acne = compare(ledger, Filters(concern="acne"), min_group=0)
    assert figures(acne.campaigns, "sent", "delivered") == {"spring": (2, 2), "autumn": (1, 0)}
    assert list(compare(ledger, Filters(kind="sequence"), min_group=0).campaigns["campaign_id"]) == ["autumn"]
    assert list(compare(ledger, Filters(article="microneedling"), min_group=0).campaigns["campaign_id"]) == ["spring"]
    nobody = compare(ledger, Filters(segment="nobody"), min_group=0)
    assert nobody.campaigns.empty and nobody.totals.iloc[0]["sent"] == 0
    # Small groups keep their counts and lose their rates (privacy), as in a campaign's report.
    assert compare(ledger, Filters()).campaigns["opened_rate"].isna().all()


def test_the_period_is_compared_with_the_one_before(ledger: pd.DataFrame) -> None:
    second_week = Filters(start=date(2026, 3, 9), end=date(2026, 3, 15))
    assert second_week.previous() == Filters(start=date(2026, 3, 2), end=date(2026, 3, 8))
    data = compare(ledger, second_week, min_group=0)
    assert figures(data.campaigns, "sent") == {"spring": (2,), "autumn": (1,)}
    change = data.change.iloc[0]
    assert (change["sent"], change["previous_sent"], change["change_sent"]) == (3, 2, 1)
    assert (change["delivered"], change["previous_delivered"], change["change_delivered"]) == (2, 2, 0)
    assert change["opened_rate"] == change["previous_opened_rate"] == 0.5
    assert change["change_clicked_rate"] == pytest.approx(-0.5)  # 0 of 2 against 1 of 2
    assert (change["bookings_per_1000"], change["previous_bookings_per_1000"]) == (500, 500)


def test_weekly_trends_per_concern_and_article(ledger: pd.DataFrame) -> None:
    data = compare(ledger, Filters(), min_group=0)
    rows = [tuple(r) for r in data.trend_concern.itertuples(index=False)]
    assert rows == [
        ("2026-03-02", "acne", 1, 1.0, 1.0, 1.0),
        ("2026-03-02", "general", 1, 0.0, 0.0, 0.0),
        ("2026-03-09", "acne", 1, 0.0, 0.0, 1.0),
        ("2026-03-09", "general", 1, 1.0, 0.0, 0.0),
    ]
    articles = [tuple(r)[:3] for r in data.trend_article.itertuples(index=False)]
    assert articles == [
        ("2026-03-02", "microneedling", 1),
        ("2026-03-02", "peels", 1),
        ("2026-03-09", "microneedling", 2),
        ("2026-03-09", "peels", 0),
    ]


def test_which_content_converts_with_wilson_intervals(ledger: pd.DataFrame) -> None:
    table = compare(ledger, Filters(), min_group=0).content
    rows = {(r.section, r.concern): r for r in table.itertuples()}
    collagen, absorption = rows[("Collagen", "acne")], rows[("Absorption", "general")]
    assert (collagen.delivered, collagen.booked, collagen.bookings_per_1000) == (2, 2, 1000)
    # The 95 % Wilson interval of 2 in 2 is 0.342 to 1, of 0 in 2 is 0 to 0.658 (per 1,000: x 1000).
    assert collagen.per_1000_lower == pytest.approx(342.4, abs=0.1) and collagen.per_1000_upper == 1000
    assert absorption.per_1000_lower == 0 and absorption.per_1000_upper == pytest.approx(657.6, abs=0.1)
    assert list(table["section"]) == ["Collagen", "Absorption"]  # the best first


def test_bad_filters_name_the_field() -> None:
    with pytest.raises(InvalidRequest, match="sort: 'nope'"):
        Filters(sort="nope")
    with pytest.raises(InvalidRequest, match="period"):
        Filters(start=date(2026, 3, 9), end=date(2026, 3, 2))


def test_compare_exports_open_with_their_types_and_zones(ledger: pd.DataFrame, tmp_path: Path) -> None:
    from needlecast.reports.export import write_csv, write_parquet, write_xlsx

    data = compare(ledger, Filters(start=date(2026, 3, 9), end=date(2026, 3, 15)), "Europe/London", min_group=0)
    write_parquet(data, tmp_path / "c.parquet")
    table = pq.read_table(tmp_path / "c.parquet")
    assert str(table.schema.field("sent").type) == "int64"
    assert str(table.schema.field("opened_rate").type) == "double"
    assert str(table.schema.field("campaign_id").type) in ("string", "large_string")
    write_xlsx(data, tmp_path / "c.xlsx")
    book = openpyxl.load_workbook(tmp_path / "c.xlsx")
    assert book.sheetnames == [
        "Campaigns compared",
        "Change on the previous period",
        "Weekly trend per concern",
        "Weekly trend per article",
        "Which content converts",
    ]
    sheet = book["Campaigns compared"]
    assert sheet.freeze_panes == "A2"
    heads = [c.value for c in sheet[1]]
    sent, rate = sheet.cell(2, heads.index("Sent") + 1), sheet.cell(2, heads.index("Open rate") + 1)
    assert isinstance(sent.value, int) and isinstance(rate.value, float) and rate.number_format == "0.0%"
    text = io.StringIO()
    write_csv(data, text)
    assert pd.read_csv(io.StringIO(text.getvalue()))["Sent"].tolist() == [2, 1, 3]  # and the totals row


@pytest.fixture()
def stored(store_url: str) -> Iterator[str]:
    engine = open_store(store_url)
    store(engine, LEDGER, set(), random.Random(0))
    engine.dispose()
    yield store_url


def test_report_all_writes_every_format_and_refuses_bad_options(
    stored: str, workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cli(*args: str) -> Result:
        return run(monkeypatch, workspace_dir, "report", *args, NEEDLECAST_DATABASE_URL=stored)

    out = cli("--all", "--format", "parquet", "--out", str(tmp_path / "all.parquet"))
    assert out.code == 0, out.stderr
    frame = pq.read_table(tmp_path / "all.parquet").to_pandas()
    assert frame.set_index("campaign_id")["sent"].to_dict() == {"spring": 3, "autumn": 2, "All campaigns": 5}
    printed = cli("--all", "--format", "csv", "--concern", "acne")
    assert printed.code == 0 and pd.read_csv(io.StringIO(printed.stdout))["Sent"].tolist() == [2, 1, 3]
    table = cli("--all", "--since", "2026-03-09", "--until", "2026-03-15")
    assert table.code == 0 and "Change on the previous period" in table.stdout
    for bad, named in (
        (("--all", "--sort", "nope"), "sort: 'nope'"),
        (("--all", "--until", "March"), "--until 'March'"),
        (("--all", "--format", "parquet"), "--out"),
        (("spring", "--all"), "drop 'spring'"),
        (("nope", "--format", "parquet", "--out", str(tmp_path / "x.parquet")), "no campaign 'nope'"),
    ):
        refused = cli(*bad)
        assert refused.code == 1 and named in refused.stderr, (bad, refused.stderr)
    assert cli("spring", "--format", "parquet", "--out", str(tmp_path / "one.parquet")).code == 0
    funnel = pq.read_table(tmp_path / "one.parquet")
    assert str(funnel.schema.field("delivered").type) == "int64" and funnel.num_rows == 2  # acne and general


@pytest.mark.database_independent
def test_the_console_compares_campaigns_and_downloads_the_figures(stored: str, workspace_dir: Path) -> None:
    with site(workspace_dir, stored, import_sample=False) as running:
        analyst = running.login("analyst")
        page = analyst.get("/console/reports", params={"sort": "bounce_rate"})
        assert page.status_code == 200
        assert 'style="' not in page.text and "<style" not in page.text and "<script" not in page.text
        assert page.text.index('href="/console/reports/autumn"') < page.text.index('href="/console/reports/spring"')
        assert 'aria-sort="descending"' in page.text and "sort=bounce_rate&amp;order=asc" in page.text
        assert "All campaigns" in page.text and "Which content converts" in page.text
        for query, named in (
            ({"sort": "nope"}, "sort: &#39;nope&#39;"),
            ({"from": "someday"}, "from: &#39;someday&#39;"),
        ):
            refused = analyst.get("/console/reports", params=query)
            assert refused.status_code == 400 and named in refused.text
        csv = analyst.get("/console/reports/all.csv", params={"concern": "acne"})
        assert csv.status_code == 200 and pd.read_csv(io.StringIO(csv.text))["Sent"].tolist() == [2, 1, 3]
        book = openpyxl.load_workbook(io.BytesIO(analyst.get("/console/reports/all.xlsx").content))
        assert book["Campaigns compared"]["A1"].value == "Campaign"
        parquet = analyst.get("/console/reports/all.parquet")
        assert parquet.status_code == 200
        assert pq.read_table(io.BytesIO(parquet.content)).num_rows == 3
        assert analyst.get("/console/reports/all.exe").status_code == 404


def test_csv_times_are_iso_with_the_offset_and_parquet_times_keep_the_clinics_zone(tmp_path: Path) -> None:
    from dataclasses import dataclass as frozen

    from needlecast.reports.export import write_csv, write_parquet

    @frozen
    class Booked:
        time_zone: str = "Europe/London"

        def tables(self) -> dict[str, pd.DataFrame]:
            moments = pd.to_datetime(["2026-03-28 09:30", "2026-03-30 09:30"]).tz_localize("UTC")
            return {"conversions": pd.DataFrame({"conversion_id": ["a", "b"], "occurred_at": moments})}

    text = io.StringIO()
    write_csv(Booked(), text)
    assert pd.read_csv(io.StringIO(text.getvalue()))["When"].tolist() == [
        "2026-03-28T09:30:00+00:00",
        "2026-03-30T10:30:00+01:00",  # British Summer Time from the 29th
    ]
    write_parquet(Booked(), tmp_path / "b.parquet")
    column = pq.read_table(tmp_path / "b.parquet").schema.field("occurred_at").type
    assert column.tz == "Europe/London" and str(column).startswith("timestamp")
    read = pd.read_parquet(tmp_path / "b.parquet")["occurred_at"]
    assert read.iloc[1] == pd.Timestamp("2026-03-30 10:30", tz="Europe/London")


@pytest.mark.parametrize(
    "filters",
    [
        Filters(),
        Filters(start=date(2026, 3, 9), end=date(2026, 3, 15)),  # with the change on the week before
        Filters(concern="acne", sort="bounce_rate"),
        Filters(kind="sequence"),
        Filters(article="microneedling", start=date(2026, 3, 2), end=date(2026, 3, 2)),
    ],
)
def test_the_comparison_counted_in_the_database_equals_the_one_counted_email_by_email(
    store_url: str, filters: Filters
) -> None:
    """`load_comparison` counts the emails by group and day in SQL (`reports.groups`); every table it gives
    is the table `compare` makes from the emails one by one."""
    engine = open_store(store_url)
    try:
        store(engine, LEDGER, set(), random.Random(0))
        counted = load_comparison(engine, CATALOGUE, filters, time_zone="Europe/London", min_group=0)
        one_by_one = compare(annotate(email_flags(engine), CATALOGUE, "Europe/London"), filters, "Europe/London", 0)
    finally:
        engine.dispose()
    assert counted.options == one_by_one.options
    for name, table in one_by_one.tables().items():
        pd.testing.assert_frame_equal(
            counted.tables()[name].reset_index(drop=True), table.reset_index(drop=True), check_dtype=False, obj=name
        )


def test_the_clinic_clock_changes_its_offset_at_the_second_the_zone_does() -> None:
    """London goes to summer time at 01:00 UTC on 29 March 2026 and back at 01:00 UTC on 25 October."""
    first, last = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)
    spring, autumn = datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)
    assert utc_offsets("Europe/London", first, last) == [
        (int(first.timestamp()) - 86_400, 0),
        (int(spring.timestamp()), 3600),
        (int(autumn.timestamp()), 0),
    ]
    assert utc_offsets("Asia/Kathmandu", first, last) == [(int(first.timestamp()) - 86_400, 5 * 3600 + 45 * 60)]


def test_a_sent_email_without_its_sending_time_counts_the_same_both_ways(store_url: str) -> None:
    engine = open_store(store_url)
    try:
        store(engine, LEDGER, set(), random.Random(0))
        with engine.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.id == 2).values(sent_at=None))
        counted = load_comparison(engine, CATALOGUE, Filters(), time_zone="Europe/London", min_group=0)
        one_by_one = compare(annotate(email_flags(engine), CATALOGUE, "Europe/London"), Filters(), "Europe/London", 0)
    finally:
        engine.dispose()
    assert int(counted.totals.iloc[0]["sent"]) == 5
    pd.testing.assert_frame_equal(counted.campaigns, one_by_one.campaigns, check_dtype=False)
    pd.testing.assert_frame_equal(counted.totals, one_by_one.totals, check_dtype=False)
