"""Claims risky in medical-aesthetic marketing, as rules over text.

Advertising codes for cosmetic procedures (e.g. the UK's CAP Code, the FTC's health-claims guidance) treat
absolute safety, universal suitability, permanence, cures, guarantees and pressure to book as misleading.
Each rule is a pattern, a severity and a suggested fix; `find_claims` reports every match with its line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class ClaimRule:
    rule: str
    severity: str
    pattern: re.Pattern[str]
    message: str
    fix: str


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])(?:" + "|".join(alternatives) + r")(?![\w-])", re.IGNORECASE)


CLAIM_RULES: tuple[ClaimRule, ...] = (
    ClaimRule(
        "claim-safety-absolute",
        ERROR,
        _rx(
            r"safe(?:ly)?",
            r"risk[- ]free",
            r"minimal risks?",
            r"no risks?",
            r"no side[- ]effects?",
            r"no downtime",
            r"painless",
            r"pain[- ]free",
            r"harmless",
        ),
        "absolute safety claim",
        "describe the usual side effects and recovery instead (e.g. 'redness for a day or two is common')",
    ),
    ClaimRule(
        "claim-universality",
        ERROR,
        _rx(r"all skin types", r"every skin type", r"any skin type", r"everyone", r"anyone", r"suitable for all"),
        "claims to suit everyone",
        "say who it usually suits and that a consultation decides (e.g. 'suitable for many skin types')",
    ),
    ClaimRule(
        "claim-permanence",
        ERROR,
        _rx(
            r"permanent(?:ly)?",
            r"cures?",
            r"cured",
            r"eliminat(?:e|es|ed|ing)",
            r"remov(?:e|es|ed|ing) (?:acne |your )?scars?",
            r"erase[sd]?",
            r"forever",
        ),
        "promises a permanent result or a cure",
        "speak of improvement and typical results (e.g. 'can reduce the appearance of scars')",
    ),
    ClaimRule(
        "claim-guarantee",
        ERROR,
        _rx(r"guarantee[sd]?", r"guaranteed results?", r"100 ?% (?:effective|results?|success)", r"proven to"),
        "guarantees a result",
        "drop the guarantee; results vary from person to person",
    ),
    ClaimRule(
        "claim-pressure",
        WARNING,
        _rx(
            r"ends tonight",
            r"today only",
            r"last chance",
            r"hurry",
            r"act now",
            r"countdown",
            r"limited time",
            r"only \d+ (?:spots|places|slots) left",
            r"expires in \d+",
        ),
        "pressure to book",
        "give the real date an offer ends, without urgency wording; cosmetic procedures need time to decide",
    ),
    ClaimRule(
        "claim-non-invasive",
        ERROR,
        _rx(r"non[- ]?invasive"),
        "'non-invasive' is wrong for a treatment that punctures the skin",
        "say 'minimally invasive'",
    ),
)


@dataclass(frozen=True)
class ClaimMatch:
    rule: ClaimRule
    line: int
    text: str


def find_claims(text: str, first_line: int = 1) -> Iterator[ClaimMatch]:
    """Every risky claim in `text`, with the 1-based line it is on (counting from `first_line`)."""
    for offset, line in enumerate(text.splitlines()):
        for rule in CLAIM_RULES:
            for match in rule.pattern.finditer(line):
                yield ClaimMatch(rule, first_line + offset, match.group(0))
