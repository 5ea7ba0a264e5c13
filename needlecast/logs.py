"""Logging: where log lines go, and the filter that keeps personal data out of every one of them.

Contract:
- `configure_logging(level, log_file)` sends needlecast's and its libraries' log lines to stderr (or,
  with `log_file`, to that file) at `level`; commands that print results call it with WARNING unless
  asked for more (`-v`), services (scheduler, web, worker) with INFO.
- Every handler it installs carries `PrivacyFilter`: anything shaped like an email address, and the values
  of a database's "Key (...)=(...)" detail, are replaced in the message, its arguments and any exception
  text before a line is written, whatever raised it. Code still logs ids and counts only; the filter is
  the net under error paths that format a library's message (a driver's error quotes the row it refused).
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_KEY_DETAIL = re.compile(r"(Key \([^)]*\)=\()[^)]*(\))")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def scrub(text: str) -> str:
    """`text` with addresses and database key details replaced."""
    return _KEY_DETAIL.sub(r"\1<redacted>\2", _ADDRESS.sub("<address>", text))


class PrivacyFilter(logging.Filter):
    """Rewrites each record so that no address (or a key a database quotes) reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, scrubbed; the formatter then uses exc_text as it is.
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def privacy_handler(handler: logging.Handler) -> logging.Handler:
    handler.addFilter(PrivacyFilter())
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def configure_logging(level: int = logging.WARNING, log_file: Path | None = None) -> None:
    """Route log lines to stderr or `log_file` at `level`, through `PrivacyFilter` (see the contract)."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        target: logging.Handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        target = logging.StreamHandler(sys.stderr)
    root.addHandler(privacy_handler(target))
    root.setLevel(level)
    logging.getLogger("needlecast").setLevel(logging.NOTSET)  # follows the root
