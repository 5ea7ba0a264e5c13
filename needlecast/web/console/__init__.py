"""The console: a server-rendered web app (Jinja2, no build step, no CDN) in which marketers, reviewers,
analysts and admins do their whole job. Its scripts, `static/import-progress.js` and `static/send-progress.js`,
show a running import's progress and a campaign's counts while it sends; the segment, journey and email builders'
scripts ask the server about their form as it changes through one shared rule, `static/live-answer.js` (only the
newest answer is shown). The Content-Security-Policy allows scripts from the console itself, never inline.

Every page resolves one actor (a session's user) in one place and asks one table whether the actor may do
the page's named action (`needlecast.accounts.roles`); every change goes through `needlecast.actions`
(checked and audited, the same calls the command line makes) and is a POST carrying the session's CSRF
token. Database and file work runs in the thread pool, so the console stays responsive while a send runs.
Links are built from the path the app is mounted at, so it works behind a reverse proxy's path prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from needlecast.config import Workspace, signing_secret
from needlecast.readmodels.segments import FrameCache
from needlecast.web.actors import Session
from needlecast.web.common import Pages, clinic_clock
from needlecast.web.console.auth import Console, Who
from needlecast.web.senders import Senders
from needlecast.wording import duration_words, for_people, placeholders_in_words

HERE = Path(__file__).parent
# Scripts and fetches only from the console itself (the import page's progress script), never inline.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def console_app(workspace: Workspace, engine: Engine, senders: Senders, frames: FrameCache | None = None) -> Starlette:
    from needlecast.web.console import (
        admin_views,
        audience_views,
        campaign_views,
        cohort_views,
        contact_list_views,
        contact_views,
        content_views,
        email_builder_views,
        home_views,
        journey_edit_views,
        journey_views,
        problems,
        report_views,
        segment_views,
        session_views,
        settings_views,
        template_views,
    )
    from needlecast.web.console.jobs import ImportJobs

    pages = Pages(HERE / "templates")
    pages.env.filters["clinic_time"] = clinic_clock(lambda: workspace.settings.clinic.time_zone)  # live
    pages.env.filters["for_people"] = for_people  # a note's words, not its command-line form
    pages.env.filters["duration"] = duration_words
    pages.env.filters["placeholders"] = placeholders_in_words  # a subject's source as "[first name]"

    def render(
        request: Request, who: Who | Session | None, template: str, status: int = 200, **context: Any
    ) -> Response:
        """A console page for `who` (a view's `Who`, or a resolved session; None before log-in)."""
        actor = who.actor if who else None
        html = pages.render(
            template,
            prefix=console.prefix(request),
            user=actor,
            csrf=who.csrf if who else "",
            may=(lambda action: bool(actor and actor.may(action))),
            status=status,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers={"content-security-policy": CSP})

    secret = signing_secret(required=workspace.settings.delivery.backend == "sendgrid")
    console = Console(workspace, engine, secret, render, frames, senders)
    jobs = ImportJobs()
    routes = [
        *session_views.ROUTES,
        *home_views.ROUTES,  # before campaign_views: the home page is "/", the campaign list "/campaigns"
        *campaign_views.ROUTES,
        *journey_edit_views.ROUTES,  # before any "/journeys/{journey}" page: "/journeys/new" is no journey's
        *journey_views.ROUTES,
        *template_views.ROUTES,
        *email_builder_views.ROUTES,
        *audience_views.ROUTES,
        *contact_list_views.ROUTES,  # before contact_views: "/contacts/bulk/..." is no contact's page
        *segment_views.ROUTES,
        *contact_views.ROUTES,
        *cohort_views.ROUTES,  # before report_views: its /reports/{campaign} would take "cohorts"
        *report_views.ROUTES,
        *content_views.ROUTES,
        *admin_views.ROUTES,
        *settings_views.ROUTES,
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers=problems.handlers(console, lambda: app.routes))
    app.state.console = console
    app.state.jobs = jobs
    return app
