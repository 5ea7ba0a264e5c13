"""Delivery backends: `outbox` (the default: records what would be sent) and `sendgrid`.

A backend receives its limiter, its before-post hook and its observer when it is built, never later:
`get_backend(workspace, limiter=..., before_post=...)` builds one; `backend_factory(workspace)` is what a
dispatcher builds its backends with (one per dispatch, with the fleet's limiter and the dispatch's intent
writer).
"""

from __future__ import annotations

from dataclasses import dataclass

from needlecast.config import Workspace
from needlecast.delivery.base import (
    Backend,
    BackendFactory,
    Batch,
    BeforePost,
    Limiter,
    Observer,
    Outcome,
    Recipient,
)
from needlecast.errors import ConfigurationError

BACKENDS = ("outbox", "sendgrid")


def get_backend(
    workspace: Workspace,
    name: str | None = None,
    *,
    limiter: Limiter | None = None,
    before_post: BeforePost | None = None,
    observer: Observer | None = None,
) -> Backend:
    """The backend named in `[delivery] backend` (or `name`), ready to `check()`, built with these hooks
    (see `Backend`)."""
    chosen = name or workspace.settings.delivery.backend
    if chosen == "outbox":
        from needlecast.delivery.outbox import OutboxBackend

        return OutboxBackend(
            workspace.settings, workspace.outbox_dir, limiter=limiter, before_post=before_post, observer=observer
        )
    if chosen == "sendgrid":
        from needlecast.delivery.sendgrid import SendGridBackend

        return SendGridBackend(workspace.settings, limiter=limiter, before_post=before_post, observer=observer)
    raise ConfigurationError(f"[delivery] backend = {chosen!r} is unknown; choose one of {', '.join(BACKENDS)}")


@dataclass(frozen=True)
class WorkspaceBackends:
    """A `BackendFactory` for a workspace's configured backend (or `name`), with an optional `observer`
    (metrics) given to every backend it builds."""

    workspace: Workspace
    name: str | None = None
    observer: Observer | None = None

    def __call__(self, *, limiter: Limiter | None = None, before_post: BeforePost | None = None) -> Backend:
        return get_backend(self.workspace, self.name, limiter=limiter, before_post=before_post, observer=self.observer)


def backend_factory(
    workspace: Workspace, name: str | None = None, *, observer: Observer | None = None
) -> BackendFactory:
    """What a dispatcher builds its backends with (see the module docstring)."""
    return WorkspaceBackends(workspace, name, observer)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendFactory",
    "Batch",
    "Outcome",
    "Recipient",
    "WorkspaceBackends",
    "backend_factory",
    "get_backend",
]
