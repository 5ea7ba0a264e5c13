"""The console's home page (`/console/`): the clinic's dashboard, or a new clinic's checklist.

Module-level views (`auth.page`). Every figure comes from `needlecast.readmodels.home` (the report's own
definitions); the page only words and links them. `?view=week|month` switches the calendar, `?at=YYYY-MM-DD`
moves it to the week or month holding that day; anything else there is a 400 naming the parameter.
The campaign list, which used to be the home page, is at `/campaigns`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from needlecast.errors import InvalidRequest
from needlecast.readmodels.home import (
    Growth,
    attention,
    calendar,
    clinic_today,
    first_run,
    growth_shown,
    kept_last_30_days,
    load_campaigns,
    sent_emails_shown,
)
from needlecast.web.console import campaign_views
from needlecast.web.console.auth import Who, console_of, page

CHART_HEIGHT = 120  # the growth chart's drawing height (SVG units; its bars scale to the busiest week)


def _anchor(request: Request) -> date | None:
    raw = request.query_params.get("at", "")
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"at: '{raw[:20]}' is not a day like 2026-12-07") from None


def _bars(weeks: list[date], totals: list[int], unsubscribed: list[int]) -> list[dict[str, object]]:
    """The growth chart's bars: per week, new leads (up) and unsubscribes, scaled to the busiest week."""
    top = max([*totals, *unsubscribed, 1])
    bars = []
    for n, (week, leads, gone) in enumerate(zip(weeks, totals, unsubscribed, strict=True)):
        lead_h = round(CHART_HEIGHT * leads / top)
        gone_h = round(CHART_HEIGHT * gone / top)
        bars.append(
            {
                "x": 10 + n * 60,
                "week": week,
                "leads": leads,
                "gone": gone,
                "lead_y": 10 + CHART_HEIGHT - lead_h,
                "lead_h": lead_h,
                "gone_y": 10 + CHART_HEIGHT - gone_h,
                "gone_h": gone_h,
            }
        )
    return bars


@page("campaigns.view")
def home(request: Request, who: Who) -> Response:
    """The dashboard (see the module contract), or the first run's checklist."""
    console = console_of(request)
    workspace, engine = console.workspace, console.engine
    now = datetime.now(UTC)
    campaigns = load_campaigns(
        engine, workspace, now, frames=console.frames
    )  # read once: the checklist, calendar and attention share it
    start = first_run(engine, workspace, now, campaigns)
    if start.show:
        return console.render(
            request, who, "home.html", title="Welcome to needlecast", checklist=start.steps, first_run=True
        )
    view = request.query_params.get("view", "week")
    try:
        shown = calendar(engine, workspace, view, _anchor(request), now, frames=console.frames, campaigns=campaigns)
    except InvalidRequest as problem:
        return console.render(request, who, "message.html", status=400, title="Check the link", message=str(problem))
    today = clinic_today(workspace, now)
    # Kept figures, never waited for: the kept ones (as of a time) or a placeholder while they are worked out.
    emails = sent_emails_shown(engine, workspace)
    grown = growth_shown(engine, workspace, today)
    sent = emails.figure
    return console.render(
        request,
        who,
        "home.html",
        title="Home",
        first_run=False,
        period=kept_last_30_days(engine, workspace, today, emails) if sent is not None else None,
        emails=emails,
        calendar=shown,
        attention=attention(engine, workspace, now, sent, campaigns) if sent is not None else None,
        growth=grown.figure,
        grown=grown,
        **_chart(grown.figure),
    )


def _chart(grown: Growth | None) -> dict[str, object]:
    """The growth chart's bars and size (none while the figures are worked out)."""
    if grown is None:
        return {"bars": [], "chart_height": CHART_HEIGHT + 40, "chart_width": 20}
    totals = [grown.total(w) for w in grown.weeks]
    unsubscribed = [grown.unsubscribed[w] for w in grown.weeks]
    return {
        "bars": _bars(grown.weeks, totals, unsubscribed),
        "chart_height": CHART_HEIGHT + 40,
        "chart_width": 20 + 60 * len(grown.weeks),
    }


ROUTES = [
    Route("/", home),
    Route("/campaigns", campaign_views.campaign_list),
]
