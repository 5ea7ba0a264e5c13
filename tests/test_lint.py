from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from needlecast.cli import app
from needlecast.config import Workspace, open_workspace
from needlecast.lint import claim_findings, lint_workspace

CLAIMS = [
    ("claim-safety-absolute", "Our peel is completely safe.", "Redness for a day or two is common."),
    ("claim-safety-absolute", "A painless treatment with no downtime.", "Most people return to work the next day."),
    ("claim-safety-absolute", "It poses minimal risk.", "Your practitioner explains the risks."),
    ("claim-universality", "Suitable for all skin types.", "Suitable for many skin types."),
    ("claim-universality", "Everyone loves the results.", "Many clients like the results."),
    ("claim-permanence", "Permanent results that cure acne.", "Results that improve acne over time."),
    ("claim-permanence", "We remove scars for good.", "It can soften the look of scars."),
    ("claim-guarantee", "Guaranteed results or your money back.", "Results vary from person to person."),
    ("claim-pressure", "Offer ends tonight, hurry!", "The offer runs until 31 March."),
    ("claim-non-invasive", "A non-invasive needling treatment.", "A minimally invasive treatment."),
]


@pytest.mark.parametrize(("rule", "risky", "clean"), CLAIMS)
def test_each_claim_rule_fires_on_its_case_and_stays_silent_on_clean_text(rule: str, risky: str, clean: str) -> None:
    found = claim_findings("x.txt", f"intro\n{risky}\n")
    assert rule in {f.rule for f in found}
    assert all(f.line == 2 and f.fix for f in found if f.rule == rule)
    assert claim_findings("x.txt", clean) == []


def test_sample_article_flags_safe_for_all_skin_types_and_minimal_risk(workspace: Workspace) -> None:
    findings = [f for f in lint_workspace(workspace) if f.file == "content/microneedling.txt"]
    found = [f for f in findings if f.rule != "content-tag-review"]
    # The same section's tags rest on one passing mention of hyperpigmentation: flagged for review, not guessed.
    assert [(f.line, f.severity) for f in findings if f.rule == "content-tag-review"] == [(18, "warning")]
    messages = " ".join(f.message for f in found)
    assert '"Safe"' in messages and '"All Skin Types"' in messages and '"minimal risk"' in messages
    assert {f.line for f in found} == {18}
    assert all(f.severity == "error" for f in found)


def test_clean_sample_templates_have_no_mechanics_findings(workspace: Workspace) -> None:
    found = [f for f in lint_workspace(workspace) if f.file.startswith("templates/")]
    assert found == []


def _email(ws: Workspace, name: str, html: str, txt: str) -> None:
    (ws.templates_dir / "emails" / f"{name}.html").write_text(html)
    (ws.templates_dir / "emails" / f"{name}.txt").write_text(txt)


FOOTER_TXT = "{{ clinic.postal_address }} {{ unsubscribe_url }}"
FOOTER_HTML = '<p>{{ clinic.postal_address }} <a href="{{ unsubscribe_url }}">u</a></p>'


def _blocks(subject: str, preheader: str = "Hello") -> str:
    return f"{{% block subject %}}{subject}{{% endblock %}}{{% block preheader %}}{preheader}{{% endblock %}}"


@pytest.mark.parametrize(
    ("rule", "html", "txt"),
    [
        ("missing-unsubscribe", "<p>{{ clinic.postal_address }}</p>", _blocks("Hi") + "{{ clinic.postal_address }}"),
        ("missing-postal-address", '<a href="{{ unsubscribe_url }}">u</a>', _blocks("Hi") + "{{ unsubscribe_url }}"),
        ("html-too-large", FOOTER_HTML + "<p>" + "x" * 110_000 + "</p>", _blocks("Hi") + FOOTER_TXT),
        ("image-without-alt", FOOTER_HTML + '<img src="a.png">', _blocks("Hi") + FOOTER_TXT),
        ("subject-empty", FOOTER_HTML, _blocks("") + FOOTER_TXT),
        ("subject-all-caps", FOOTER_HTML, _blocks("BOOK NOW") + FOOTER_TXT),
        ("health-term-in-subject", FOOTER_HTML, _blocks("Your acne plan") + FOOTER_TXT),
        ("health-term-in-subject", FOOTER_HTML, _blocks("Hello", "Fade your melasma") + FOOTER_TXT),
    ],
)
def test_each_mechanics_rule_fires_on_its_case(workspace: Workspace, rule: str, html: str, txt: str) -> None:
    _email(workspace, "case", html, txt)
    found = {f.rule for f in lint_workspace(workspace, templates=["emails/case"]) if f.file.startswith("templates/")}
    assert rule in found


PROSE = (
    "Our practitioners look at your skin, listen to what you would like to change and explain honestly what a "
    "course of treatment involves, how many sessions it usually takes, what the days after each session are "
    "like and how to look after your skin between visits. If a treatment does not suit you, we say so and "
    "suggest what might help instead. You are welcome to bring a list of questions, or a friend, and there is "
    "no obligation to book anything afterwards."
)


def test_mechanics_rules_stay_silent_on_a_clean_email(workspace: Workspace) -> None:
    # Clean for the deliverability checks too: enough words per image, and the same wording in both parts.
    html = f'<img src="a.png" alt="A photo"><p>{PROSE}</p>' + FOOTER_HTML
    _email(workspace, "case", html, _blocks("Your guide") + PROSE + FOOTER_TXT)
    assert [f for f in lint_workspace(workspace, templates=["emails/case"]) if f.file.startswith("templates/")] == []


def test_placeholder_config_is_flagged_until_filled(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(tmp_path / "fresh")]).exit_code == 0
    found = lint_workspace(open_workspace(tmp_path / "fresh"))
    placeholders = {f.message.split()[1] for f in found if f.rule == "config-placeholder"}
    assert {"name", "postal_address", "sender_email"} <= placeholders


def test_lint_cli_json_output_and_exit_status(workspace_dir: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--workspace", str(workspace_dir), "lint", "--format", "json"])
    assert result.exit_code == 1  # the sample article carries error-severity claims
    findings = json.loads(result.stdout)
    assert {"file", "line", "rule", "severity", "message", "fix"} <= set(findings[0])
    (workspace_dir / "content" / "microneedling.txt").write_text(
        "What is it?\nA treatment.\n\nBenefits:\n\nSmoother Texture: Can help skin texture over time.\n"
    )
    result = runner.invoke(app, ["--workspace", str(workspace_dir), "lint"])
    assert result.exit_code == 0, result.stdout
