"""Campaign pages: the list, one campaign (plan, lint, sign-off, ledger, actions), the form, previews,
test sends, templates. Every view is a plain function run in the thread pool (`Console.page`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import campaigns as campaigns_actions
from needlecast.actions import templates as templates_actions
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.checks import campaign_findings
from needlecast.campaign.definition.editor import document_of
from needlecast.campaign.definition.model import BROADCAST, Campaign
from needlecast.campaign.definition.signoff import stale_files
from needlecast.campaign.outcome import in_words, outcome_of, reach_of
from needlecast.campaign.overview import DRAFT, campaign_overview, campaign_overviews
from needlecast.campaign.plan.preview import build_plans, summary_rows
from needlecast.campaign.send.rendering import render_variant, step_variants
from needlecast.campaign.send.state import ACTIVE, CANCELLED, PAUSED
from needlecast.config import test_recipients
from needlecast.delivery import get_backend
from needlecast.errors import CampaignFileError, NeedlecastError, NotFound, TemplateProblem
from needlecast.lint import lint_workspace
from needlecast.store.delivery import delivery_store
from needlecast.templating.context import variant_concerns
from needlecast.templating.environment import campaign_templates, email_templates
from needlecast.templating.preview import SAMPLE_CONTACT_ID
from needlecast.templating.recipient import recipient_values
from needlecast.templating.render import RenderedEmail
from needlecast.templating.tokens import apply_substitutions, substitutions_for
from needlecast.web.console.auth import Console, Who
from needlecast.web.console.forms import document_from_form, field_of, form_values
from needlecast.web.senders import Senders

PLAN_DAYS = 30
REFRESH_SECONDS = 3
PREVIEW_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'self'; sandbox"
# The template editor shows its preview in a sandboxed `srcdoc` iframe, which inherits the page's policy: the
# email's inline styles and its images (the clinic's logo, over https) must be allowed on this page, or the
# preview is unstyled and the browser logs each blocked style. Scripts stay refused everywhere.
TEMPLATE_EDITOR_CSP = (  # the console's CSP (web/console/__init__.py), with those two allowed
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; form-action 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
DRAFT_ACTIONS = ("schedule", "send-now")  # what a draft offers: each makes it live (audited)
ACTIONS = {  # action -> (button, style, the status it needs)
    "schedule": ("Schedule", "", None),
    "send-now": ("Send now", "", None),
    "pause": ("Pause", "secondary", ACTIVE),
    "resume": ("Resume", "secondary", PAUSED),
    "cancel": ("Cancel", "danger", None),
}


def _now() -> datetime:
    return datetime.now(UTC)


def routes(console: Console, senders: Senders) -> list[Route]:
    workspace = console.workspace

    def context() -> CampaignContext:
        return CampaignContext.load(workspace)

    def back_to(request: Request, campaign_id: str, message: str = "", kind: str = "ok") -> Response:
        query = f"?{urlencode({'flash': message, 'kind': kind})}" if message else ""
        return RedirectResponse(f"{console.prefix(request)}/campaigns/{campaign_id}{query}", status_code=303)

    def flash(request: Request) -> dict[str, str]:
        return {
            "flash": request.query_params.get("flash", "")[:500],
            "flash_kind": request.query_params.get("kind", ""),
        }

    # -- the list ------------------------------------------------------------------------------------------

    @console.page("campaigns.view")
    def campaign_list(request: Request, who: Who) -> Response:
        ctx = context()
        with console.engine.connect() as conn:
            items = campaign_overviews(ctx, conn, _now())
        sending = any(i.counts.get("sending", 0) for i in items) or bool(senders.busy())
        return console.render(
            request,
            who,
            "campaigns.html",
            title="Campaigns",
            items=items,
            folder="campaigns/",
            refresh=REFRESH_SECONDS if sending else 0,
            **flash(request),
        )

    # -- one campaign --------------------------------------------------------------------------------------

    @console.page("campaigns.view")
    def campaign_page(request: Request, who: Who) -> Response:
        ctx = context()
        campaign = ctx.campaign(request.path_params["campaign"])
        with console.engine.connect() as conn:
            overview = campaign_overview(ctx, conn, campaign.id, _now())
        plan = build_plans(workspace, console.engine, campaign.id, PLAN_DAYS, _now(), audience=console.frames).plans[0]
        findings = [
            f
            for f in lint_workspace(
                workspace, templates=sorted({s.template for s in campaign.steps}), articles=ctx.article_ids_of(campaign)
            )
            if not f.rule.startswith("config-") or f.severity == "error"
        ]
        findings = sorted(set(findings + campaign_findings(ctx, campaign)))
        status = overview.state
        actions = [
            (name, label, style)
            for name, (label, style, needs) in ACTIONS.items()
            if (needs is None or status == needs) and status != CANCELLED and (status != DRAFT or name in DRAFT_ACTIONS)
        ]
        sending = overview.counts.get("sending", 0) > 0 or senders.sending(campaign.id)
        outcome = outcome_of(overview.counts, overview.skipped, overview.queued_by_due)
        return console.render(
            request,
            who,
            "campaign.html",
            title=campaign.name,
            campaign=campaign,
            overview=overview,
            plan=plan,
            rows=summary_rows(plan, workspace.settings.clinic.time_zone).to_dict("records"),
            days=PLAN_DAYS,
            findings=findings,
            errors=sum(f.severity == "error" for f in findings),
            stale=stale_files(ctx, campaign),
            actions=actions,
            seeds=test_recipients(workspace),
            refresh=REFRESH_SECONDS if sending else 0,
            sending=sending,
            send_asked=request.query_params.get("send") == "started",
            outcome=outcome,
            said=outcome.sentence(campaign.time_zone),
            skipped=[(count, in_words(reason)) for reason, count in overview.skipped.items()],
            words=in_words,
            **flash(request),
        )

    # -- actions, each confirmed -----------------------------------------------------------------------------

    def reach(campaign: Campaign, action: str) -> str:
        """What the action does, counted after every rule (consent, suppression, quiet hours, the cap)."""
        with console.engine.connect() as conn:
            queued = delivery_store(conn).queued_count(conn, campaign.id)
        if action in ("schedule", "send-now"):
            send_now = action == "send-now"
            days = 0 if send_now and campaign.kind != BROADCAST else 3650
            plan = build_plans(
                workspace, console.engine, campaign.id, days, _now(), audience=console.frames, send_now=send_now
            ).plans[0]
            said = reach_of(plan, _now(), send_now=send_now).sentence(campaign.time_zone, send_now=send_now)
            if plan.new_enrolments:
                said += f" It enrols {len(plan.new_enrolments)} new contact(s)."
            if campaign.draft:
                said = "This is a draft: it becomes live now. " + said
            return said + (f" {queued} email(s) already waiting go too." if queued else "")
        if action == "pause":
            return f"Pausing holds {queued} queued email(s) until the campaign is resumed."
        if action == "resume":
            said = f"Resuming sends the {queued} queued email(s) as they fall due."
            figures = campaigns_actions.auto_pause_figures(console.engine, campaign.id)
            return f"This campaign {figures} {said}" if figures else said
        return f"Cancelling marks {queued} queued email(s) as cancelled: they are never sent. This cannot be undone."

    @console.page("campaigns.schedule")
    def confirm_action(request: Request, who: Who) -> Response:
        campaign = context().campaign(request.path_params["campaign"])
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise NotFound(f"no action '{action}'", what="action", name=action)
        label, style, _ = ACTIONS[action]
        prefix = console.prefix(request)
        return console.render(
            request,
            who,
            "confirm.html",
            title=f"{label}: {campaign.name}",
            question=reach(campaign, action),
            button=f"{label} {campaign.id}",
            kind=style,
            action_url=f"{prefix}/campaigns/{campaign.id}/{action}",
            back=f"{prefix}/campaigns/{campaign.id}",
        )

    @console.page("campaigns.schedule")
    def do_action(request: Request, who: Who) -> Response:
        campaign_id = request.path_params["campaign"]
        action = request.path_params["action"]
        try:
            if action == "schedule":
                campaigns_actions.schedule(console.engine, workspace, who.actor, campaign_id, release_draft=True)
                message = "Scheduled: the scheduler gives it its jobs within a minute."
            elif action == "send-now":
                campaigns_actions.request_send_now(
                    console.engine, workspace, who.actor, campaign_id, senders.send_now, release_draft=True
                )
                # No message in the address: the page says "sending" while the send runs, then what it did.
                query = urlencode({"send": "started"})
                return RedirectResponse(f"{console.prefix(request)}/campaigns/{campaign_id}?{query}", status_code=303)
            elif action in ("pause", "resume", "cancel"):
                status = {"pause": PAUSED, "resume": ACTIVE, "cancel": CANCELLED}[action]
                cancelled = campaigns_actions.set_campaign_status(
                    console.engine, workspace, who.actor, campaign_id, status
                )
                message = {
                    "pause": "Paused.",
                    "resume": "Resumed.",
                    "cancel": f"Cancelled; {cancelled} queued email(s) will never be sent.",
                }[action]
            else:
                raise NotFound(f"no action '{action}'")
        except CampaignFileError as err:
            if err.field.startswith("schedule"):  # a moment already past: the page's fix, not the command line's
                fix = "edit the campaign and choose a later moment, or use Send now to send it at once"
                return back_to(request, campaign_id, f"Not done: {err.problem}. Fix: {fix}.", "bad")
            return back_to(request, campaign_id, str(err), "bad")
        except NeedlecastError as err:
            return back_to(request, campaign_id, str(err), "bad")
        return back_to(request, campaign_id, message)

    # -- the form ------------------------------------------------------------------------------------------

    def form_page(
        request: Request, who: Who, title: str, values: dict[str, Any], errors: dict[str, str], status: int = 200
    ) -> Response:
        ctx = context()
        return console.render(
            request,
            who,
            "campaign_form.html",
            status=status,
            title=title,
            v=values,
            errors=errors,
            segments=sorted(ctx.segments),
            templates=campaign_templates(workspace.templates_dir),
            variants=variant_concerns(ctx.vocabulary),
            articles=ctx.article_ids,
            default_article=ctx.library.default_id,
        )

    @console.page("campaigns.edit")
    def new_form(request: Request, who: Who) -> Response:
        return form_page(request, who, "New campaign", form_values({}), {})

    @console.page("campaigns.edit")
    def edit_form(request: Request, who: Who) -> Response:
        campaign = context().campaign(request.path_params["campaign"])
        return form_page(request, who, f"Edit {campaign.id}", form_values(document_of(campaign)), {})

    def save(request: Request, who: Who, replacing: str | None) -> Response:
        assert who.form is not None
        previous = document_of(context().campaign(replacing)) if replacing else None
        document = document_from_form(who.form, previous)
        try:
            campaign = campaigns_actions.save_campaign(console.engine, workspace, who.actor, document, replacing)
        except CampaignFileError as err:
            values = form_values(document)
            # keep what was typed in the rows the loader saw, including an empty last one
            return form_page(
                request,
                who,
                f"Edit {replacing}" if replacing else "New campaign",
                values,
                {field_of(err.field): f"{err.problem}. Fix: {err.fix}"},
                status=422,
            )
        return back_to(
            request,
            campaign.id,
            f"Saved campaigns/{campaign.path.name} as a draft: nothing is sent until you press Schedule.",
        )

    @console.page("campaigns.edit")
    def create(request: Request, who: Who) -> Response:
        return save(request, who, None)

    @console.page("campaigns.edit")
    def update(request: Request, who: Who) -> Response:
        return save(request, who, request.path_params["campaign"])

    # -- previews --------------------------------------------------------------------------------------------

    def rendered_for(request: Request) -> tuple[Any, Any, str, str, RenderedEmail | None, str]:
        ctx = context()
        campaign = ctx.campaign(request.path_params["campaign"])
        step_id = request.query_params.get("step")
        step = campaign.step(step_id) if step_id else campaign.steps[0]
        variants = step_variants(ctx, step)
        variant = request.query_params.get("variant") or variants[-1]
        if variant not in variants:
            variant = variants[-1]
        arms = [a for a in step.arm_names if a]
        arm = request.query_params.get("arm") or (arms[0] if arms else "")
        if arm not in (arms or [""]):
            arm = arms[0] if arms else ""
        try:
            rendered: RenderedEmail | None = render_variant(ctx, campaign, step, variant, arm)
            error = ""
        except CampaignFileError as err:
            rendered, error = None, str(err)
        return campaign, step, variant, arm, rendered, error

    def filled(rendered: RenderedEmail, campaign_id: str) -> dict[str, str]:
        values = recipient_values(workspace.settings, console.secret, SAMPLE_CONTACT_ID, campaign_id, "Ana")
        return substitutions_for(values)

    @console.page("campaigns.view")
    def preview(request: Request, who: Who) -> Response:
        campaign, step, variant, arm, rendered, error = rendered_for(request)
        ctx = context()
        query = urlencode({"step": step.id, "variant": variant, **({"arm": arm} if arm else {})})
        subs = filled(rendered, campaign.id) if rendered else {}
        return console.render(
            request,
            who,
            "preview.html",
            title=f"Preview of {campaign.id}: {step.id}",
            campaign=campaign,
            step=step,
            variant=variant,
            arm=arm,
            variants=step_variants(ctx, step),
            arms=[a for a in step.arm_names if a],
            error=error,
            subject=apply_substitutions(rendered.subject, subs) if rendered else "",
            preheader=apply_substitutions(rendered.preheader, subs) if rendered else "",
            text=apply_substitutions(rendered.text, subs) if rendered else "",
            sample="Ana, a sample recipient (first name filled in, links signed for nobody)",
            frame_url=f"{console.prefix(request)}/campaigns/{campaign.id}/preview.html?{query}",
        )

    @console.page("campaigns.view")
    def preview_html(request: Request, who: Who) -> Response:
        campaign, _step, _variant, _arm, rendered, error = rendered_for(request)
        if rendered is None:
            return HTMLResponse(f"<p>{error}</p>", status_code=422, headers={"content-security-policy": PREVIEW_CSP})
        html = apply_substitutions(rendered.html, filled(rendered, campaign.id))
        return HTMLResponse(html, headers={"content-security-policy": PREVIEW_CSP, "x-frame-options": "SAMEORIGIN"})

    # -- test sends and sign-off -----------------------------------------------------------------------------

    @console.page("campaigns.test_send")
    def send_test(request: Request, who: Who) -> Response:
        campaign_id = request.path_params["campaign"]
        assert who.form is not None
        try:
            sent = templates_actions.test_send(
                workspace,
                console.engine,
                who.actor,
                get_backend(workspace),
                campaign_id,
                str(who.form.get("step") or "") or None,
            )
        except NeedlecastError as err:
            return back_to(request, campaign_id, str(err), "bad")
        return back_to(
            request,
            campaign_id,
            f"Test sent: {sent.requests} email(s), every variant and arm, to the {len(sent.recipients)} seed "
            "address(es).",
        )

    @console.page("signoff.record")
    def signoff(request: Request, who: Who) -> Response:
        campaign_id = request.path_params["campaign"]
        assert who.form is not None
        try:
            campaigns_actions.record_signoff(
                console.engine, workspace, who.actor, campaign_id, str(who.form.get("note") or "")
            )
        except NeedlecastError as err:
            return back_to(request, campaign_id, str(err), "bad")
        return back_to(request, campaign_id, "Sign-off recorded in the campaign's file.")

    # -- templates -----------------------------------------------------------------------------------------------

    @console.page("templates.edit")
    def template_list(request: Request, who: Who) -> Response:
        return console.render(
            request,
            who,
            "templates_list.html",
            title="Email templates",
            names=email_templates(workspace.templates_dir),
        )

    def template_page(
        request: Request,
        who: Who,
        name: str,
        html: str,
        text: str,
        variant: str,
        error: str = "",
        status: int = 200,
        message: str = "",
    ) -> Response:
        """The editor with the preview beside it: `html` and `text` rendered as they stand (saved or not)."""
        ctx = context()
        shown = None
        if not error:
            try:
                rendered = templates_actions.render_edited_template(workspace, name, html, text, (variant,))[variant]
                subs = filled(rendered, "preview")
                shown = {
                    "subject": apply_substitutions(rendered.subject, subs),
                    "html": apply_substitutions(rendered.html, subs),
                    "text": apply_substitutions(rendered.text, subs),
                }
            except TemplateProblem as err:
                error, status = str(err), 422
        page = console.render(
            request,
            who,
            "template_edit.html",
            status=status,
            title=f"Template {name}",
            name=name,
            html=html,
            text=text,
            error=error,
            preview=shown,
            variant=variant,
            variants=variant_concerns(ctx.vocabulary),
            flash=message,
            flash_kind="ok",
        )
        page.headers["content-security-policy"] = TEMPLATE_EDITOR_CSP
        return page

    def template_name(request: Request) -> str:
        name = request.path_params["name"]
        if name not in email_templates(workspace.templates_dir):
            raise NotFound(f"no email template '{name}'", what="email template", name=name)
        return name

    @console.page("templates.edit")
    def template_get(request: Request, who: Who) -> Response:
        name = template_name(request)
        html = (workspace.templates_dir / f"{name}.html").read_text(encoding="utf-8")
        text = (workspace.templates_dir / f"{name}.txt").read_text(encoding="utf-8")
        return template_page(request, who, name, html, text, request.query_params.get("variant", "general"))

    @console.page("templates.edit")
    def template_post(request: Request, who: Who) -> Response:
        name = template_name(request)
        assert who.form is not None
        html, text = str(who.form.get("html") or ""), str(who.form.get("text") or "")
        variant = str(who.form.get("variant") or "general")
        if who.form.get("do") != "save":
            return template_page(request, who, name, html, text, variant, message="A preview of your edit (not saved).")
        try:
            templates_actions.save_template(console.engine, workspace, who.actor, name, html, text)
        except TemplateProblem as err:
            return template_page(request, who, name, html, text, variant, f"Not saved: {err}", status=422)
        return template_page(request, who, name, html, text, variant, message="Saved.")

    return [
        Route("/", campaign_list),
        Route("/campaigns/new", new_form, methods=["GET"]),
        Route("/campaigns/new", create, methods=["POST"]),
        Route("/campaigns/{campaign}", campaign_page),
        Route("/campaigns/{campaign}/edit", edit_form, methods=["GET"]),
        Route("/campaigns/{campaign}/edit", update, methods=["POST"]),
        Route("/campaigns/{campaign}/confirm/{action}", confirm_action),
        Route("/campaigns/{campaign}/preview", preview),
        Route("/campaigns/{campaign}/preview.html", preview_html),
        Route("/campaigns/{campaign}/test-send", send_test, methods=["POST"]),
        Route("/campaigns/{campaign}/signoff", signoff, methods=["POST"]),
        Route("/campaigns/{campaign}/{action}", do_action, methods=["POST"]),
        Route("/templates", template_list),
        Route("/templates/{name:path}", template_get, methods=["GET"]),
        Route("/templates/{name:path}", template_post, methods=["POST"]),
    ]
