"""The contact list's rows in words, for the console's page and the CSV export.

Contract: `contact_row(row, unmasked)` turns a row of `store.contact_search.rows` into a `ContactRow`: the
address and the name masked unless `unmasked` ("K*** M***" keeps each name's first letter, as `mask_email`
keeps the address's), consent, suppression and source in words. `export_csv(rows, unmasked)` is those rows
as CSV text with a header (`EXPORT_COLUMNS`), times in UTC (ISO 8601), a cell that a spreadsheet would run
as a formula quoted with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from needlecast.addresses import mask_email
from needlecast.audience.sources import source_words

SUPPRESSION_WORDS = {
    "unsubscribed": "Unsubscribed",
    "hard_bounce": "Address bounced",
    "complaint": "Marked an email as spam",
    "manual": "Suppressed by the clinic",
    "erased": "Erased",
}


def mask_name(name: str) -> str:
    return " ".join(f"{part[:1]}***" for part in name.split()) if name.strip() else ""


@dataclass(frozen=True)
class ContactRow:
    id: int
    email: str
    name: str  # "" when the contact gave none
    first_name: str
    last_name: str
    concerns: list[str]
    tags: list[str]
    consent: str  # in words
    can_email: bool  # consent given, confirmed, and not suppressed
    suppressed: str  # in words; "" when not
    source: str  # in words
    signed_up_at: datetime
    last_activity: datetime | None


def _consent_words(row: dict[str, Any]) -> str:
    if row["status"] == "pending":
        return "Not confirmed yet"
    if not row["marketing_consent"]:
        return "No consent to emails"
    return "Emails and concern" if row["concern_consent"] else "Emails only"


def contact_row(row: dict[str, Any], unmasked: bool) -> ContactRow:
    name = f"{row['first_name']} {row['last_name']}".strip()
    suppressed = row["suppressed"]
    return ContactRow(
        id=int(row["id"]),
        email=row["email"] if unmasked else mask_email(row["email"]),
        name=name if unmasked else mask_name(name),
        first_name=row["first_name"] if unmasked else mask_name(row["first_name"]),
        last_name=row["last_name"] if unmasked else mask_name(row["last_name"]),
        concerns=[c for c in (row["concerns"] or "").split(";") if c],
        tags=[t for t in (row["tags"] or "").split(";") if t],
        consent=_consent_words(row),
        can_email=bool(row["marketing_consent"]) and row["status"] != "pending" and not suppressed,
        suppressed=SUPPRESSION_WORDS.get(suppressed, str(suppressed)) if suppressed else "",
        source=source_words(row["source"]),
        signed_up_at=row["signed_up_at"],
        last_activity=row["last_activity"],
    )


EXPORT_COLUMNS = (
    "id",
    "email",
    "first_name",
    "last_name",
    "concerns",
    "tags",
    "consent",
    "suppressed",
    "source",
    "signed_up_at",
    "last_activity",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def export_csv(rows: Iterable[dict[str, Any]], *, unmasked: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for raw in rows:
        row = contact_row(raw, unmasked)
        values = {
            **row.__dict__,
            "concerns": ";".join(row.concerns),
            "tags": ";".join(row.tags),
            "suppressed": row.suppressed or "no",
        }
        writer.writerow([_cell(values[name]) for name in EXPORT_COLUMNS])
    return out.getvalue()
