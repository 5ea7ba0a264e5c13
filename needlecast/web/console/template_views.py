"""Email template pages: the list, and the editor with its preview beside it (rendered as the edit stands,
saved or not). Module-level views (`auth.page`); saving goes through `needlecast.actions.templates`
(checked, audited), the previews through `needlecast.readmodels.email_previews`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from needlecast.actions import templates as templates_actions
from needlecast.errors import TemplateProblem
from needlecast.readmodels.email_builder import built_from_blocks, in_words
from needlecast.readmodels.email_previews import template_names, template_preview, template_source, template_variants
from needlecast.web.console.auth import Who, console_of, page

# The template editor shows its preview in a sandboxed `srcdoc` iframe, which inherits the page's policy: the
# email's inline styles and its images (the clinic's logo, over https) must be allowed on this page, or the
# preview is unstyled and the browser logs each blocked style. Scripts stay refused everywhere.
TEMPLATE_EDITOR_CSP = (  # the console's CSP (web/console/__init__.py), with those two allowed
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; form-action 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@page("templates.edit")
def template_list(request: Request, who: Who) -> Response:
    console = console_of(request)
    names = template_names(console.workspace)
    built = {name for name in names if built_from_blocks(console.workspace, name)}
    query = request.query_params
    problem = {
        "name": "Name the email with lower-case letters, digits, dashes and underscores (for example spring-offer).",
        "taken": f"There is already an email called “{query.get('name', '')}”: choose another name.",
    }.get(query.get("problem", ""), "")
    return console.render(
        request, who, "templates_list.html", title="Email templates", names=names, built=built, problem=problem
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
    console = console_of(request)
    shown = None
    if not error:
        try:
            filled = template_preview(console.workspace, console.secret, name, html, text, variant)
            shown = {"subject": filled.subject, "html": filled.html, "text": filled.text}
        except TemplateProblem as err:
            error, status = in_words(err), 422
    response = console.render(
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
        variants=template_variants(console.workspace),
        from_blocks=built_from_blocks(console.workspace, name),
        flash=message,
        flash_kind="ok",
    )
    response.headers["content-security-policy"] = TEMPLATE_EDITOR_CSP
    return response


@page("templates.edit")
def template_get(request: Request, who: Who) -> Response:
    name = request.path_params["name"]
    html, text = template_source(console_of(request).workspace, name)
    return template_page(request, who, name, html, text, request.query_params.get("variant", "general"))


@page("templates.edit")
def template_post(request: Request, who: Who) -> Response:
    console = console_of(request)
    name = request.path_params["name"]
    template_source(console.workspace, name)  # NotFound for a name that is not a template
    assert who.form is not None
    html, text = str(who.form.get("html") or ""), str(who.form.get("text") or "")
    variant = str(who.form.get("variant") or "general")
    if who.form.get("do") != "save":
        return template_page(request, who, name, html, text, variant, message="A preview of your edit (not saved).")
    try:
        templates_actions.save_template(console.engine, console.workspace, who.actor, name, html, text)
    except TemplateProblem as err:
        return template_page(request, who, name, html, text, variant, f"Not saved: {in_words(err)}", status=422)
    return template_page(request, who, name, html, text, variant, message="Saved.")


ROUTES = [
    Route("/templates", template_list),
    Route("/templates/{name:path}", template_get, methods=["GET"]),
    Route("/templates/{name:path}", template_post, methods=["POST"]),
]
