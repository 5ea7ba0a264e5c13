"""Read models that show one email as its recipient sees it: a template's or a campaign step's preview, and
a copy of a request the outbox backend recorded. Each writes files for a person to open (.html, .txt, .eml)
and changes nothing of the clinic's.

Contract: `preview_template` renders a template with a sample recipient; `preview_campaign_step` renders
exactly what a campaign's step sends for one variant and A/B arm (`InvalidRequest` naming the arms or the
variants there are for one there is not). `outbox_requests` lists the last recorded requests;
`outbox_copy` renders one of them for one of its recipients.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.send.rendering import render_variant, step_variants
from needlecast.config import Workspace
from needlecast.delivery.outbox import find_request, read_outbox, recipient_copy
from needlecast.errors import InvalidRequest
from needlecast.templating.eml import build_eml
from needlecast.templating.preview import PreviewFiles, write_preview
from needlecast.templating.tokens import apply_substitutions

__all__ = ["OutboxCopy", "PreviewFiles", "outbox_copy", "outbox_requests", "preview_campaign_step", "preview_template"]


def preview_template(
    workspace: Workspace, template: str, concern: str, first_name: str | None, out_dir: Path, *, article: str = ""
) -> PreviewFiles:
    """`template` (e.g. emails/welcome) for `concern`, drawing on `article` (default `[content] article`)."""
    return write_preview(workspace, template, concern, first_name, out_dir, article=article)


def preview_campaign_step(
    workspace: Workspace,
    campaign_id: str,
    step_id: str | None,
    arm: str | None,
    concern: str,
    first_name: str | None,
    out_dir: Path,
) -> PreviewFiles:
    """A campaign's step (default its first) for one variant and arm (default the first arm), with the step's
    own subject lines and preheader, as it will be sent."""
    ctx = CampaignContext.load(workspace)
    chosen = ctx.campaign(campaign_id)
    picked = chosen.step(step_id) if step_id else chosen.steps[0]
    arms = [a for a in picked.arm_names if a]
    if arm is not None and arm.upper() not in arms:
        raise InvalidRequest(
            f"step '{picked.id}' has {'arms ' + ', '.join(arms) if arms else 'no A/B arms'}; "
            f"{'use --arm ' + ' or '.join(arms) if arms else 'leave out --arm'}"
        )
    chosen_arm = arm.upper() if arm else (arms[0] if arms else "")
    if concern not in step_variants(ctx, picked):
        raise InvalidRequest(
            f"step '{picked.id}' sends the variants {', '.join(step_variants(ctx, picked))}, not '{concern}'"
        )
    rendered = render_variant(ctx, chosen, picked, concern, chosen_arm)
    name = f"{chosen.id}.{picked.id}.{concern}{'.' + chosen_arm if chosen_arm else ''}"
    return write_preview(workspace, picked.template, concern, first_name, out_dir, rendered=rendered, name=name)


def outbox_requests(workspace: Workspace, limit: int) -> list[dict[str, Any]]:
    """The last `limit` requests the outbox recorded, oldest first: n, message_id, campaign, step,
    recipients (how many), subject."""
    rows = []
    for entry in deque(read_outbox(workspace.outbox_dir), maxlen=max(0, limit)):
        request = entry["request"]
        args = request.get("custom_args", {})
        rows.append(
            {
                "n": entry["n"],
                "message_id": entry["message_id"],
                "campaign": args.get("campaign", ""),
                "step": args.get("step", ""),
                "recipients": len(request["personalizations"]),
                "subject": request["subject"],
            }
        )
    return rows


@dataclass(frozen=True)
class OutboxCopy:
    subject: str  # with the recipient's values filled in
    html: Path
    eml: Path


def outbox_copy(workspace: Workspace, number: int, recipient: str | None, out_dir: Path) -> OutboxCopy:
    """Recorded request `number` as `recipient` (default its first) received it, written to `out_dir` as
    request-N-recipient-P.html and .eml (`NotFound` naming what there is for an unknown number or address)."""
    entry = find_request(workspace.outbox_dir, number)
    copy = recipient_copy(entry, recipient)
    request = entry["request"]
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / f"request-{number}-recipient-{copy.position}.html"
    eml_path = html_path.with_suffix(".eml")
    html_path.write_text(apply_substitutions(copy.message.html, copy.substitutions), encoding="utf-8")
    sender = request["from"]
    eml_path.write_bytes(
        build_eml(
            copy.message,
            copy.substitutions,
            sender=(sender.get("name", ""), sender["email"]),
            recipient=copy.address,
            reply_to=request.get("reply_to", {}).get("email", ""),
            headers=copy.headers,
        )
    )
    return OutboxCopy(apply_substitutions(copy.message.subject, copy.substitutions), html_path, eml_path)
