"""Actors and permissions: one actor per request, one table of named actions per role or API scope.

Contract: every change and every read of personal data goes through `require(actor, action)` on the server,
whatever face it comes from (console, API, command line); a hidden button is never a permission. The
command line acts as the `cli` actor with every permission (it has the database anyway), and is audited
under the operating-system user's name.

    analyst   campaigns.view, reports.view, audiences.view, contacts.view (addresses masked), content.view
    reviewer  the analyst's, and signoff.record, content.tag
    marketer  the analyst's, and campaigns.edit, campaigns.schedule, campaigns.test_send, templates.edit,
              audiences.import, segments.edit, contacts.view_unmasked, contacts.suppress, contacts.tag, content.tag
    admin     everything, and alone: contacts.erase, users.manage, apikeys.manage, audit.view,
              database.upgrade (the command line's `db upgrade`), settings.edit (the console's settings)

API keys carry scopes instead of a role: `contacts:read`, `contacts:write`, `events:write`,
`campaigns:read`, `campaigns:write`, `reports:read` (see `SCOPE_ACTIONS`).
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field

from needlecast.errors import PermissionDenied

READ = frozenset({"campaigns.view", "reports.view", "audiences.view", "contacts.view", "content.view"})
MARKETING = frozenset(
    {
        "campaigns.edit",
        "campaigns.schedule",
        "campaigns.test_send",
        "templates.edit",
        "audiences.import",
        "segments.edit",
        "contacts.view_unmasked",
        "contacts.suppress",
        "contacts.tag",  # add a tag to contacts picked in the console's list
        "content.tag",
    }
)
ADMIN_ONLY = frozenset(
    {"contacts.erase", "users.manage", "apikeys.manage", "audit.view", "database.upgrade", "settings.edit"}
)
API_ONLY = frozenset({"contacts.write", "events.write"})
ALL_ACTIONS = READ | MARKETING | ADMIN_ONLY | API_ONLY | {"signoff.record"}

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "analyst": READ,
    "reviewer": READ | {"signoff.record", "content.tag"},
    "marketer": READ | MARKETING,
    "admin": ALL_ACTIONS,
}
ROLES = tuple(ROLE_ACTIONS)

SCOPE_ACTIONS: dict[str, frozenset[str]] = {
    "contacts:read": frozenset({"contacts.view", "contacts.view_unmasked", "audiences.view"}),
    "contacts:write": frozenset({"contacts.write", "contacts.suppress", "contacts.erase", "contacts.tag"}),
    "events:write": frozenset({"events.write"}),
    "campaigns:read": frozenset({"campaigns.view"}),
    "campaigns:write": frozenset({"campaigns.view", "campaigns.schedule"}),
    "reports:read": frozenset({"reports.view"}),
}
SCOPES = tuple(SCOPE_ACTIONS)


@dataclass(frozen=True)
class Actor:
    """Who is acting: a console user (with a role), an API key (with scopes), the command line, the system."""

    kind: str  # user | api_key | cli | system
    name: str  # what the audit log shows: the user's address, the key's name, the OS user
    id: int | None = None
    role: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def actions(self) -> frozenset[str]:
        if self.kind in ("cli", "system"):
            return ALL_ACTIONS
        if self.kind == "user":
            return ROLE_ACTIONS.get(self.role, frozenset())
        return frozenset().union(*(SCOPE_ACTIONS.get(s, frozenset()) for s in self.scopes))

    def may(self, action: str) -> bool:
        return action in self.actions

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


def require(actor: Actor, action: str) -> None:
    """`PermissionDenied` naming the action and who may do it, unless `actor` may."""
    if action not in ALL_ACTIONS:
        raise ValueError(f"unknown action {action!r}")  # a programming error, not a user's
    if actor.may(action):
        return
    roles = [role for role, allowed in ROLE_ACTIONS.items() if action in allowed]
    scopes = [scope for scope, allowed in SCOPE_ACTIONS.items() if action in allowed]
    who = f"roles: {', '.join(roles)}" if actor.kind == "user" else f"scopes: {', '.join(scopes) or 'none'}"
    raise PermissionDenied(f"{actor.label} may not {action} ({who})")


def cli_actor() -> Actor:
    """The command line: every permission, audited as the operating-system user (`getpass.getuser()`).

    Never fails: a user the system cannot name (a container's uid without a passwd entry, no `pwd` module)
    is audited by its uid, or as "unknown" where there is none."""
    try:
        name = getpass.getuser().strip()
    except (KeyError, OSError, ImportError):  # no LOGNAME/USER and no passwd entry (or no pwd module)
        name = ""
    if not name:
        name = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return Actor("cli", name)


SYSTEM = Actor("system", "needlecast")
