"""Map a file's columns to contact fields: automatically where the header is clear, else by a mapping file.

A mapping file is YAML, `column in the file: field`, for example `Correo: email` or `Notes: ignore`.
Columns mapped to no field are kept as contact attributes under their header (usable in segment filters,
e.g. `booked`).
"""

from __future__ import annotations

import re
from pathlib import Path

from needlecast.errors import AudienceFileError, ConfigurationError
from needlecast.yamlfile import read_yaml

FIELDS = (
    "email",
    "first_name",
    "last_name",
    "concerns",
    "time_zone",
    "locale",
    "tags",
    "lists",
    "marketing_consent",
    "concern_consent",
    "consent_date",
    "consent_wording",
    "signed_up_at",
)
IGNORE = "ignore"
# An unknown concern is kept as a tag with this prefix (`concern:rosacea`): health data like a concern.
CONCERN_TAG = "concern:"

_ALIASES: dict[str, str] = {}
for _field, _names in {
    "email": ["email", "e-mail", "email address", "e-mail address", "mail", "email addr"],
    "first_name": ["first name", "firstname", "given name", "forename", "first"],
    "last_name": ["last name", "lastname", "surname", "family name", "last"],
    "concerns": ["concern", "concerns", "skin concern", "skin concerns", "primary concern", "treatment interest"],
    "time_zone": ["time zone", "timezone", "tz"],
    "locale": ["locale", "language", "lang"],
    "tags": ["tag", "tags"],
    "lists": ["list", "lists"],
    "marketing_consent": [
        "marketing consent",
        "consent",
        "email consent",
        "opt in",
        "opted in",
        "optin",
        "subscribed",
        "newsletter",
    ],
    "concern_consent": ["concern consent", "health data consent", "skin data consent", "concern data consent"],
    "consent_date": ["consent date", "consented at", "opt in date", "consent timestamp"],
    "consent_wording": ["consent wording", "wording version", "consent version", "consent text version"],
    "signed_up_at": [
        "signed up",
        "signup date",
        "sign up date",
        "signed up at",
        "created",
        "created at",
        "date added",
        "joined",
    ],
}.items():
    for _name in _names:
        _ALIASES[re.sub(r"[^a-z0-9]", "", _name)] = _field


def _fold(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def load_mapping(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    raw = read_yaml(path, "the --mapping file") or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{path}: expected a mapping 'column in the file: field'")
    for column, target in raw.items():
        if target not in (*FIELDS, IGNORE):
            raise ConfigurationError(
                f"{path}: column '{column}' maps to unknown field '{target}'; fields: {', '.join(FIELDS)}, {IGNORE}"
            )
    return {str(k): str(v) for k, v in raw.items()}


def map_columns(headers: list[str], mapping: dict[str, str], source: str) -> tuple[dict[str, int], dict[str, int]]:
    """(field -> column index, attribute name -> column index). Raises when no column is the email."""
    fields: dict[str, int] = {}
    attributes: dict[str, int] = {}
    for index, header in enumerate(headers):
        target = mapping.get(header) or _ALIASES.get(_fold(header))
        if target == IGNORE or not header:
            continue
        if target and target not in fields:
            fields[target] = index
        elif not target:
            attributes[re.sub(r"\W+", "_", header.strip().lower()).strip("_") or f"column_{index + 1}"] = index
    if "email" not in fields:
        found = ", ".join(repr(h) for h in headers) or "none"
        raise AudienceFileError(
            f"{source}: no email column. Columns found: {found}. Name the column 'Email', or map it with "
            '--mapping FILE, a YAML file such as:  "Correo electrónico": email'
        )
    return fields, attributes
