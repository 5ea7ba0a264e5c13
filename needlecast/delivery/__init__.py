"""Delivery backends: `outbox` (the default: records what would be sent) and `sendgrid`."""

from __future__ import annotations

from needlecast.config import Workspace
from needlecast.delivery.base import Backend, Batch, Outcome, Recipient
from needlecast.errors import ConfigurationError

BACKENDS = ("outbox", "sendgrid")


def get_backend(workspace: Workspace, name: str | None = None) -> Backend:
    """The backend named in `[delivery] backend` (or `name`), ready to `check()`."""
    chosen = name or workspace.settings.delivery.backend
    if chosen == "outbox":
        from needlecast.delivery.outbox import OutboxBackend

        return OutboxBackend(workspace.settings, workspace.outbox_dir)
    if chosen == "sendgrid":
        from needlecast.delivery.sendgrid import SendGridBackend

        return SendGridBackend(workspace.settings)
    raise ConfigurationError(f"[delivery] backend = {chosen!r} is unknown; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Batch", "Outcome", "Recipient", "get_backend"]
