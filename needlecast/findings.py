"""A lint finding: what is wrong where, how bad, and the fix (shared by `needlecast.lint` and its checks)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int
    rule: str
    severity: str
    message: str
    fix: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
