"""The email builder: an email made of blocks (heading, text, article section, image, button, divider,
footer), edited in the page with its preview beside it, and saved as the workspace's ordinary template files.

The page works without scripts: every button posts the one form (add, move, remove a block; preview; save)
and the page comes back as the blocks then stand. `static/email-builder.js` refreshes the preview as the
blocks are typed in, from `POST /email-builder/NAME/preview` (JSON), and shows a chosen image at once.
Module-level views (`auth.page`); saving and images go through `needlecast.actions.templates` (checked,
audited), everything shown through `needlecast.readmodels.email_builder`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from needlecast.actions import templates as templates_actions
from needlecast.errors import InvalidRequest, NotFound, TemplateProblem
from needlecast.readmodels.email_builder import (
    IMAGE_TYPES,
    IMAGES_DIR,
    blocks,
    builder_state,
    check_stem,
    image_exists,
    in_words,
    preview_subjects,
    variant_labels,
)
from needlecast.readmodels.email_builder import block_preview as render_preview
from needlecast.readmodels.email_previews import Filled, template_variants
from needlecast.web.console.auth import Who, console_of, page
from needlecast.web.console.template_views import TEMPLATE_EDITOR_CSP

# The template editor's policy (the preview frame shows the email's inline styles and images), with the
# builder's own script and its preview requests allowed: still nothing inline, nothing from elsewhere.
BUILDER_CSP = TEMPLATE_EDITOR_CSP + "; script-src 'self'; connect-src 'self'"
FIELDS = 8 * blocks.MAX_BLOCKS + 20  # a form field per block part, and the page's own
WIDTHS = {"desktop": "Desktop (600 px)", "phone": "Phone (375 px)"}


def _document_of(form: FormData) -> blocks.BlockDocument:
    """The block document the form's fields describe (`count` blocks, `blocks-I-PART` each)."""
    try:
        count = min(int(str(form.get("count") or "0")), blocks.MAX_BLOCKS + 1)
    except ValueError:
        count = 0
    rows = []
    for i in range(max(count, 0)):
        kind = str(form.get(f"blocks-{i}-kind") or "")
        row = {part: str(form.get(f"blocks-{i}-{part}") or "") for part in ("text", "link", "section", "image", "alt")}
        rows.append({"kind": kind, **row, "show_title": bool(form.get(f"blocks-{i}-show_title"))})
    data = {"subject": form.get("subject") or "", "preheader": form.get("preheader") or "", "blocks": rows}
    return blocks.parse_document(data)


def _stored_uploads(request: Request, who: Who, document: blocks.BlockDocument) -> tuple[blocks.BlockDocument, dict]:
    """The document with each image chosen in the form stored in the workspace (through the action) and
    named by its block; the refusals by field."""
    assert who.form is not None
    console = console_of(request)
    errors: dict[str, str] = {}
    changed = list(document.blocks)
    for i, block in enumerate(document.blocks):
        upload = who.form.get(f"blocks-{i}-file")
        if block.kind != "image" or not isinstance(upload, UploadFile) or not upload.filename:
            continue
        data = upload.file.read(templates_actions.MAX_IMAGE_BYTES + 1)
        try:
            name = templates_actions.save_email_image(
                console.engine, console.workspace, who.actor, upload.filename, data
            )
        except blocks.BlocksRejected as err:
            errors[f"blocks-{i}-image"] = err.problems["image"]
            continue
        changed[i] = blocks.Block("image", image=name, alt=block.alt, link=block.link)
    return blocks.BlockDocument(document.subject, document.preheader, tuple(changed)), errors


def _builder_page(
    request: Request,
    who: Who,
    stem: str,
    document: blocks.BlockDocument,
    *,
    variant: str = "",
    subject_key: str = "",
    width: str = "desktop",
    errors: dict[str, str] | None = None,
    flash: str = "",
    status: int = 200,
) -> Response:
    console = console_of(request)
    state = builder_state(console.workspace, stem)
    variants = variant_labels(console.workspace)
    variant = variant if variant in variants else list(variants)[-1]
    shown, left_out, problem = _preview(request, stem, document, variant, subject_key)
    response = console.render(
        request,
        who,
        "email_builder.html",
        status=status,
        title=f"Email “{stem}”" if state.exists else f"New email “{stem}”",
        stem=stem,
        state=state,
        document=document,
        kinds=blocks.KINDS,
        roles=blocks.SECTION_ROLES,
        errors=errors or {},
        variant=variant,
        variants=variants,
        subject_key=subject_key,
        subjects=preview_subjects(console.workspace, f"emails/{stem}"),
        width=width if width in WIDTHS else "desktop",
        widths=WIDTHS,
        preview=shown,
        left_out=left_out,
        problem=problem,
        flash=flash,
        flash_kind="ok",
    )
    response.headers["content-security-policy"] = BUILDER_CSP
    return response


def _preview(
    request: Request, stem: str, document: blocks.BlockDocument, variant: str, subject_key: str
) -> tuple[Filled | None, list[str], str]:
    """The preview of what can be shown, the blocks left out of it (in words), or the problem in words."""
    console = console_of(request)
    shown, left_out = blocks.previewable(document)
    said = [f"{i + 1}. {blocks.KINDS.get(document.blocks[i].kind, 'block')}" for i in left_out]
    try:
        return render_preview(console.workspace, console.secret, stem, shown, variant, subject_key), said, ""
    except TemplateProblem as err:
        return None, said, f"It does not render: {in_words(err)}"
    except InvalidRequest as err:
        return None, said, str(err)


@page("templates.edit")
def builder_new(request: Request, who: Who) -> Response:
    """The builder for a new email named `?name=` (the templates page's form), or back there saying why not.
    Nothing is written until it is saved."""
    console = console_of(request)
    stem = str(request.query_params.get("name") or "").strip().lower()
    prefix = console.prefix(request)
    if not blocks.NAME.fullmatch(stem) or stem == "new":
        return RedirectResponse(f"{prefix}/templates?{urlencode({'problem': 'name'})}#new-email", status_code=303)
    if builder_state(console.workspace, stem).exists:
        query = urlencode({"problem": "taken", "name": stem})
        return RedirectResponse(f"{prefix}/templates?{query}#new-email", status_code=303)
    return _builder_page(request, who, stem, blocks.starter_document())


@page("templates.edit")
def builder_get(request: Request, who: Who) -> Response:
    console = console_of(request)
    stem = check_stem(str(request.path_params["stem"]))
    state = builder_state(console.workspace, stem)
    if not state.exists:
        raise NotFound(f"no email template 'emails/{stem}'", what="email template", name=f"emails/{stem}")
    if state.by_hand:  # a template written by hand is edited as written
        return RedirectResponse(f"{console.prefix(request)}/templates/emails/{stem}", status_code=303)
    query = request.query_params
    return _builder_page(
        request,
        who,
        stem,
        state.document,
        variant=query.get("variant", ""),
        subject_key=query.get("subject", ""),
        width=query.get("width", "desktop"),
        flash="Saved. Campaigns that use this email send it as it is now." if query.get("saved") else "",
    )


@page("templates.edit", upload=True, fields=FIELDS, files=blocks.MAX_BLOCKS + 1)
def builder_post(request: Request, who: Who) -> Response:
    """Every button of the builder's form: add, move or remove a block, preview, save (see the module)."""
    assert who.form is not None
    console = console_of(request)
    stem = check_stem(str(request.path_params["stem"]))
    if builder_state(console.workspace, stem).by_hand:
        return RedirectResponse(f"{console.prefix(request)}/templates/emails/{stem}", status_code=303)
    form = who.form
    document, errors = _stored_uploads(request, who, _document_of(form))
    do = str(form.get("do") or "preview")
    view = {
        "variant": str(form.get("variant") or ""),
        "subject_key": str(form.get("subject_choice") or ""),
        "width": str(form.get("width") or "desktop"),
    }
    if do == "save" and not errors:
        return _save(request, who, stem, document, view)
    action, _, where = do.partition(":")
    index = int(where) if where.isdigit() else -1
    if action == "add":
        kind = str(form.get("add_kind") or "")
        document = blocks.added(document, kind) if kind in blocks.KINDS else document
    elif action in ("up", "down"):
        document = blocks.moved(document, index, -1 if action == "up" else 1)
    elif action == "remove":
        document = blocks.removed(document, index)
    status = 422 if errors else 200
    return _builder_page(request, who, stem, document, errors=errors, status=status, **view)


def _save(request: Request, who: Who, stem: str, document: blocks.BlockDocument, view: dict[str, str]) -> Response:
    console = console_of(request)
    try:
        templates_actions.save_block_email(console.engine, console.workspace, who.actor, stem, document)
    except blocks.BlocksRejected as err:
        return _builder_page(request, who, stem, document, errors=err.problems, status=422, **view)
    except TemplateProblem as err:
        problem = {"general": f"It does not render: {in_words(err)}"}
        return _builder_page(request, who, stem, document, errors=problem, status=422, **view)
    query = urlencode({"saved": "1", "variant": view["variant"], "width": view["width"]})
    return RedirectResponse(f"{console.prefix(request)}/email-builder/{stem}?{query}", status_code=303)


@page("templates.edit", fields=FIELDS)
def builder_preview(request: Request, who: Who) -> Response:
    """The preview of the blocks as posted (JSON: `subject`, `preheader`, `html`, `text`, `left_out`, the
    blocks not shown yet in words, and `problem`), for the page's script."""
    assert who.form is not None
    stem = check_stem(str(request.path_params["stem"]))
    document = _document_of(who.form)
    variant = str(who.form.get("variant") or "")
    variants = template_variants(console_of(request).workspace)
    variant = variant if variant in variants else variants[-1]
    shown, left_out, problem = _preview(request, stem, document, variant, str(who.form.get("subject_choice") or ""))
    answer = {"left_out": left_out, "problem": problem, "variant": variant}
    if shown is not None:
        answer.update(subject=shown.subject, preheader=shown.preheader, html=shown.html, text=shown.text)
    return JSONResponse(answer, headers={"cache-control": "no-store"})


@page("templates.edit")
def builder_image(request: Request, who: Who) -> Response:
    """An image of the workspace's `images/` folder, for the builder's own page to show beside its block
    (the emails take it from the tracking host)."""
    console = console_of(request)
    name = str(request.path_params["file"])
    if not image_exists(console.workspace, name):
        raise NotFound(f"no image '{name}'", what="image", name=name)
    kind = IMAGE_TYPES[name.rsplit(".", 1)[1]]
    path = console.workspace.root / IMAGES_DIR / name
    return FileResponse(path, media_type=kind, headers={"cache-control": "private, max-age=3600"})


ROUTES = [
    Route("/email-builder/new", builder_new, methods=["GET"]),
    Route("/email-builder/images/{file}", builder_image, methods=["GET"]),
    Route("/email-builder/{stem}", builder_get, methods=["GET"]),
    Route("/email-builder/{stem}", builder_post, methods=["POST"]),
    Route("/email-builder/{stem}/preview", builder_preview, methods=["POST"]),
]
