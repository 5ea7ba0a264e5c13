"""Campaign pages: the list, one campaign (plan, lint, sign-off, ledger, actions), the confirmed actions, the
form, previews, test sends and the sign-off.

Every view is a module-level function run in the thread pool (`auth.page`): it reads through
`needlecast.readmodels.campaigns` / `previews` and changes through `needlecast.actions`; the console (store,
workspace, senders) is the request's app's (`console_of`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import campaigns as campaigns_actions
from needlecast.actions import templates as templates_actions
from needlecast.errors import CampaignFileError, NeedlecastError, NotFound
from needlecast.readmodels import campaigns as campaigns_read
from needlecast.readmodels.email_previews import SAMPLE, campaign_preview, kept_sample_subjects
from needlecast.web.console.auth import Who, console_of, page
from needlecast.web.console.forms import document_from_form, field_of, form_values

PLAN_DAYS = 30
PREVIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'self'; sandbox"
DRAFT_ACTIONS = ("schedule", "send-now")  # what a draft offers: each makes it live (audited)
ACTIONS = {  # action -> (button, style, the status it needs)
    "schedule": ("Schedule", "", None),
    "send-now": ("Send now", "", None),
    "pause": ("Pause", "secondary", campaigns_actions.ACTIVE),
    "resume": ("Resume", "secondary", campaigns_actions.PAUSED),
    "cancel": ("Cancel", "danger", None),
}
STATUS_OF = {
    "pause": campaigns_actions.PAUSED,
    "resume": campaigns_actions.ACTIVE,
    "cancel": campaigns_actions.CANCELLED,
}


def back_to(request: Request, campaign_id: str, message: str = "", kind: str = "ok") -> Response:
    """To the campaign's page, with a message on it."""
    query = f"?{urlencode({'flash': message, 'kind': kind})}" if message else ""
    return RedirectResponse(f"{console_of(request).prefix(request)}/campaigns/{campaign_id}{query}", status_code=303)


def flash(request: Request) -> dict[str, str]:
    return {"flash": request.query_params.get("flash", "")[:500], "flash_kind": request.query_params.get("kind", "")}


# -- the list and one campaign ---------------------------------------------------------------------------------


@page("campaigns.view")
def campaign_list(request: Request, who: Who) -> Response:
    """Every campaign; each one sending now (emails claimed, or a send of this process running) is followed by
    static/send-progress.js through `campaign_status`, row by row, without reloading the page (no refresh)."""
    console = console_of(request)
    kept = campaigns_read.kept_campaign_list(console.engine, console.workspace)  # counts as of `computed_at`
    items = kept.figure or []
    senders = console.senders
    sending = {i.id for i in items if i.counts.get("sending", 0) or (senders is not None and senders.sending(i.id))}
    return console.render(
        request,
        who,
        "campaigns.html",
        title="Campaigns",
        items=items,
        sending=sending,
        counted_at=kept.computed_at,
        counts_updating=kept.updating,
        **flash(request),
    )


def _actions_for(status: str) -> list[tuple[str, str, str]]:
    """The action buttons a campaign in `status` offers: (action, label, style)."""
    return [
        (name, label, style)
        for name, (label, style, needs) in ACTIONS.items()
        if (needs is None or status == needs)
        and status != campaigns_actions.CANCELLED
        and (status != campaigns_read.DRAFT or name in DRAFT_ACTIONS)
    ]


@page("campaigns.view")
def campaign_page(request: Request, who: Who) -> Response:
    console = console_of(request)
    shown = campaigns_read.campaign_page(
        console.engine, console.workspace, request.path_params["campaign"], PLAN_DAYS, frames=console.frames
    )
    detail = shown.detail
    sending = _sending(request, detail)
    return console.render(
        request,
        who,
        "campaign.html",
        title=shown.campaign.name,
        campaign=shown.campaign,
        subjects=kept_sample_subjects(console.workspace, console.secret, shown.campaign.id),  # as a reader sees them
        overview=detail.overview,
        plan=shown.plan,  # None while its first plan is worked out: the page says so and updates itself
        planned_at=shown.planned_at,
        plan_updating=shown.plan_updating,
        rows=shown.plan.emails if shown.plan is not None else [],
        counted_at=detail.counted_at,
        counts_updating=detail.counts_updating,
        days=PLAN_DAYS,
        findings=[campaigns_read.finding_in_words(f) for f in shown.findings] if shown.findings is not None else None,
        errors=shown.errors,
        stale=shown.stale,
        actions=_actions_for(detail.overview.state),
        seeds=shown.seeds,
        # No refresh: while it sends, static/send-progress.js polls `campaign_status` and updates the counts.
        sending=sending,
        send_asked=request.query_params.get("send") == "started",
        outcome=detail.outcome,
        said=detail.said,
        skipped=detail.skipped,
        words=campaigns_read.reason_in_words,
        **flash(request),
    )


def _sending(request: Request, detail: campaigns_read.CampaignDetail) -> bool:
    """Whether the campaign is sending now: emails claimed in the ledger, or a send of this process running."""
    senders = console_of(request).senders
    return detail.overview.counts.get("sending", 0) > 0 or bool(senders and senders.sending(detail.overview.id))


@page("campaigns.view")
def campaign_status(request: Request, who: Who) -> Response:
    """The campaign's send as JSON for static/send-progress.js: `sending` (bool), `counts` (emails by state)
    and `said` (the outcome so far in words); `NotFound` (the console's 404) for an unknown campaign."""
    console = console_of(request)
    detail = campaigns_read.campaign_detail(
        console.engine, console.workspace, request.path_params["campaign"], kept=True
    )  # counts kept a few seconds: every open page polls this
    status = {"sending": _sending(request, detail), "counts": dict(detail.overview.counts), "said": detail.said}
    return JSONResponse(status, headers={"cache-control": "no-store"})


# -- actions, each confirmed ---------------------------------------------------------------------------------


@page("campaigns.schedule")
def confirm_action(request: Request, who: Who) -> Response:
    console = console_of(request)
    campaign_id, action = request.path_params["campaign"], request.path_params["action"]
    name = campaigns_read.campaign_name(console.workspace, campaign_id)
    if action not in ACTIONS:
        raise NotFound(f"no action '{action}'", what="action", name=action)
    label, style, _ = ACTIONS[action]
    prefix = console.prefix(request)
    return console.render(
        request,
        who,
        "confirm.html",
        title=f"{label}: {name}",
        question=campaigns_read.reach(console.engine, console.workspace, campaign_id, action, frames=console.frames),
        button=f"{label} {name}",  # the name the clinic gave it, not its file id
        kind=style,
        action_url=f"{prefix}/campaigns/{campaign_id}/{action}",
        back=f"{prefix}/campaigns/{campaign_id}",
    )


def _act(request: Request, who: Who, campaign_id: str, action: str) -> Response:
    """Do a confirmed action through `actions.campaigns`; the page it leads to says what happened."""
    console = console_of(request)
    engine, workspace = console.engine, console.workspace
    if action == "schedule":
        campaigns_actions.schedule(engine, workspace, who.actor, campaign_id, release_draft=True)
        return back_to(request, campaign_id, "Scheduled: the scheduler gives it its jobs within a minute.")
    if action == "send-now":
        assert console.senders is not None
        campaigns_actions.request_send_now(
            engine, workspace, who.actor, campaign_id, console.senders.send_now, release_draft=True
        )
        # No message in the address: the page says "sending" while the send runs, then what it did.
        query = urlencode({"send": "started"})
        return RedirectResponse(f"{console.prefix(request)}/campaigns/{campaign_id}?{query}", status_code=303)
    if action in STATUS_OF:
        cancelled = campaigns_actions.set_campaign_status(engine, workspace, who.actor, campaign_id, STATUS_OF[action])
        said = {"pause": "Paused.", "resume": "Resumed."}.get(action)
        return back_to(request, campaign_id, said or f"Cancelled; {cancelled} queued email(s) will never be sent.")
    raise NotFound(f"no action '{action}'")


@page("campaigns.schedule")
def do_action(request: Request, who: Who) -> Response:
    campaign_id = request.path_params["campaign"]
    try:
        return _act(request, who, campaign_id, request.path_params["action"])
    except CampaignFileError as err:
        if err.field.startswith("schedule"):  # a moment already past: the page's fix, not the command line's
            fix = "edit the campaign and choose a later moment, or use Send now to send it at once"
            return back_to(request, campaign_id, f"Not done: {err.problem}. Fix: {fix}.", "bad")
        return back_to(request, campaign_id, str(err), "bad")
    except NeedlecastError as err:
        return back_to(request, campaign_id, str(err), "bad")


# -- the form ------------------------------------------------------------------------------------------------


def form_page(
    request: Request, who: Who, title: str, values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> Response:
    console = console_of(request)
    form = campaigns_read.campaign_form(console.workspace)
    return console.render(
        request,
        who,
        "campaign_form.html",
        status=status,
        title=title,
        v=values,
        errors=errors,
        segments=form.segments,
        templates=form.templates,
        variants=form.variants,
        articles=form.articles,
        default_article=form.default_article,
    )


def _error_in_words(err: CampaignFileError) -> str:
    """A form's error beside its field: the problem and the fix, without a command the fix may name."""
    return f"{err.problem}. Fix: {err.fix.partition(': needlecast ')[0]}"


@page("campaigns.edit")
def new_form(request: Request, who: Who) -> Response:
    return form_page(request, who, "New campaign", form_values({}), {})


@page("campaigns.edit")
def edit_form(request: Request, who: Who) -> Response:
    campaign_id = request.path_params["campaign"]
    document = campaigns_read.campaign_form(console_of(request).workspace, campaign_id).document
    return form_page(request, who, f"Edit {campaign_id}", form_values(document), {})


def save(request: Request, who: Who, replacing: str | None) -> Response:
    """Save the form as a draft (`actions.campaigns.save_campaign`), or show it again naming the field."""
    assert who.form is not None
    console = console_of(request)
    previous = campaigns_read.campaign_form(console.workspace, replacing).document if replacing else None
    document = document_from_form(who.form, previous)
    try:
        campaign = campaigns_actions.save_campaign(console.engine, console.workspace, who.actor, document, replacing)
    except CampaignFileError as err:
        # keep what was typed in the rows the loader saw, including an empty last one
        title = f"Edit {replacing}" if replacing else "New campaign"
        return form_page(request, who, title, form_values(document), {field_of(err.field): _error_in_words(err)}, 422)
    return back_to(
        request,
        campaign.id,
        f"Saved {campaign.name} as a draft: nothing is sent until you press Schedule.",
    )


@page("campaigns.edit")
def create(request: Request, who: Who) -> Response:
    return save(request, who, None)


@page("campaigns.edit")
def update(request: Request, who: Who) -> Response:
    return save(request, who, request.path_params["campaign"])


# -- previews ------------------------------------------------------------------------------------------------


def _preview_of(request: Request) -> Any:
    console = console_of(request)
    query = request.query_params
    return campaign_preview(
        console.workspace,
        console.secret,
        request.path_params["campaign"],
        query.get("step"),
        query.get("variant", ""),
        query.get("arm", ""),
    )


@page("campaigns.view")
def preview(request: Request, who: Who) -> Response:
    shown = _preview_of(request)
    campaign, step, email = shown.campaign, shown.step, shown.email
    query = urlencode({"step": step.id, "variant": shown.variant, **({"arm": shown.arm} if shown.arm else {})})
    return console_of(request).render(
        request,
        who,
        "preview.html",
        title=f"Preview of {campaign.id}: {step.id}",
        campaign=campaign,
        step=step,
        variant=shown.variant,
        arm=shown.arm,
        variants=shown.variants,
        arms=shown.arms,
        error=shown.error,
        subject=email.subject if email else "",
        preheader=email.preheader if email else "",
        text=email.text if email else "",
        sample=SAMPLE,
        frame_url=f"{console_of(request).prefix(request)}/campaigns/{campaign.id}/preview.html?{query}",
    )


@page("campaigns.view")
def preview_html(request: Request, who: Who) -> Response:
    shown = _preview_of(request)
    if shown.email is None:
        return HTMLResponse(f"<p>{shown.error}</p>", status_code=422, headers={"content-security-policy": PREVIEW_CSP})
    headers = {"content-security-policy": PREVIEW_CSP, "x-frame-options": "SAMEORIGIN"}
    return HTMLResponse(shown.email.html, headers=headers)


# -- test sends and sign-off ---------------------------------------------------------------------------------


@page("campaigns.test_send")
def send_test(request: Request, who: Who) -> Response:
    console = console_of(request)
    campaign_id = request.path_params["campaign"]
    assert who.form is not None
    step = str(who.form.get("step") or "") or None
    try:
        sent = templates_actions.test_send(console.workspace, console.engine, who.actor, None, campaign_id, step)
    except NeedlecastError as err:
        return back_to(request, campaign_id, str(err), "bad")
    return back_to(
        request,
        campaign_id,
        f"Test sent: {sent.requests} email(s), every variant and arm, to the {len(sent.recipients)} seed address(es).",
    )


@page("signoff.record")
def signoff(request: Request, who: Who) -> Response:
    console = console_of(request)
    campaign_id = request.path_params["campaign"]
    assert who.form is not None
    note = str(who.form.get("note") or "")
    try:
        campaigns_actions.record_signoff(console.engine, console.workspace, who.actor, campaign_id, note)
    except NeedlecastError as err:
        return back_to(request, campaign_id, str(err), "bad")
    return back_to(request, campaign_id, "Sign-off recorded in the campaign's file.")


ROUTES = [
    Route("/", campaign_list),
    Route("/campaigns/new", new_form, methods=["GET"]),
    Route("/campaigns/new", create, methods=["POST"]),
    Route("/campaigns/{campaign}", campaign_page),
    Route("/campaigns/{campaign}/status", campaign_status, methods=["GET"]),
    Route("/campaigns/{campaign}/edit", edit_form, methods=["GET"]),
    Route("/campaigns/{campaign}/edit", update, methods=["POST"]),
    Route("/campaigns/{campaign}/confirm/{action}", confirm_action),
    Route("/campaigns/{campaign}/preview", preview),
    Route("/campaigns/{campaign}/preview.html", preview_html),
    Route("/campaigns/{campaign}/test-send", send_test, methods=["POST"]),
    Route("/campaigns/{campaign}/signoff", signoff, methods=["POST"]),
    Route("/campaigns/{campaign}/{action}", do_action, methods=["POST"]),
]
