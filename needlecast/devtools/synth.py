"""Deterministic synthetic audiences (no real people): the sample CSV, test fixtures, benchmark inputs.

`write_audience_csv(path, n, seed, messy)` writes `n` data rows. With `messy`, about 1 row in 12 carries the
mess real exports have: mixed-case or space-padded addresses, repeated addresses (some with conflicting
values), invalid addresses, concern synonyms and multi-value concerns, missing names, unknown concerns.
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

FIRST = [
    "Ana",
    "Bea",
    "Chloé",
    "Dev",
    "Emeka",
    "Fatima",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kaia",
    "Liam",
    "Maya",
    "Noor",
    "Olu",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Vera",
    "Wen",
    "Zoë",
]
LAST = ["Okafor", "Silva", "Müller", "Nguyen", "O'Brien", "Kowalski", "Haddad", "Sato", "Jensen", "Rossi"]
CONCERNS = [
    "acne",
    "Acne",
    "breakouts",
    "acne scars",
    "ageing",
    "Anti-aging",
    "wrinkles",
    "fine lines",
    "pigmentation",
    "Hyperpigmentation",
    "melasma",
    "dark spots",
    "acne; pigmentation",
    "ageing, melasma",
    "",
]
ZONES = ["Europe/London", "Europe/London", "Europe/Dublin", "America/New_York", "Australia/Sydney", ""]
DOMAINS = ["example.com", "example.org", "example.net"]
HEADER = [
    "Email",
    "First Name",
    "Last Name",
    "Skin concern",
    "Time zone",
    "Marketing consent",
    "Health data consent",
    "Consent date",
    "Signed up",
    "Booked",
    "Tags",
]


def synthetic_rows(n: int, seed: int = 7, messy: bool = True) -> list[list[str]]:
    rng = random.Random(seed)
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    rows: list[list[str]] = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = f"{first.lower().replace('é', 'e').replace('ë', 'e')}.{i}@{DOMAINS[i % 3]}"
        signed = start + timedelta(days=rng.randint(0, 320), minutes=rng.randint(0, 600))
        marketing = "yes" if rng.random() < 0.85 else rng.choice(["no", "pending"])
        health = "yes" if rng.random() < 0.75 else "no"
        row = [
            email,
            first,
            last,
            rng.choice(CONCERNS),
            rng.choice(ZONES),
            marketing,
            health,
            signed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            signed.date().isoformat(),
            "yes" if rng.random() < 0.1 else "no",
            "newsletter" if i % 5 == 0 else "",
        ]
        if messy and rows and rng.random() < 1 / 12:
            mess = rng.randrange(7)
            if mess == 0:
                row[0] = "  " + email.upper() + " "
            elif mess == 1:  # a repeat of an earlier address, sometimes with other values
                earlier = rng.choice(rows)
                row = list(earlier) if rng.random() < 0.5 else [earlier[0], *row[1:]]
            elif mess == 2:
                row[0] = rng.choice(
                    [
                        email.replace("@", " at "),
                        email.split("@")[0] + "@",
                        "n/a",
                        email.replace(".com", ".c"),
                        "@" + DOMAINS[0],
                    ]
                )
            elif mess == 3:
                row[1] = row[2] = ""
            elif mess == 4:
                row[3] = rng.choice(["rosacea", "eczema"])
            elif mess == 5:
                row[1] = 'Jo "JJ"\nJones'  # a quoted field with an embedded newline
            else:
                row[3] = "Acne / Dark Spots"
        rows.append(row)
    return rows


def write_audience_csv(path: Path, n: int, seed: int = 7, messy: bool = True, delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(HEADER)
        writer.writerows(synthetic_rows(n, seed, messy))
    return path
