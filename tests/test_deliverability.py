"""Pre-send deliverability checks: each fires on a crafted template and stays silent on the samples; SpamAssassin
runs for real (skipped only where it is not installed; CI installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from needlecast import spamcheck
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.gate import blocking_findings, ensure_sendable
from needlecast.config import Workspace, open_workspace
from needlecast.errors import CampaignBlocked
from needlecast.lint import Finding, lint_workspace
from needlecast.templating.environment import build_environment
from needlecast.templating.preview import sample_eml
from needlecast.templating.render import RenderedEmail

# Skipped only on a developer's machine without SpamAssassin: under CI (`CI` set, as `.ci/run` runs the suite,
# after installing Debian's spamassassin) these tests always run, and fail if SpamAssassin is missing.
needs_spamassassin = pytest.mark.skipif(
    shutil.which("spamassassin") is None and not os.environ.get("CI"),
    reason="Debian's spamassassin is not installed here (apt-get install spamassassin; .ci/run installs it)",
)
REPO = Path(__file__).resolve().parent.parent

# About 80 words of ordinary clinic prose, in both parts, so a crafted case trips only its own rule.
PROSE = (
    "Our practitioners look at your skin, listen to what you would like to change and explain honestly what a "
    "course of treatment involves, how many sessions it usually takes, what the days after each session are "
    "like and how to look after your skin between visits. If a treatment does not suit you, we say so and "
    "suggest what might help instead. You are welcome to bring a list of questions, or a friend, and there is "
    "no obligation to book anything afterwards."
)
FOOTER_HTML = '<p>{{ clinic.postal_address }} <a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
FOOTER_TXT = "{{ clinic.postal_address }}\nUnsubscribe: {{ unsubscribe_url }}"


def _blocks(subject: str = "Your guide to our treatments", preheader: str = "What a visit involves.") -> str:
    return f"{{% block subject %}}{subject}{{% endblock %}}{{% block preheader %}}{preheader}{{% endblock %}}"


def _email(ws: Workspace, html: str, txt: str) -> None:
    (ws.templates_dir / "emails" / "case.html").write_text(html)
    (ws.templates_dir / "emails" / "case.txt").write_text(txt)


def _template_findings(ws: Workspace) -> list[Finding]:
    return [f for f in lint_workspace(ws, templates=["emails/case"]) if f.file.startswith("templates/")]


CLEAN_HTML = f"<h1>Your visit</h1><p>{PROSE}</p>" + FOOTER_HTML
CLEAN_TXT = _blocks() + f"Your visit\n\n{PROSE}\n\n" + FOOTER_TXT

CASES = [
    ("html-clipped", CLEAN_HTML + "<p>" + "word " * 22_000 + "</p>", CLEAN_TXT + "\nword"),
    (
        "image-heavy",
        "<p>Our clinic</p>"
        + '<img src="https://lumen-clinic.example.com/a.png" alt="Our waiting room">' * 3
        + FOOTER_HTML,
        _blocks() + "Our clinic\n" + FOOTER_TXT,
    ),
    (
        "link-unknown-host",
        CLEAN_HTML + '<p><a href="https://elsewhere.example.org/offer">Read more</a></p>',
        CLEAN_TXT + "\nRead more",
    ),
    (
        "link-shortener",
        CLEAN_HTML + '<p><a href="https://bit.ly/3abcd">Read more</a></p>',
        CLEAN_TXT + "\nRead more",
    ),
    ("link-shortener", CLEAN_HTML, CLEAN_TXT + "\nRead more: https://tinyurl.com/xyz"),
    ("subject-too-long", CLEAN_HTML, CLEAN_TXT.replace("Your guide to our treatments", "Your guide " * 8)),
    ("subject-all-caps", CLEAN_HTML, CLEAN_TXT.replace("Your guide to our treatments", "YOUR GUIDE to US")),
    ("subject-trigger", CLEAN_HTML, CLEAN_TXT.replace("Your guide to our treatments", "A free skin check")),
    ("subject-trigger", CLEAN_HTML, CLEAN_TXT.replace("Your guide to our treatments", "Act now for spring")),
    ("subject-trigger", CLEAN_HTML, CLEAN_TXT.replace("Your guide to our treatments", "Peels from £49 this month")),
    ("subject-trigger", CLEAN_HTML, CLEAN_TXT.replace("Your guide to our treatments", "Results guaranteed")),
    ("preheader-missing", CLEAN_HTML, CLEAN_TXT.replace("What a visit involves.", "")),
    ("text-part-incomplete", CLEAN_HTML, _blocks() + "Book a visit.\n" + FOOTER_TXT),
]


@pytest.mark.parametrize(("rule", "html", "txt"), CASES)
def test_each_deliverability_check_fires_on_its_case_with_the_template_and_a_fix(
    workspace: Workspace, rule: str, html: str, txt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spamcheck, "spamassassin_program", lambda: None)  # SpamAssassin has its own tests
    _email(workspace, html, txt)
    hits = [f for f in _template_findings(workspace) if f.rule == rule]
    assert hits, rule
    assert all(f.file in ("templates/emails/case.html", "templates/emails/case.txt") for f in hits)
    assert all(f.fix and f.line >= 1 for f in hits)


def test_the_checks_stay_silent_on_a_clean_email_and_on_a_trusted_host(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spamcheck, "spamassassin_program", lambda: None)  # SpamAssassin has its own tests
    _email(workspace, CLEAN_HTML, CLEAN_TXT)
    assert _template_findings(workspace) == []
    toml = workspace.config_path.read_text() + '\n[deliverability]\nlink_hosts = ["partner.example.org"]\n'
    workspace.config_path.write_text(toml)
    trusted = open_workspace(workspace.root)
    _email(
        trusted, CLEAN_HTML + '<p><a href="https://www.partner.example.org/x">Partner</a></p>', CLEAN_TXT + "\nPartner"
    )
    assert _template_findings(trusted) == []


def test_the_sample_templates_pass_every_check_spamassassin_included(workspace: Workspace) -> None:
    found = [f for f in lint_workspace(workspace) if f.file.startswith("templates")]
    if shutil.which("spamassassin") is None:
        assert [f.rule for f in found] == ["spam-check-unavailable"]
    else:
        assert found == []


@needs_spamassassin
def test_spamassassin_scores_the_sample_confirmation_email_under_the_warning(workspace: Workspace) -> None:
    from needlecast.content.loader import load_library_for, load_vocabulary_for
    from needlecast.templating.context import email_context
    from needlecast.templating.render import render_email

    vocabulary = load_vocabulary_for(workspace)
    library = load_library_for(workspace, vocabulary)
    env = build_environment(workspace.templates_dir)
    scores = {}
    for name in ("confirm", "consultation"):
        context = email_context(library.default, vocabulary, workspace.settings.clinic, "general")
        scores[name] = spamcheck.score_messages(
            {name: sample_eml(workspace, render_email(env, f"emails/{name}", context))}
        )[name]
    assert all(s.score < spamcheck.WARN_SCORE for s in scores.values()), scores
    assert not any(rule.startswith("HTML_IMAGE_ONLY") for s in scores.values() for rule, _ in s.rules)


@needs_spamassassin
def test_the_readme_gives_spamassassins_score_of_each_sample_email(workspace: Workspace) -> None:
    """The README's table of the sample emails' scores ("now") is what SpamAssassin gives each of them today
    (the highest over the sample article's variants), and lists every sample email."""
    from needlecast.content.loader import load_library_for, load_vocabulary_for
    from needlecast.templating.context import email_context, variant_concerns
    from needlecast.templating.environment import email_templates
    from needlecast.templating.render import render_email

    readme = (REPO / "README.md").read_text()
    table = readme.split("The sample emails' scores", 1)[1].split("\n\n", 2)[1]
    shown = {
        name: float(now)
        for name, now in re.findall(r"^\| `(emails/\w+)` \| [^|]+ \| ([0-9.]+) \|$", table, flags=re.MULTILINE)
    }
    vocabulary = load_vocabulary_for(workspace)
    library = load_library_for(workspace, vocabulary)
    env = build_environment(workspace.templates_dir)
    names = list(email_templates(workspace.templates_dir))
    assert sorted(shown) == sorted(names)
    messages = {
        (name, concern): sample_eml(
            workspace,
            render_email(env, name, email_context(library.default, vocabulary, workspace.settings.clinic, concern)),
        )
        for name in names
        for concern in variant_concerns(vocabulary)
    }
    scores = spamcheck.score_messages({f"{n}|{c}": eml for (n, c), eml in messages.items()})
    highest = {name: max(s.score for key, s in scores.items() if key.split("|")[0] == name) for name in names}
    assert {name: round(score, 1) for name, score in highest.items()} == shown


SPAM_BODY = (
    "Dear friend, order from our online pharmacy with no prescription needed: viagra and cialis at the best "
    "prices. Lose weight fast with our diet pills."
)


@needs_spamassassin
def test_a_spammy_email_is_an_error_listing_the_rules_that_hit(workspace: Workspace) -> None:
    _email(
        workspace,
        f"<p>{SPAM_BODY}</p><p>{PROSE}</p>" + FOOTER_HTML,
        _blocks() + f"{SPAM_BODY}\n\n{PROSE}\n\n" + FOOTER_TXT,
    )
    spam = [f for f in _template_findings(workspace) if f.rule == "spam-score"]
    assert spam and all(f.severity == "error" and f.file == "templates/emails/case.html" for f in spam)
    assert "DEAR_FRIEND" in spam[0].message and "NO_PRESCRIPTION" in spam[0].message and spam[0].fix


@needs_spamassassin
def test_a_score_between_two_and_five_is_a_warning(workspace: Workspace) -> None:
    _email(
        workspace,
        f"<p>Dear friend,</p><p>{PROSE}</p>" + FOOTER_HTML,
        _blocks() + f"Dear friend,\n\n{PROSE}\n\n" + FOOTER_TXT,
    )
    spam = [f for f in _template_findings(workspace) if f.rule == "spam-score"]
    assert spam and {f.severity for f in spam} == {"warning"}
    assert "DEAR_FRIEND" in spam[0].message


def test_without_spamassassin_lint_says_so_once_and_never_passes_silently(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spamcheck, "spamassassin_program", lambda: None)
    found = [f for f in lint_workspace(workspace) if f.rule == "spam-check-unavailable"]
    assert len(found) == 1 and found[0].severity == "warning" and "SpamAssassin" in found[0].message


def _counted_spamassassin_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The `spamassassin` program's runs from here on, each as the number of messages it was given (local tests
    only, `-L -t`)."""
    runs: list[int] = []
    real_run = subprocess.run

    def counting(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        runs.append(kwargs["input"].count(b"X-Needlecast-Check:"))  # type: ignore[union-attr]
        assert "-L" in command and "-t" in command
        return real_run(command, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(spamcheck.subprocess, "run", counting)
    return runs


@needs_spamassassin
def test_each_distinct_message_is_scored_once_in_at_most_two_processes(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _counted_spamassassin_runs(monkeypatch)
    monkeypatch.setattr(spamcheck, "_cache", {})
    monkeypatch.delenv(spamcheck.SPAMD_SOCKET_ENV, raising=False)  # the program, not the session's spamd
    monkeypatch.delenv(spamcheck.SCORES_DIR_ENV, raising=False)  # nor the run's kept scores
    rendered = [
        RenderedEmail("emails/x", f"Note {n}", "A short note.", f"<p>{PROSE} {n}</p>", f"{PROSE} {n}") for n in range(3)
    ]
    messages = {f"m{n}": sample_eml(workspace, r) for n, r in enumerate(rendered)}
    messages["again"] = sample_eml(workspace, rendered[0])  # the same message, built again (new Date, Message-ID)
    first = spamcheck.score_messages(messages)
    assert set(first) == set(messages) and first["again"] == first["m0"]
    assert sum(runs) == 3 and len(runs) <= 2
    spamcheck.score_messages(messages)
    assert sum(runs) == 3  # scored once per process


@needs_spamassassin
def test_processes_sharing_a_scores_folder_score_each_distinct_message_once_between_them(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs = _counted_spamassassin_runs(monkeypatch)
    monkeypatch.delenv(spamcheck.SPAMD_SOCKET_ENV, raising=False)
    monkeypatch.setenv(spamcheck.SCORES_DIR_ENV, str(tmp_path))
    rendered = [
        RenderedEmail("emails/x", f"Note {n}", "A note.", f"<p>{PROSE} {n}</p>", f"{PROSE} {n}") for n in range(2)
    ]
    messages = {f"m{n}": sample_eml(workspace, r) for n, r in enumerate(rendered)}
    monkeypatch.setattr(spamcheck, "_cache", {})  # one process
    first = spamcheck.score_messages(messages)
    assert sum(runs) == 2 and len(list(tmp_path.glob("*.json"))) == 2
    monkeypatch.setattr(spamcheck, "_cache", {})  # another, the same messages built again (new Date, Message-ID)
    again = spamcheck.score_messages({key: sample_eml(workspace, r) for key, r in zip(messages, rendered, strict=True)})
    assert again == first and sum(runs) == 2  # read from the folder, not scored again
    assert first["m0"].score > 0 and first["m0"].hits()  # the real scores were kept, rules and all
    kept = sorted(tmp_path.glob("*.json"))
    kept[0].write_text("{not json")  # a file that cannot be read is scored again, and written whole again
    monkeypatch.setattr(spamcheck, "_cache", {})
    assert spamcheck.score_messages(messages) == first and sum(runs) == 3
    assert all(json.loads(path.read_text())["rules"] for path in kept)


def _clean_campaign(workspace: Workspace) -> CampaignContext:
    """The sample broadcast without its sign-off, over an article with no claims."""
    (workspace.content_dir / "microneedling.txt").write_text(
        "What is it?\nA treatment.\n\nBenefits:\n\nSmoother Texture: Can help skin texture over time.\n"
    )
    path = workspace.campaigns_dir / "spring-guide.yaml"
    path.write_text(path.read_text()[: path.read_text().index("signoff:")])
    return CampaignContext.load(workspace)


@needs_spamassassin
def test_the_sign_off_gate_holds_a_campaign_whose_email_spamassassin_scores_as_spam(workspace: Workspace) -> None:
    ctx = _clean_campaign(workspace)
    ensure_sendable(ctx, ctx.campaign("spring-guide"))  # clean: no sign-off needed
    broadcast = workspace.templates_dir / "emails" / "broadcast.html"
    broadcast.write_text(
        broadcast.read_text().replace("{% block content %}", "{% block content %}<p>" + SPAM_BODY + "</p>")
    )
    ctx = CampaignContext.load(workspace)
    assert "spam-score" in {f.rule for f in blocking_findings(ctx, ctx.campaign("spring-guide"))}
    with pytest.raises(CampaignBlocked, match="spam-score"):
        ensure_sendable(ctx, ctx.campaign("spring-guide"))


def test_gmail_clipping_is_measured_on_the_html_part_in_bytes(tmp_path: Path, workspace: Workspace) -> None:
    from needlecast.deliverability import GMAIL_CLIP_BYTES, message_findings

    def rules(html: str) -> set[str]:
        rendered = RenderedEmail("emails/x", "Hello", "Hi", html, html)
        found = message_findings(
            rendered,
            html_file="h",
            text_file="t",
            image_line=1,
            subject_line=1,
            preheader_line=1,
            settings=workspace.settings,
        )
        return {f.rule for f in found}

    assert "html-clipped" not in rules("é" * (GMAIL_CLIP_BYTES // 2))
    assert "html-clipped" in rules("é" * (GMAIL_CLIP_BYTES // 2 + 1))


def test_a_campaigns_own_subject_lines_are_checked_at_their_line(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from needlecast.campaign.definition.checks import campaign_findings

    monkeypatch.setattr(spamcheck, "spamassassin_program", lambda: None)  # SpamAssassin has its own tests
    path = workspace.campaigns_dir / "spring-guide.yaml"
    path.write_text(path.read_text().replace("What microneedling can do for your skin", "Free peel for you: act now"))
    ctx = CampaignContext.load(workspace)
    found = [f for f in campaign_findings(ctx, ctx.campaign("spring-guide")) if f.rule == "subject-trigger"]
    line = next(n for n, text in enumerate(path.read_text().splitlines(), start=1) if "Free peel" in text)
    assert found and {(f.file, f.line) for f in found} == {("campaigns/spring-guide.yaml", line)}


@needs_spamassassin
def test_a_campaigns_own_renderings_are_scored_at_the_steps_line(workspace: Workspace) -> None:
    from needlecast.campaign.definition.checks import campaign_findings

    broadcast = workspace.templates_dir / "emails" / "broadcast.html"
    broadcast.write_text(
        broadcast.read_text().replace("{% block content %}", "{% block content %}<p>" + SPAM_BODY + "</p>")
    )
    ctx = CampaignContext.load(workspace)
    spam = [f for f in campaign_findings(ctx, ctx.campaign("spring-guide")) if f.rule == "spam-score"]
    path = workspace.campaigns_dir / "spring-guide.yaml"
    step_line = next(n for n, text in enumerate(path.read_text().splitlines(), start=1) if "id: guide" in text)
    assert spam and {(f.file, f.line, f.severity) for f in spam} == {
        ("campaigns/spring-guide.yaml", step_line, "error")
    }
    assert any("arm B" in f.message for f in spam)


@pytest.mark.database_independent
@needs_spamassassin
def test_the_consoles_campaign_page_shows_the_spam_score_with_its_rules_and_fix(
    workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.console_site import site

    broadcast = workspace_dir / "templates" / "emails" / "broadcast.html"
    broadcast.write_text(
        broadcast.read_text().replace("{% block content %}", "{% block content %}<p>" + SPAM_BODY + "</p>")
    )
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    with site(workspace_dir, store_url) as console:
        page = console.login("marketer").get("/console/campaigns/spring-guide")
    assert page.status_code == 200
    findings = page.text.split('id="findings"', 1)[1].split("</table>", 1)[0]
    assert "spam-score" in findings and "NO_PRESCRIPTION" in findings and "templates/emails/broadcast.html" in findings
