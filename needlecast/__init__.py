"""needlecast: a clinic's educational content as segmented, scheduled email campaigns.

The packages depend downward and never round a cycle (`tests/test_architecture.py`):
- the base: `errors`, `config`, `addresses`, `signing`, `store` (the only place for database-specific SQL);
- the domain: `content`, `templating`, `accounts`, `ledger`, `delivery`, `audience`, `tracking`, `bookings`,
  `reports`;
- `campaign`, by stage: `definition` (the file, its editor, sign-off, gate), `plan` (rules, planner, timing,
  send time, winner, preview), `send` (dispatcher, rendering, state);
- the sending processes: `fleet` (worker, heartbeat, status, telemetry, helper sender processes) and `schedule`;
- `actions` (every change: actor, permission, change, audit) and `readmodels` (what the faces show, built once);
- the three faces over them: the console and the API (`web`), the command line (`cli`).
`devtools` (demo, synthetic data, the SendGrid sink, stage timings) sits beside the faces.
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """`needlecast.__version__`, read from the installed package's metadata when first asked for: reading it
    (importlib.metadata scans every installed distribution) cost every needlecast process about 40 ms at start."""
    if name != "__version__":
        raise AttributeError(f"module 'needlecast' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("needlecast")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+source"
