"""Every report figure's one definition: what an email counts towards, and what each rate is against.

Contract: `delivery_flags` (data.py) sets, per email (one ledger row), a boolean per counted column below
from its provider events and the row; every table and every face (terminal, CSV, XLSX, Parquet, JSON, HTML,
the console, the API) sums those columns with `funnel` and divides with `RATES`, so a figure means the same
thing wherever it is read. `METRICS` is the README's table of definitions (a test checks they agree).
The figures of the `cohorts` and `revenue` tables (`reports/cohorts.py`, `reports/revenue.py`) are defined
here too: a cohort counts people (leads) and their bookings, revenue sums the same per-email flags and
credited values as the funnel, and divides with `REVENUE_RATES`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    column: str  # the column in every table (`funnel`, `totals`, the comparison)
    name: str  # its readable title
    definition: str  # what one email (or event) adds to it
    tables: str = "emails"  # where it is counted: "emails" (every report), "cohorts" or "revenue" (`analysis`)


METRICS: tuple[Metric, ...] = (
    Metric("sent", "Sent", "emails the provider accepted (ledger status `sent`)"),
    Metric(
        "delivered",
        "Delivered",
        "sent emails whose fate is delivery: a delivered event, an open or a click, and no bounce or drop "
        "(deferred-then-delivered is delivered)",
    ),
    Metric("bounced", "Bounced", "sent emails that bounced at least once, hard or soft; each email once"),
    Metric("bounced_hard", "Hard bounces", "bounced emails with at least one hard bounce (`bounce`)"),
    Metric("bounced_soft", "Soft bounces", "bounced emails whose bounces were all blocks (`blocked`)"),
    Metric("dropped", "Dropped", "sent emails the provider dropped, and did not bounce"),
    Metric("opened", "Unique opens", "emails opened at least once (by a person or a machine)"),
    Metric(
        "opened_human",
        "Human opens",
        "emails with at least one open not marked `sg_machine_open` and more than 10 s after delivery",
    ),
    Metric("opened_machine", "Machine opens", "opened emails whose every open was a machine's (a proxy, a scanner)"),
    Metric("opens", "Total opens", "every open event (three opens of one email count three)"),
    Metric("clicked", "Unique clicks", "emails with at least one click"),
    Metric("clicks", "Total clicks", "every click event"),
    Metric("unsubscribed", "Unsubscribed", "emails with an unsubscribe (from all or from a group)"),
    Metric("complained", "Complaints", "emails reported as spam"),
    Metric(
        "conversions",
        "Conversions",
        "bookings credited to the email (last click, else last delivered, within the attribution window)",
    ),
    Metric("converted", "Converting recipients", "emails credited with at least one booking"),
    Metric("value_XXX", "Value (XXX)", "the credited bookings' value, per currency"),
    Metric(
        "leads",
        "Leads",
        "contacts who signed up in the month (on the clinic's clock), by the source of their first consent or "
        "their first concern (only with consent to use it, else `general`); erased contacts are gone",
        "cohorts",
    ),
    Metric(
        "booked_30d",
        "Booked within 30 days",
        "leads with a conversion event (`[attribution] conversions`) at most 30 days after signing up, whether "
        "or not an email earned it; likewise `booked_60d`, `booked_90d`. The share (`booked_30d_rate`) is "
        "against leads, shown once 30 days have passed since the month's last signup, for 10 leads or more",
        "cohorts",
    ),
    Metric(
        "mailed",
        "People mailed",
        "people with at least one sent email of the campaign (an erased person counts once per email)",
        "revenue",
    ),
    Metric(
        "value",
        "Value",
        "the value of the bookings credited to the campaign (as `conversions` credits them), one row per "
        "currency; `value_per_delivered` divides it by `delivered`, `value_per_recipient` by `mailed`",
        "revenue",
    ),
    Metric(
        "last_click",
        "Bookings by last click",
        "bookings credited to the campaign's email that the person clicked last within the window (a booking "
        "without such a click: none); `last_click_value` their value",
        "revenue",
    ),
    Metric(
        "last_delivered",
        "Bookings by last delivered",
        "bookings credited to the campaign's email sent last to the person within the window and not bounced "
        "or dropped, clicked or not; `last_delivered_value` their value",
        "revenue",
    ),
)

COHORT_DAYS = (30, 60, 90)  # the `booked_<n>d` windows of the cohort table
REVENUE_RATES: dict[str, tuple[str, str]] = {
    "value_per_delivered": ("value", "delivered"),
    "value_per_recipient": ("value", "mailed"),
}

# rate column -> (numerator, denominator): the bounce and delivery rates are against sent, the rest against
# delivered, except click-to-open (unique clickers against unique openers).
RATES: dict[str, tuple[str, str]] = {
    "delivery_rate": ("delivered", "sent"),
    "bounce_rate": ("bounced", "sent"),
    "opened_rate": ("opened", "delivered"),
    "human_open_rate": ("opened_human", "delivered"),
    "clicked_rate": ("clicked", "delivered"),
    "unsubscribed_rate": ("unsubscribed", "delivered"),
    "complained_rate": ("complained", "delivered"),
    "click_to_open_rate": ("clicked", "opened"),
    "conversion_rate": ("converted", "delivered"),
}


def readme_table() -> str:
    """The Markdown table of `METRICS` as the README shows it."""
    lines = ["| Column | Figure | Tables | One email, event or person counts when |", "|---|---|---|---|"]
    lines += [f"| `{m.column}` | {m.name} | {m.tables} | {m.definition} |" for m in METRICS]
    return "\n".join(lines)
