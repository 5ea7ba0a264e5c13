"""What connects the dispatcher to a workspace: its settings, whether a campaign may send, the links' secret,
and the sender a dispatch runs as. The runner, the workers and the helper sender processes use these, so
that the dispatcher itself knows nothing of settings, campaign files or the fleet.
"""

from __future__ import annotations

from typing import Any

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.gate import ensure_sendable
from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.plan.timing import parse_quiet_hours
from needlecast.campaign.send.dispatcher import Dispatcher, DispatchSettings
from needlecast.campaign.send.guardrails import DispatchGuard
from needlecast.campaign.send.rendering import Sending
from needlecast.campaign.send.report import RunReport
from needlecast.config import Workspace, signing_secret
from needlecast.delivery.base import BackendFactory
from needlecast.fleet.heartbeat import Heartbeat
from needlecast.store.delivery import DeliveryStore


def dispatch_settings(workspace: Workspace) -> DispatchSettings:
    """The dispatcher's settings, from `[delivery]` and `[schedule]`."""
    delivery = workspace.settings.delivery
    return DispatchSettings(
        batch_size=delivery.batch_size,
        max_in_flight=delivery.max_in_flight,
        max_failures=workspace.settings.schedule.max_consecutive_failures,
        requests_per_second=delivery.requests_per_second,
        emails_per_hour=delivery.emails_per_hour,
    )


def dispatcher_for(workspace: Workspace, store: DeliveryStore, backends: BackendFactory, **options: Any) -> Dispatcher:
    """A dispatcher over `store` with the workspace's settings and its deliverability guard and warm-up
    (`options`: `Dispatcher`'s keywords)."""
    quiet = parse_quiet_hours(workspace.settings.schedule.quiet_hours)
    guard = DispatchGuard(workspace.settings.deliverability, store, quiet)
    return Dispatcher(store, backends, dispatch_settings(workspace), guard=guard, **options)


def sending_secret(dispatcher: Dispatcher) -> bytes:
    """The signing secret of recipients' links (required when the backend really sends)."""
    return signing_secret(required=dispatcher.backend_name == "sendgrid")


def may_send(dispatcher: Dispatcher, ctx: CampaignContext, campaign: Campaign, report: RunReport) -> bool:
    """Whether the campaign may send now (not a draft, active, past the claims gate, a working backend);
    why not in `report.inactive`. Raises `CampaignBlocked` or `ConfigurationError`."""
    if campaign.draft:
        report.inactive = "a draft (remove 'draft: true' from its file to send it)"
        return False
    if not dispatcher.campaign_active(campaign.id, campaign.digest, report):
        return False
    ensure_sendable(ctx, campaign)
    dispatcher.check_backend()
    return True


def dispatch_once(
    dispatcher: Dispatcher, workspace: Workspace, sending: Sending, report: RunReport, sender: Heartbeat | None
) -> None:
    """`dispatcher.dispatch` as `sender`, or (without one) as a sender registered for this dispatch alone,
    whose fencing stops the dispatch."""
    if sender is not None:
        dispatcher.dispatch(sending, report, sender)
        return
    lease = workspace.settings.delivery.lease_seconds
    with Heartbeat(dispatcher.store.engine, "send", lease, on_fenced=dispatcher.stop.set) as own:
        dispatcher.dispatch(sending, report, own)
