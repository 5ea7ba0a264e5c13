"""Where a contact came from, in the clinic's words: one reading of a consent's stored source for every page.

Contract: a source is stored as its consent's evidence ("import:sample.csv", "form:spring", "signup:3f2a",
"api", "api:KEY", "api (KEY)", "console...", "manual...", "double opt-in confirmation", or an API client's own
words). `source_words(raw)` names it with its detail, for a contact's page, the list and its export
("Imported from sample.csv", "Signup form “spring”", "Added through the API (crm sync)"); `source_group(raw)`
names only its kind, for counts by source ("Imported from sample.csv", "Website signup form", "Added through
the API"). Both say "Source not recorded" for none, and show an API client's own words as written, their
first letter capitalised.
"""

from __future__ import annotations

NOT_RECORDED = "Source not recorded"
UNKNOWN = "unknown"  # what a lead without any recorded source is grouped under (`reports.cohorts`)


def _imported(rest: str) -> str:
    return f"Imported from {rest}" if not rest.startswith("#") else "Imported from a spreadsheet"


def _as_written(raw: str) -> str:
    return raw[:1].upper() + raw[1:]


def source_words(raw: str) -> str:
    """The source with its detail (see the module contract)."""
    kind, _, rest = raw.partition(":")
    if not raw or raw == UNKNOWN:
        return NOT_RECORDED
    if kind == "import" and rest:
        return _imported(rest)
    if kind == "form" and rest:
        return f"Signup form “{rest}”"
    if kind == "signup" or raw == "double opt-in confirmation":
        return "Website signup form"
    if kind == "api" and rest:
        return f"Added through the API ({rest})"
    if raw == "api" or raw.startswith("api ("):
        return "Added through the API" + raw[3:]
    if raw.startswith(("manual", "console")):
        return "Added by hand"
    return _as_written(raw)


def source_group(raw: str) -> str:
    """The source's kind alone (see the module contract)."""
    kind, _, rest = raw.partition(":")
    if not raw or raw == UNKNOWN:
        return NOT_RECORDED
    if kind == "import" and rest:
        return _imported(rest)
    if kind in ("signup", "form") or raw == "double opt-in confirmation":
        return "Website signup form"
    if raw == "api" or kind == "api" or raw.startswith("api ("):
        return "Added through the API"
    if raw.startswith(("manual", "console")):
        return "Added by hand"
    return _as_written(raw)
