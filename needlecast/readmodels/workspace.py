"""Read models of the workspace itself: its store, its lint findings, its sender set-up (`doctor`).

Contract: `workspace_store(workspace)` opens the workspace's database as every action and read model takes
it (an older schema is refused, naming `needlecast db upgrade`). `lint_findings` is every finding of
`needlecast lint` (content, templates, campaign files, config) with its counts; `sender_setup` every check
of what real sending needs (`doctor.diagnose`), each with its fix. Neither changes anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from needlecast.campaign.definition.checks import workspace_findings
from needlecast.config import Workspace
from needlecast.doctor import MISSING, OK, diagnose
from needlecast.findings import Finding
from needlecast.lint import ERROR
from needlecast.store.engine import open_store

__all__ = ["MISSING", "OK", "Finding", "LintFindings", "SenderSetup", "lint_findings", "sender_setup"]


def workspace_store(workspace: Workspace) -> Engine:
    """The workspace's store (`store.engine.open_store` of its database URL)."""
    return open_store(workspace.database_url)


@dataclass(frozen=True)
class LintFindings:
    findings: list[Finding]  # in the order the checks found them: file, line, rule, severity, message, fix
    errors: int  # findings of severity "error" (any makes `needlecast lint` exit 1)

    @property
    def failed(self) -> bool:
        return self.errors > 0


def lint_findings(workspace: Workspace) -> LintFindings:
    """Every finding of the workspace's content, templates, campaign files and config."""
    findings = workspace_findings(workspace)
    return LintFindings(findings, sum(f.severity == ERROR for f in findings))


@dataclass(frozen=True)
class SenderSetup:
    checks: list[dict[str, Any]]  # item, status (ok, missing, unchecked), detail, fix; in the doctor's order

    @property
    def missing(self) -> bool:
        """Something real sending needs is missing (`needlecast doctor` exits 1)."""
        return any(c["status"] == MISSING for c in self.checks)


def sender_setup(workspace: Workspace) -> SenderSetup:
    """What real sending needs: the sender, the secrets, the webhook key, SPF, DKIM, DMARC, the unsubscribe
    host (DNS and HTTP look-ups with their own timeouts)."""
    return SenderSetup([dataclasses.asdict(check) for check in diagnose(workspace)])
