"""Template actions: save an edited email template, render it as the editor's preview, send a test; save an
email built from blocks (its two files generated together, and its block document), and an image for one.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.send.rendering import render_variant, step_variants
from needlecast.config import Workspace, test_recipients
from needlecast.delivery.base import Backend, Batch, Outcome, Recipient
from needlecast.errors import InvalidRequest
from needlecast.readmodels.email_previews import render_edited_template
from needlecast.templating.environment import email_templates
from needlecast.templating.recipient import RecipientValues

IMAGES_DIR = "images"  # the workspace's images, served on the tracking host at /images/<name>

if TYPE_CHECKING:
    from needlecast.templating.blocks import BlockDocument


def save_template(engine: Engine, workspace: Workspace, actor: Actor, name: str, html: str, text: str) -> None:
    """Replace an email template's two parts after checking they render for every variant (a syntax error
    or an undefined variable is a `TemplateProblem` with its line, and nothing is written)."""
    require(actor, "templates.edit")
    if name not in email_templates(workspace.templates_dir):
        raise InvalidRequest(
            f"'{name}' is not an email template; use one of: {', '.join(email_templates(workspace.templates_dir))}"
        )
    check_template(workspace, name, html, text)
    base = workspace.templates_dir / name
    for suffix, content in ((".html", html), (".txt", text)):
        Path(f"{base}{suffix}").write_text(content.replace("\r\n", "\n"), encoding="utf-8")
    with engine.begin() as conn:
        audit.record(conn, actor, "template.saved", f"template:{name}")


def check_template(workspace: Workspace, name: str, html: str, text: str) -> None:
    """`TemplateProblem` unless an edited template renders for every variant."""
    render_edited_template(workspace, name, html, text)


@dataclass
class TestSend:
    requests: int
    recipients: tuple[str, ...]
    variants: int


def test_send(
    workspace: Workspace,
    engine: Engine,
    actor: Actor,
    backend: Backend | None,
    campaign_id: str,
    step_id: str | None = None,
) -> TestSend:
    """One step's every variant and arm, to the seed addresses of `[console] test_recipients`, through
    `backend` (None: the workspace's configured one): never to the audience and never into the ledger.
    Subjects start with [TEST]."""
    require(actor, "campaigns.test_send")
    seeds = test_recipients(workspace)  # read now: an edit of needlecast.toml counts without a restart
    if not seeds:
        raise InvalidRequest(
            "no seed addresses to send a test to: your administrator adds them to the workspace settings "
            '([console] test_recipients = ["you@clinic.example"] in needlecast.toml)'
        )
    ctx = CampaignContext.load(workspace)
    campaign = ctx.campaign(campaign_id)
    step = campaign.step(step_id) if step_id else campaign.steps[0]
    if backend is None:
        from needlecast.delivery import get_backend

        backend = get_backend(workspace)
    backend.check()
    from needlecast.config import signing_secret

    values = RecipientValues(workspace.settings, signing_secret(required=backend.name == "sendgrid"), "test")
    clinic = workspace.settings.clinic
    batches = []
    for variant in step_variants(ctx, step):
        for arm in step.arm_names:
            rendered = render_variant(ctx, campaign, step, variant, arm)
            rendered = values.with_links(rendered)
            rendered = dataclasses.replace(
                rendered, subject=f"[TEST {variant}{' ' + arm if arm else ''}] {rendered.subject}"
            )
            recipients = []
            for seed in seeds:
                person, unsubscribe = values.for_request(0, "Test")
                recipients.append(Recipient("", seed, person, unsubscribe))
            batches.append(
                Batch(
                    campaign.id,
                    step.id,
                    variant,
                    rendered,
                    campaign.sender_email or clinic.sender_email,
                    campaign.sender_name or clinic.sender_name,
                    tuple(recipients),
                    reply_to=campaign.reply_to or clinic.reply_to,
                    arm=arm,
                )
            )
    outcomes: list[Outcome] = []
    backend.send_all(batches, lambda _b, result: outcomes.extend(result))
    failed = [o for o in outcomes if o.status != "sent"]
    with engine.begin() as conn:
        audit.record(
            conn,
            actor,
            "campaign.test_sent",
            f"campaign:{campaign_id}",
            step=step.id,
            requests=len(batches),
            seeds=len(seeds),
            failed=len(failed),
        )
    if failed:
        raise InvalidRequest(f"the test send did not go through: {failed[0].error or failed[0].status}")
    return TestSend(len(batches), seeds, len(step_variants(ctx, step)))


MAX_IMAGE_BYTES = 1_000_000
# What an image file starts with, and the extension it is stored with (no SVG: it can carry script).
IMAGE_KINDS = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpg", b"GIF87a": "gif", b"GIF89a": "gif"}


def _image_kind(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for magic, ext in IMAGE_KINDS.items() if data.startswith(magic)), None)


def save_email_image(engine: Engine, workspace: Workspace, actor: Actor, filename: str, data: bytes) -> str:
    """Store an image uploaded for an email (PNG, JPEG, GIF or WebP, at most 1 MB, told by its content, not
    its name) in the workspace's `images/` folder, served on the tracking host; returns its file name:
    the uploaded name made safe (lower-case letters, digits and dashes) and a digest of the content, so
    the same image is stored once and a changed one gets a new address. `BlocksRejected` on the `image`
    field for another kind of file or a larger one, and nothing is written. Audited as
    `template.image_uploaded`."""
    from needlecast.templating.blocks import BlocksRejected

    require(actor, "templates.edit")
    kind = _image_kind(data)
    if not data:
        raise BlocksRejected({"image": "the file is empty: choose the image again"})
    if kind is None:
        raise BlocksRejected({"image": "choose a PNG, JPEG, GIF or WebP image"})
    if len(data) > MAX_IMAGE_BYTES:
        raise BlocksRejected({"image": "choose an image under 1 MB (emails load slowly with larger ones)"})
    stem = re.sub(r"[^a-z0-9]+", "-", Path(filename.replace("\\", "/")).stem.lower()).strip("-")[:40] or "image"
    name = f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}.{kind}"
    folder = workspace.root / IMAGES_DIR
    folder.mkdir(exist_ok=True)
    if not (folder / name).is_file():
        partial = folder / f".{name}.part"
        partial.write_bytes(data)
        partial.replace(folder / name)
    with engine.begin() as conn:
        audit.record(conn, actor, "template.image_uploaded", f"image:{name}", size=len(data))
    return name


def save_block_email(engine: Engine, workspace: Workspace, actor: Actor, stem: str, document: BlockDocument) -> bool:
    """Write `emails/<stem>` from its blocks: the HTML and the text part generated together, and the block
    document beside them (`emails/<stem>.blocks.yaml`), after checking it renders for every variant; returns
    whether the email is new. `BlocksRejected` (per field) for a document with problems or an image that is
    not in the workspace, `TemplateProblem` when it does not render, `InvalidRequest` for an email written
    by hand (the template editor edits it); nothing is written then. Audited as `template.saved`."""
    from needlecast.readmodels.email_builder import builder_state, image_exists, images_url, render_blocks
    from needlecast.templating import blocks

    require(actor, "templates.edit")
    state = builder_state(workspace, stem)
    if state.by_hand:
        raise InvalidRequest(
            f"the email '{stem}' was written by hand: edit it in the template editor, or build a new one"
        )
    missing = {
        f"blocks-{i}-image": "upload the image again: it is not in the workspace"
        for i, block in enumerate(document.blocks)
        if block.kind == "image" and block.image and not image_exists(workspace, block.image)
    }
    found = {**blocks.problems(document), **missing}
    if found:
        raise blocks.BlocksRejected(found)
    render_blocks(workspace, stem, document)  # every variant renders, or TemplateProblem
    html, text = blocks.generate(document, images_url(workspace), stem)
    name = f"emails/{stem}"
    base = workspace.templates_dir / name
    base.parent.mkdir(parents=True, exist_ok=True)
    sidecar = blocks.dump_document(document, {"html": blocks.digest(html), "text": blocks.digest(text)})
    for path, content in (
        (Path(f"{base}.txt"), text),
        (Path(f"{base}.html"), html),
        (blocks.sidecar_path(workspace.templates_dir, name), sidecar),
    ):
        partial = path.with_name(f".{path.name}.part")
        partial.write_text(content, encoding="utf-8")
        partial.replace(path)
    with engine.begin() as conn:
        audit.record(conn, actor, "template.saved", f"template:{name}", built_from="blocks", created=not state.exists)
    return not state.exists
