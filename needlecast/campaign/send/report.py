"""What one run of a campaign did (`RunReport`), as the planner and the dispatcher fill it in.

Contract: counts only (ids, reasons, numbers), never an address, a name or a concern; `counts()` is the
JSON-able part that crosses a process boundary (a helper sender's result) and `add_counts` adds it to the
parent's report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from needlecast.campaign.plan.winner import Decision


@dataclass
class RunReport:
    campaign_id: str
    enqueued: int = 0
    sent: int = 0
    failed: int = 0
    released: int = 0
    unknown: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    excluded: Counter[str] = field(default_factory=Counter)
    deferred: Counter[str] = field(default_factory=Counter)
    sent_by: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)  # (step, segment, variant, arm)
    enrolled: int = 0
    exited: int = 0
    helpers: int = 0  # helper sender processes that dispatched alongside this one and reported their counts
    paused: str = ""
    blocked: str = ""
    inactive: str = ""
    decisions: list[Decision] = field(default_factory=list)  # A/B winners decided by this run

    def counts(self) -> dict[str, Any]:
        """The dispatch's counts, JSON-able (what a helper process reports)."""
        return {
            "sent": self.sent,
            "failed": self.failed,
            "released": self.released,
            "unknown": self.unknown,
            "skipped": dict(self.skipped),
            "sent_by": [[list(k), v] for k, v in self.sent_by.items()],
            "paused": self.paused,
        }

    def add_counts(self, counts: dict[str, Any]) -> None:
        """Add a helper process's `counts()` (empty when it was sent home unused)."""
        if counts:
            self.helpers += 1
        for name in ("sent", "failed", "released", "unknown"):
            setattr(self, name, getattr(self, name) + counts.get(name, 0))
        self.skipped.update(counts.get("skipped", {}))
        self.sent_by.update({(k[0], k[1], k[2], k[3]): v for k, v in counts.get("sent_by", [])})
        if counts.get("paused") and not self.paused:
            self.paused = counts["paused"]
