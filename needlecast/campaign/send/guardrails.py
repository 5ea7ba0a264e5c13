"""The deliverability guard: a sending campaign pauses itself before it hurts the clinic's reputation.

Contract:
- The window: the campaign's last `[deliverability] window` emails handed to the provider (ledger rows
  `sent`, `unknown` or `failed`, newest delivery ids first), after its `guard_floor` (the newest email
  handed over before a person last resumed it). The rates are taken over the emails in the window, but
  never over fewer than `MIN_WINDOW` (200): ten hard bounces among a campaign's first twenty emails pause it,
  one among its first two does not.
- The thresholds, each reached when the figure is at or above it:
  - `hard_bounces`: the share of the window with a hard bounce (SendGrid `bounce`, not `blocked`), at
    `hard_bounce_percent` (default 5 %);
  - `complaints`: the share of the window reported as spam (SendGrid `spamreport`), at `complaint_percent`
    (default 0.1 %);
  - `provider_errors` (listmonk's `max_send_errors`, a count of failed sends that pauses a campaign, kept
    over the same window): the emails of the window the provider refused (a request answered with an error
    after its retries: ledger `failed`) or dropped (SendGrid `dropped`), at `provider_errors` (default 50).
- `check_after_events(conn, delivery_ids, settings)` runs where webhook events are applied (in their
  transaction, through `after_events`, the hook the web app hands to `tracking.webhook.ingest`), for the
  campaigns of the bounces, complaints and drops among them; `check_campaign(conn, campaign_id, settings)`
  runs where the dispatcher records failed sends, and where it records sent emails
  that already have such an event (`events_came_first`: SendGrid was quicker than the dispatcher's mark).
  A check that finds a threshold reached pauses an `active` campaign (only an active one: a campaign paused
  or cancelled by a person stays as it is) with the threshold and its figures in its state (`note`,
  `guard_threshold`, `guard_figures`), audits `campaign.auto_paused` as the system with the figures, and
  logs ids and numbers only. Its queued rows stay queued; every sender sees the pause before its next claim
  and sends nothing more (the batches of a round already handed to the backend finish).
- Only a person resumes it (`actions.campaigns.set_campaign_status`), which calls `on_resume`: the
  figures are cleared from the state (the audit entry keeps them) and the window starts after the emails
  handed over so far, so that the emails the pause was about do not pause it again.
- `DispatchGuard`: both checks and the warm-up's caps (`warmup.admit`) as the dispatcher calls them.
- `GuardCollector`: Prometheus gauges of the campaigns the guard paused, by threshold, with their figures.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, select, update

from needlecast.accounts import audit
from needlecast.accounts.roles import SYSTEM
from needlecast.campaign.send import warmup
from needlecast.campaign.send.state import ACTIVE, PAUSED
from needlecast.config.deliverability import MIN_WINDOW, DeliverabilitySettings
from needlecast.store import guardwindow
from needlecast.store.delivery import DeliveryStore, delivery_store
from needlecast.store.helpers import utcnow
from needlecast.store.schema import campaign_state

log = logging.getLogger("needlecast.guardrails")

HARD_BOUNCES, COMPLAINTS, PROVIDER_ERRORS = "hard_bounces", "complaints", "provider_errors"
# The event kinds that can move a figure: what the webhook hook looks for before it counts anything.
BAD_KINDS = frozenset({"bounced", "complained", "dropped"})
_WORDS = {
    HARD_BOUNCES: "hard bounces",
    COMPLAINTS: "spam complaints",
    PROVIDER_ERRORS: "emails the provider refused or dropped",
}
_FIXES = {
    HARD_BOUNCES: "check where the list came from and remove addresses that were never confirmed",
    COMPLAINTS: "check that everyone in the segment asked for these emails, and that the unsubscribe link works",
    PROVIDER_ERRORS: "read the errors in `needlecast campaign status` (the sending key, the sender, the content)",
}


@dataclass(frozen=True)
class Figures:
    """What the window holds: its emails, and those hard-bounced, complained of, refused or dropped."""

    emails: int
    hard_bounces: int
    complaints: int
    provider_errors: int

    @property
    def base(self) -> int:
        """The rates' denominator: the window's emails, never fewer than `MIN_WINDOW`."""
        return max(self.emails, MIN_WINDOW)

    def percent(self, count: int) -> float:
        return 100.0 * count / self.base


@dataclass(frozen=True)
class Trip:
    """A threshold reached: which, its figure and limit, and the window's figures."""

    threshold: str
    count: int
    limit: float
    figures: Figures

    def sentence(self) -> str:
        """What paused the campaign, with the figures, in the clinic's words (no addresses: counts only)."""
        words = _WORDS[self.threshold]
        base = self.figures.base
        if self.threshold == PROVIDER_ERRORS:
            measured = f"{self.count} {words} among the last {base} emails (the limit is {self.limit:g})"
        else:
            measured = (
                f"{words} reached {self.figures.percent(self.count):.2f} % ({self.count} of the last {base} "
                f"emails; the limit is {self.limit:g} %)"
            )
        return f"paused itself: {measured}. Before resuming, {_FIXES[self.threshold]}."

    def as_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "count": self.count,
            "limit": self.limit,
            "percent": round(self.figures.percent(self.count), 4),
            **asdict(self.figures),
            "base": self.figures.base,
        }


def window_figures(conn: Connection, campaign_id: str, window: int, floor: int = 0) -> Figures:
    """The figures of the campaign's rolling window (see the module contract), read through the ledger's
    index of the campaign's delivery ids (`store.guardwindow`)."""
    emails, errors, bounced, complained = guardwindow.window_counts(conn, campaign_id, window, floor)
    return Figures(emails, bounced, complained, errors)


def first_trip(figures: Figures, settings: DeliverabilitySettings) -> Trip | None:
    """The first threshold the figures reach (complaints, then hard bounces, then provider errors), or None."""
    base = figures.base
    # count / base >= limit %, compared without dividing (0.1 % of 1,000 is one complaint, exactly)
    if figures.complaints and figures.complaints * 100 >= settings.complaint_percent * base - 1e-9:
        return Trip(COMPLAINTS, figures.complaints, settings.complaint_percent, figures)
    if figures.hard_bounces and figures.hard_bounces * 100 >= settings.hard_bounce_percent * base - 1e-9:
        return Trip(HARD_BOUNCES, figures.hard_bounces, settings.hard_bounce_percent, figures)
    if figures.provider_errors >= settings.provider_errors:
        return Trip(PROVIDER_ERRORS, figures.provider_errors, float(settings.provider_errors), figures)
    return None


def check_campaign(conn: Connection, campaign_id: str, settings: DeliverabilitySettings) -> Trip | None:
    """Pause the campaign when its window reaches a threshold (only an active one); the threshold, or None."""
    row = conn.execute(
        select(campaign_state.c.status, campaign_state.c.guard_floor).where(campaign_state.c.campaign_id == campaign_id)
    ).first()
    if row is None or row.status != ACTIVE:
        return None
    trip = first_trip(window_figures(conn, campaign_id, settings.window, int(row.guard_floor)), settings)
    if trip is not None and _pause(conn, campaign_id, trip):
        return trip
    return None


def check_after_events(
    conn: Connection, delivery_ids: Iterable[int], settings: DeliverabilitySettings
) -> dict[str, Trip]:
    """Check the campaigns of these deliveries (those of the bounces, complaints and drops just applied);
    the campaigns it paused, with their threshold."""
    campaigns = delivery_store(conn).campaigns_of(conn, sorted(set(delivery_ids)))
    paused = {}
    for campaign_id in sorted(campaigns):
        trip = check_campaign(conn, campaign_id, settings)
        if trip is not None:
            paused[campaign_id] = trip
    return paused


def events_came_first(store: DeliveryStore, conn: Connection, delivery_ids: list[int]) -> bool:
    """Whether any of these emails, just recorded as sent, already has a bounce, complaint or drop: its event
    arrived while the row was still `sending`, outside the window, so the dispatcher checks the campaign.
    Asked for every round the dispatcher records, so the store binds the ids as one parameter."""
    return store.has_events_of(conn, delivery_ids, BAD_KINDS)


def after_events(settings: DeliverabilitySettings) -> Callable[[Connection, list[tuple[int | None, str]]], None]:
    """The webhook's hook (`tracking.webhook.ingest`'s `on_applied`): checks the campaigns of the bounces,
    complaints and drops among the events just applied (none among them: nothing is read)."""

    def check(conn: Connection, applied: list[tuple[int | None, str]]) -> None:
        bad = [delivery_id for delivery_id, kind in applied if kind in BAD_KINDS and delivery_id is not None]
        if bad:
            check_after_events(conn, bad, settings)

    return check


def _pause(conn: Connection, campaign_id: str, trip: Trip) -> bool:
    """Pause an active campaign for `trip`, audited; False when it was no longer active (a person acted)."""
    figures = trip.as_dict()
    changed = conn.execute(
        update(campaign_state)
        .where(campaign_state.c.campaign_id == campaign_id, campaign_state.c.status == ACTIVE)
        .values(
            status=PAUSED,
            note=trip.sentence()[:2000],
            guard_threshold=trip.threshold,
            guard_figures=json.dumps(figures, sort_keys=True),
            updated_at=utcnow(),
        )
    )
    if changed.rowcount != 1:
        return False
    audit.record(conn, SYSTEM, "campaign.auto_paused", f"campaign:{campaign_id}", **figures)
    log.warning(
        "campaign %s paused itself: %s %d of %d (limit %g)",
        campaign_id,
        trip.threshold,
        trip.count,
        trip.figures.base,
        trip.limit,
    )
    return True


def paused_figures(conn: Connection, campaign_id: str) -> str:
    """Why the guard paused the campaign, with the figures ('' when it is not paused by the guard)."""
    row = conn.execute(
        select(campaign_state.c.status, campaign_state.c.note, campaign_state.c.guard_threshold).where(
            campaign_state.c.campaign_id == campaign_id
        )
    ).first()
    if row is None or row.status != PAUSED or not row.guard_threshold:
        return ""
    return str(row.note)


def on_resume(conn: Connection, campaign_id: str) -> dict[str, Any]:
    """A person resumes the campaign: clear the guard's figures and start its window after the emails handed
    over so far. Returns the figures it had paused on ({} when the guard had not paused it), for the audit."""
    row = conn.execute(
        select(campaign_state.c.guard_threshold, campaign_state.c.guard_figures).where(
            campaign_state.c.campaign_id == campaign_id
        )
    ).first()
    floor = guardwindow.newest_handed(conn, campaign_id)
    conn.execute(
        update(campaign_state)
        .where(campaign_state.c.campaign_id == campaign_id)
        .values(guard_threshold="", guard_figures="", guard_floor=int(floor))
    )
    if row is None or not row.guard_threshold:
        return {}
    return dict(json.loads(row.guard_figures or "{}"))


class DispatchGuard:
    """The guard and the warm-up as the dispatcher calls them (`dispatcher.Guard`): made by whoever makes a
    dispatcher (the runner, a worker, a helper process), so the dispatcher imports neither."""

    def __init__(self, settings: DeliverabilitySettings, store: DeliveryStore, quiet: warmup.Quiet = None) -> None:
        """`quiet`: the quiet hours (`[schedule] quiet_hours`, parsed) a deferred email must not land in."""
        self.settings = settings
        self.store = store
        self.quiet = quiet

    def after_record(self, conn: Connection, campaign_id: str, recorded: list[int], failed: bool) -> str:
        """After the dispatcher recorded these emails' outcomes (`failed`: some were refused): check the
        campaign when refused sends or early events may have moved its figures; why it paused, or ''."""
        if not failed and not events_came_first(self.store, conn, recorded):
            return ""
        trip = check_campaign(conn, campaign_id, self.settings)
        return trip.sentence() if trip is not None else ""

    def admit(self, ids: list[int], now: datetime, zone: str) -> set[int]:
        """The warm-up's caps (`warmup.admit`): the claimed emails that may go now; the others wait for the
        next window under the cap and outside their quiet hours (recipients without a zone: `zone`)."""
        return warmup.admit(self.store, self.settings.warmup, ids, now, zone, self.quiet)


class GuardCollector(Collector):
    """`needlecast_campaign_auto_paused{campaign,threshold}` (1 for each campaign the guard paused and no
    person has resumed) and `needlecast_campaign_guard_figure{campaign,figure}` (its figures: the percent,
    the count, the limit and the window's emails), read at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        paused = GaugeMetricFamily(
            "needlecast_campaign_auto_paused",
            "Campaigns the deliverability guard paused, by the threshold reached",
            labels=["campaign", "threshold"],
        )
        figure = GaugeMetricFamily(
            "needlecast_campaign_guard_figure",
            "The figures a campaign was paused on (percent, count, limit, emails in the window)",
            labels=["campaign", "figure"],
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(campaign_state.c.campaign_id, campaign_state.c.guard_threshold, campaign_state.c.guard_figures)
                .where(campaign_state.c.status == PAUSED, campaign_state.c.guard_threshold != "")
                .order_by(campaign_state.c.campaign_id)
            ).all()
        for campaign_id, threshold, raw in rows:
            paused.add_metric([campaign_id, threshold], 1)
            figures = json.loads(raw or "{}")
            for name in ("percent", "count", "limit", "emails"):
                if name in figures:
                    figure.add_metric([campaign_id, name], float(figures[name]))
        yield from (paused, figure)
