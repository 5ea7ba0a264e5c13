"""Template actions: save an edited email template, render it as the editor's preview, send a test.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

import dataclasses
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

if TYPE_CHECKING:
    pass


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
