"""Report tables from the ledger joined with stored provider events.

Definitions (per delivery, i.e. per recipient of a step):
- sent: the ledger row is `sent`. Each email has one fate (`settle`): bounced_hard when any of its bounces
  was hard, else bounced_soft (a block), else dropped, else delivered, from the provider's events or the
  row's outcome; an email is counted once, never once per event. opened, clicked, unsubscribed,
  complained: at least one such event (unique per recipient: five opens by one person count once).
- opens and clicks: every open and click event (a person who opens three times counts three), beside the
  unique `opened` and `clicked`; the click-to-open rate is unique clickers against unique openers.
- The timeline counts the same: each email once per step, in the period of its first event for it.
- Times are on the clinic's clock (`time_zone`), timezone-aware.
- Rates are against delivered, except the bounce and drop rates, which are against sent.
- Privacy: a group with fewer than `min_group` recipients shows its counts but not its rates (they would
  describe individuals); nothing here holds an address unless recipients are asked for (masked by default).

Deliverability health: complaint rate against 0.1 % (warning) and 0.3 % (critical), bounce rate against 2 %.
The A/B table compares each arm with arm A using a two-sided two-proportion z-test on open and click rates,
shows each arm's subject line (from the campaign files, when given), and names the winner of a step: the
arm with the best rate, when its difference from the runner-up is significant at 95 %.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine, select

from needlecast.addresses import mask_email
from needlecast.config import AttributionSettings
from needlecast.reports.metrics import RATES
from needlecast.statistics.attribution import attribute
from needlecast.statistics.engagement import (
    DERIVED,
    FLAGS,
    GROUP,
    KIND_FLAG,
    TOTALS,
    conversion_events,
    delivery_flags,
    ledger_and_events,
    with_bounced,
)
from needlecast.statistics.significance import wilson, z_test
from needlecast.store.schema import ab_decisions as decided_table
from needlecast.store.schema import contacts, deliveries

CONVERSION_COLUMNS = ("conversions", "converted")  # attributed conversions; deliveries with one or more
COMPLAINT_WARNING, COMPLAINT_CRITICAL, BOUNCE_LIMIT = 0.001, 0.003, 0.02
SIGNIFICANCE = 0.05
MIN_GROUP = 10


@dataclass
class Report:
    deliveries: pd.DataFrame
    funnel: pd.DataFrame
    timeline: pd.DataFrame
    links: pd.DataFrame
    ab: pd.DataFrame
    health: pd.DataFrame
    recipients: pd.DataFrame = field(default_factory=pd.DataFrame)
    totals: pd.DataFrame = field(default_factory=pd.DataFrame)  # the funnel per campaign
    conversions: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per conversion, with its rule
    decisions: pd.DataFrame = field(default_factory=pd.DataFrame)  # A/B winner tests: each arm's figures, the winner
    send_time: pd.DataFrame = field(default_factory=pd.DataFrame)  # optimised sends against their holdout
    time_zone: str = "UTC"  # the clinic's zone: every time in the tables is on its clock
    # A journey's or a sequence's (`readmodels.journey_figures.journey_tables`): the funnel per node, the paths
    journey_funnel: pd.DataFrame = field(default_factory=pd.DataFrame)
    journey_paths: pd.DataFrame = field(default_factory=pd.DataFrame)

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {
            "funnel": self.funnel,
            "totals": self.totals,
            "health": self.health,
            "ab_test": self.ab,
            "timeline": self.timeline,
            "links": self.links,
            "conversions": self.conversions,
        }
        if not self.decisions.empty:
            tables["ab_decisions"] = self.decisions
        if not self.send_time.empty:
            tables["send_time"] = self.send_time
        if not self.recipients.empty:
            tables["recipients"] = self.recipients
        if not self.journey_funnel.empty:
            tables["journey_funnel"] = self.journey_funnel
            tables["journey_paths"] = self.journey_paths
        return tables


def _rate(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator.where(denominator > 0)).astype(float)


def funnel(flags: pd.DataFrame, by: list[str] | None = None, min_group: int = MIN_GROUP) -> pd.DataFrame:
    """Counts and rates per group (default: campaign, step, segment, variant, arm) of `flags`: one row per email
    with a boolean per figure (`delivery_flags`), or one row per group of `emails` emails with a count per
    figure (`reports.groups.email_groups`); both give the same table."""
    by = by or GROUP
    if flags.empty:
        return pd.DataFrame(columns=[*by, "recipients", *FLAGS])
    # One email a row: `bounced` from its flags; a group's counts (`reports.groups`) carry it counted already.
    flags = with_bounced(flags) if flags["bounced_hard"].dtype == bool else flags
    grouped = flags.groupby(by, dropna=False)
    # A row is one email, or (`reports.groups`) a group of `emails` emails with a count per flag.
    size = grouped["emails"].sum() if "emails" in flags else grouped.size()
    counted = [
        *FLAGS,
        *(c for c in DERIVED if c in flags),
        *(c for c in TOTALS.values() if c in flags),
        *(c for c in CONVERSION_COLUMNS if c in flags),
        *sorted(c for c in flags.columns if c.startswith("value_")),
    ]
    table = size.rename("recipients").to_frame().join(grouped[counted].sum()).reset_index()
    for rate, (numerator, denominator) in RATES.items():  # one definition of each rate, for every table
        if numerator in table:
            table[rate] = _rate(table[numerator], table[denominator])
    rate_columns = [c for c in table.columns if c.endswith("_rate")]
    small = table["recipients"] < min_group
    table.loc[small, rate_columns] = float("nan")
    table["rates"] = [f"suppressed (fewer than {min_group})" if s else "shown" for s in small]
    return table


TIMELINE_ORDER = ["sent", *FLAGS[1:6], "opens", "clicked", "clicks", *FLAGS[7:]]


def timeline(flags: pd.DataFrame, stored: pd.DataFrame, freq: str = "D", time_zone: str = "UTC") -> pd.DataFrame:
    """Per period ('h' hourly or 'D' daily, on the clock of `time_zone`, the clinic's): each email counted
    once per funnel step it reached, in the period of its first event for that step (`sent` at its sending;
    its fate as `settle` decides, so a soft bounce of a hard-bounced email is not counted), so that a column
    adds up to the funnel's figure: `opened` is the unique opens, emails first opened in that period. `opens`
    and `clicks` count every open and click event. Events that name none of the emails do not count. Hourly
    periods follow the wall clock: the hour repeated when the clocks go back is one period."""
    columns = ["delivery_id", "flag", "occurred_at"]
    if flags.empty:
        return pd.DataFrame(columns=["period"])
    mailed = flags[flags["sent"]]
    sent_at = pd.to_datetime(mailed["sent_at"], utc=True)
    parts = [pd.DataFrame({"delivery_id": mailed["id"], "flag": "sent", "occurred_at": sent_at})]
    events_of = pd.DataFrame(columns=["delivery_id", "kind", "occurred_at"])
    if not stored.empty:
        events_of = stored.dropna(subset=["delivery_id"]).astype({"delivery_id": "int64"})
        events_of = events_of[events_of["delivery_id"].isin(flags["id"])]
        mapped = events_of[events_of["kind"].isin(KIND_FLAG)]
        parts.append(mapped.assign(flag=mapped["kind"].map(KIND_FLAG))[columns])
        engaged = events_of[events_of["kind"].isin(TOTALS)]  # an open or a click proves delivery
        parts.append(engaged.assign(flag="delivered")[columns])
    moments = pd.concat(parts, ignore_index=True).dropna(subset=["occurred_at"])
    reached = flags.melt(id_vars="id", value_vars=FLAGS, var_name="flag", value_name="reached")
    reached = reached[reached["reached"]].rename(columns={"id": "delivery_id"})[["delivery_id", "flag"]]
    first = moments.merge(reached, on=["delivery_id", "flag"]).groupby(["delivery_id", "flag"])["occurred_at"].min()
    counted = [first.reset_index()]
    for kind, column in TOTALS.items():
        every = events_of[events_of["kind"] == kind]
        counted.append(pd.DataFrame({"flag": column, "occurred_at": every["occurred_at"]}))
    found = [c[["flag", "occurred_at"]] for c in counted if not c.empty]
    every_moment = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["flag", "occurred_at"])
    if every_moment.empty:  # nothing sent yet (every email queued), or no time to count
        return pd.DataFrame(columns=["period"])
    local = pd.to_datetime(every_moment["occurred_at"], utc=True).dt.tz_convert(time_zone).dt.tz_localize(None)
    table = (
        every_moment.assign(period=local.dt.floor(freq))
        .groupby(["period", "flag"])
        .size()
        .unstack(fill_value=0)
        .reset_index()
    )
    table["period"] = table["period"].dt.strftime("%Y-%m-%d %H:%M" if freq == "h" else "%Y-%m-%d")
    table.columns.name = None
    return table[["period", *(c for c in TIMELINE_ORDER if c in table.columns)]]


def links(stored: pd.DataFrame) -> pd.DataFrame:
    """Clicks per link: total clicks and unique clickers."""
    if stored.empty or "clicked" not in set(stored["kind"]):
        return pd.DataFrame(columns=["campaign_id", "url", "clicks", "unique_clickers"])
    clicks = stored[stored["kind"] == "clicked"]
    table = clicks.groupby(["campaign_id", "detail"]).agg(
        clicks=("kind", "size"), unique_clickers=("delivery_id", "nunique")
    )
    return table.reset_index().rename(columns={"detail": "url"}).sort_values("clicks", ascending=False)


AB_METRICS = {"open": "opened", "click": "clicked", "conversion": "converted"}  # metric -> the flag it counts
RATE_OF = {"opened": "opened_rate", "clicked": "clicked_rate", "converted": "conversion_rate"}
AB_COLUMNS = [
    "campaign_id",
    "step_id",
    "arm",
    "subject",
    "delivered",
    "opened",
    "clicked",
    "open_rate",
    "click_rate",
    "open_diff",
    "open_p_value",
    "click_diff",
    "click_p_value",
    "conversion_rate",
    "conversion_diff",
    "conversion_p_value",
    "open_winner",
    "click_winner",
    "conversion_winner",
]


def winner(group: pd.DataFrame, flag: str) -> str:
    """The arm with the best rate of `flag` when its difference from the runner-up is significant, else
    "no significant difference" (one arm, or too few deliveries, is never a winner)."""
    ranked = group.assign(_rate=_rate(group[flag], group["delivered"])).sort_values("_rate", ascending=False)
    if len(ranked) < 2 or ranked["_rate"].isna().any():
        return "no significant difference"
    best, second = ranked.iloc[0], ranked.iloc[1]
    p_value = z_test(int(second[flag]), int(second["delivered"]), int(best[flag]), int(best["delivered"]))
    if math.isnan(p_value) or p_value >= SIGNIFICANCE or best["_rate"] == second["_rate"]:
        return "no significant difference"
    return f"{best['arm']} (p = {p_value:.3f})"


def ab_test(flags: pd.DataFrame, subjects: dict[tuple[str, str, str], str] | None = None) -> pd.DataFrame:
    """Each arm beside arm A of the same campaign and step: its subject, rates, the difference and its p-value,
    and the step's winner per metric. `subjects`: (campaign, step, arm) -> the arm's subject line."""
    armed = flags[flags["arm"] != ""] if not flags.empty else flags
    if armed.empty:
        return pd.DataFrame(columns=AB_COLUMNS)
    table = funnel(armed, ["campaign_id", "step_id", "arm"], min_group=0)
    rows = []
    for (campaign, step), group in table.groupby(["campaign_id", "step_id"]):
        base = group[group["arm"] == group["arm"].min()].iloc[0]
        winners = {metric: winner(group, flag) for metric, flag in AB_METRICS.items() if flag in group}
        for _, arm in group.iterrows():
            row: dict[str, object] = {
                "campaign_id": campaign,
                "step_id": step,
                "arm": arm["arm"],
                "subject": (subjects or {}).get((str(campaign), str(step), str(arm["arm"])), ""),
                "delivered": int(arm["delivered"]),
                "opened": int(arm["opened"]),
                "clicked": int(arm["clicked"]),
            }
            for metric, flag in AB_METRICS.items():
                if flag not in group:
                    continue
                rate = RATE_OF[flag]
                row[f"{metric}_rate"] = arm[rate]
                row[f"{metric}_diff"] = arm[rate] - base[rate]
                row[f"{metric}_p_value"] = (
                    z_test(int(base[flag]), int(base["delivered"]), int(arm[flag]), int(arm["delivered"]))
                    if arm["arm"] != base["arm"]
                    else float("nan")
                )
                row[f"{metric}_winner"] = winners[metric]
            rows.append(row)
    return pd.DataFrame(rows, columns=AB_COLUMNS)


def health(flags: pd.DataFrame) -> pd.DataFrame:
    """Per campaign: complaint and bounce rates against the mailbox providers' thresholds, flagged."""
    table = funnel(flags, ["campaign_id"], min_group=0)
    if table.empty:
        return pd.DataFrame(columns=["campaign_id", "sent", "complaint_rate", "bounce_rate", "flag"])
    out = table[["campaign_id", "sent", "delivered", "complained", "bounced_hard", "bounced_soft"]].copy()
    out["complaint_rate"] = table["complained_rate"].fillna(0.0)
    out["bounce_rate"] = table["bounce_rate"].fillna(0.0)
    flags_ = []
    for complaint, bounce in zip(out["complaint_rate"], out["bounce_rate"], strict=True):
        problems = []
        if complaint >= COMPLAINT_CRITICAL:
            problems.append("complaints over 0.3 % (critical)")
        elif complaint >= COMPLAINT_WARNING:
            problems.append("complaints over 0.1 %")
        if bounce >= BOUNCE_LIMIT:
            problems.append("bounces over 2 %")
        flags_.append("; ".join(problems) or "ok")
    out["flag"] = flags_
    return out


def recipients(engine: Engine, flags: pd.DataFrame, unmasked: bool) -> pd.DataFrame:
    """Per-recipient rows (only on request): address masked unless `unmasked`."""
    if flags.empty:
        return pd.DataFrame()
    with engine.connect() as conn:
        emails = dict(conn.execute(select(contacts.c.id, contacts.c.email)).all())
    table = flags[["contact_id", *GROUP, "status", *FLAGS[1:]]].copy()
    table.insert(0, "email", [emails.get(int(c), "(erased)") for c in table["contact_id"]])
    if not unmasked:
        table["email"] = [e if e == "(erased)" else mask_email(e) for e in table["email"]]
    return table.drop(columns=["contact_id"])


def add_conversions(flags: pd.DataFrame, credited: pd.DataFrame) -> pd.DataFrame:
    """`flags` with, per delivery, how many conversions it was credited with (`conversions`), whether it had
    any (`converted`), and the credited value per currency (`value_GBP`, ...)."""
    frame = flags.copy()
    attributed = credited.dropna(subset=["delivery_id"]) if not credited.empty else credited
    frame["conversions"] = 0
    frame["converted"] = False
    if attributed.empty:
        return frame
    attributed = attributed.astype({"delivery_id": "int64"})
    counts = attributed["delivery_id"].value_counts()
    frame["conversions"] = frame["id"].map(counts).fillna(0).astype("int64")
    frame["converted"] = frame["conversions"] > 0
    valued = attributed.dropna(subset=["value"])
    for currency, part in valued.groupby("currency"):
        if currency:
            sums = part.groupby("delivery_id")["value"].sum()
            frame[f"value_{currency}"] = frame["id"].map(sums).fillna(0.0).astype(float)
    return frame


def load_report(
    engine: Engine,
    campaign: str | None = None,
    since: datetime | None = None,
    *,
    freq: str = "D",
    min_group: int = MIN_GROUP,
    include_recipients: bool = False,
    unmasked: bool = False,
    subjects: dict[tuple[str, str, str], str] | None = None,
    attribution: AttributionSettings | None = None,
    time_zone: str = "UTC",
) -> Report:
    """Every report table for one campaign (or all) since a moment; `subjects` names the A/B arms' subject
    lines (`CampaignContext.arm_subjects`); `attribution` says which contact events are conversions and
    their window (default: bookings, 7 days); `time_zone` is the clinic's (`[clinic] time_zone`): times
    in the tables are timezone-aware on its clock, and the timeline's days are its days."""
    rules = attribution or AttributionSettings()
    ledger, stored = ledger_and_events(engine, campaign, since)
    settled = delivery_flags(ledger, stored)  # each email's fate: a bounced or dropped one earns no booking
    credited = attribute(settled, stored, conversion_events(engine, rules.conversions, since), rules.window_days)
    if campaign and not credited.empty:
        credited = credited[credited["campaign_id"] == campaign].reset_index(drop=True)
    flags = add_conversions(settled, credited)
    return Report(
        deliveries=flags,
        funnel=funnel(flags, min_group=min_group),
        timeline=timeline(flags, stored, freq, time_zone),
        links=links(stored),
        ab=ab_test(flags, subjects),
        health=health(flags),
        recipients=recipients(engine, flags, unmasked) if include_recipients else pd.DataFrame(),
        totals=funnel(flags, ["campaign_id"], min_group=min_group),
        conversions=on_clock(credited, time_zone),
        decisions=ab_decisions_table(engine, campaign, time_zone),
        send_time=send_time_table(flags),
        time_zone=time_zone,
    )


def on_clock(table: pd.DataFrame, time_zone: str) -> pd.DataFrame:
    """`table` with every timezone-aware time column converted to `time_zone` (the same instants)."""
    out = table.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.tz_convert(time_zone)
    return out


def as_utc(moment: datetime) -> datetime:
    """A stored time as a timezone-aware one (the store keeps UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def report_campaigns(engine: Engine) -> list[str]:
    """The campaigns that have emails in the ledger (a report can be asked of each), sorted."""
    with engine.connect() as conn:
        return sorted(conn.execute(select(deliveries.c.campaign_id).distinct()).scalars())


SEND_TIME_COLUMNS = ["campaign_id", "step_id", "group", "delivered"] + [
    f"{metric}_{part}" for metric in ("open", "click", "conversion") for part in ("rate", "low", "high")
]


def send_time_table(flags: pd.DataFrame) -> pd.DataFrame:
    """Per campaign and step of an optimised send: the optimised emails (every rule but the holdout) against the
    holdout sent at the plain time, with open, click and conversion rates against delivered and their 95 %
    intervals, so that a clinic can see whether optimisation earns its keep."""
    if flags.empty or "timing" not in flags or not (flags["timing"] != "").any():
        return pd.DataFrame(columns=SEND_TIME_COLUMNS)
    timed = flags[flags["timing"] != ""].assign(
        group=lambda f: f["timing"].where(f["timing"] == "holdout", "optimised")
    )
    rows = []
    for (campaign_id, step_id, group), part in timed.groupby(["campaign_id", "step_id", "group"], sort=True):
        delivered = part[part["delivered"]]
        row: dict[str, object] = {
            "campaign_id": campaign_id,
            "step_id": step_id,
            "group": group,
            "delivered": len(delivered),
        }
        for metric, flag in (("open", "opened"), ("click", "clicked"), ("conversion", "converted")):
            hits = int(delivered[flag].sum()) if flag in delivered else 0
            row[f"{metric}_rate"], row[f"{metric}_low"], row[f"{metric}_high"] = wilson(hits, len(delivered))
        rows.append(row)
    return pd.DataFrame(rows, columns=SEND_TIME_COLUMNS)


DECISION_COLUMNS = [
    "campaign_id",
    "step_id",
    "arm",
    "delivered",
    "successes",
    "success_rate",
    "metric",
    "winner",
    "rule",
]


def ab_decisions_table(engine: Engine, campaign: str | None, time_zone: str = "UTC") -> pd.DataFrame:
    """One row per arm of every decided winner test: the figures it was decided on, the winner and the rule
    (with the p value), and when (on the clock of `time_zone`, the clinic's)."""
    clock = ZoneInfo(time_zone)
    query = select(decided_table)
    if campaign:
        query = query.where(decided_table.c.campaign_id == campaign)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    table = []
    for row in rows:
        figures = json.loads(row["figures"])
        p_value = figures.get("p_value")
        rule = row["rule"] + (f" (p = {p_value:.3f})" if isinstance(p_value, float) and not math.isnan(p_value) else "")
        for arm, counted in sorted(figures.get("arms", {}).items()):
            table.append(
                {
                    "campaign_id": row["campaign_id"],
                    "step_id": row["step_id"],
                    "arm": arm,
                    "delivered": counted["delivered"],
                    "successes": counted["successes"],
                    "success_rate": counted["rate"],
                    "metric": row["metric"],
                    "winner": "yes" if arm == row["winner"] else "",
                    "rule": f"{rule}, decided {as_utc(row['decided_at']).astimezone(clock):%Y-%m-%d %H:%M %Z}",
                }
            )
    return pd.DataFrame(table, columns=DECISION_COLUMNS)
