"""`needlecast lint`: claims and compliance checks over content, templates and config.

Contract: `lint_workspace(workspace)` returns every `Finding` (file, line, rule, severity, message, fix),
sorted by file and line. It checks
- every article of the content library and the template sources for risky claims
  (`needlecast.content.claims`), each finding naming the article's file and line; an article that cannot be
  parsed, and a section whose tags are flagged for review (weak or split evidence), are findings too;
- every email template, rendered for every article and every concern variant, for mechanics: an unsubscribe
  link, the postal address, HTML size (Gmail clips at 102 KB), images without alt text, an empty or all-caps subject, a
  health term in the subject or preheader (shown on lock screens and in notifications);
- needlecast.toml for placeholders and an invalid sender.
A template that fails to render is itself a finding (error), so lint reports everything in one run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from itertools import product
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from needlecast.config import Workspace
from needlecast.content.claims import ERROR, WARNING, find_claims
from needlecast.content.loader import load_library_for, load_vocabulary_for
from needlecast.content.model import Article
from needlecast.content.vocabulary import Vocabulary
from needlecast.deliverability import message_findings, spam_findings
from needlecast.errors import TemplateProblem
from needlecast.findings import Finding
from needlecast.spamcheck import SpamAssassinFailed, SpamAssassinMissing, score_messages
from needlecast.templating.context import email_context, variant_concerns
from needlecast.templating.environment import build_environment, email_templates
from needlecast.templating.preview import sample_eml
from needlecast.templating.render import RenderedEmail, render_email
from needlecast.templating.tokens import tokens_in

HTML_WARN_BYTES = 100 * 1024
_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_PLACEHOLDER = re.compile(r"change[ -]?me", re.IGNORECASE)


def relative(workspace: Workspace, path: Path) -> str:
    """`path` relative to the workspace root, as findings name files."""
    try:
        return str(path.resolve().relative_to(workspace.root.resolve()))
    except ValueError:
        return str(path)


def _line_of(path: Path, needle: str | re.Pattern[str]) -> int:
    """1-based line of the first match of `needle` in `path` (1 when absent or unreadable)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 1
    for number, line in enumerate(lines, start=1):
        if needle.search(line) if isinstance(needle, re.Pattern) else needle in line:
            return number
    return 1


def claim_findings(file: str, text: str, first_line: int = 1) -> list[Finding]:
    """Risky-claim findings in `text` (Jinja comments blanked out, line numbers kept), its first line
    being line `first_line` of `file`."""
    text = _JINJA_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return [
        Finding(file, m.line, m.rule.rule, m.rule.severity, f'{m.rule.message}: "{m.text}"', m.rule.fix)
        for m in find_claims(text, first_line)
    ]


class _ImageAltChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.missing = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img" and not (dict(attrs).get("alt") or "").strip():
            self.missing += 1


def health_terms(vocabulary: Vocabulary) -> list[re.Pattern[str]]:
    # The concerns' names, not their topic keywords: "collagen" or "glow" in a subject reveals nothing.
    terms = {t for c in vocabulary.concerns for t in (c.name, *c.synonyms)}
    return [re.compile(r"(?<![\w-])" + re.escape(t) + r"(?![\w-])", re.IGNORECASE) for t in sorted(terms)]


def rendered_findings(
    rendered: RenderedEmail,
    *,
    html_file: Path,
    text_file: Path,
    postal_address: str,
    vocabulary: Vocabulary,
    workspace: Workspace,
    subject_line: int | None = None,
) -> list[Finding]:
    """Mechanics findings for one rendered variant (see the module contract)."""
    html_rel, text_rel = relative(workspace, html_file), relative(workspace, text_file)
    found: list[Finding] = []
    for part, body, rel in (("HTML", rendered.html, html_rel), ("text", rendered.text, text_rel)):
        if "unsubscribe_url" not in tokens_in(body):
            found.append(
                Finding(
                    rel,
                    1,
                    "missing-unsubscribe",
                    ERROR,
                    f"the {part} part has no unsubscribe link",
                    "extend the base layout, or add {{ unsubscribe_url }} to the footer",
                )
            )
        if postal_address and postal_address not in body:
            found.append(
                Finding(
                    rel,
                    1,
                    "missing-postal-address",
                    ERROR,
                    f"the {part} part does not show the clinic's postal address",
                    "extend the base layout, or add {{ clinic.postal_address }} to the footer",
                )
            )
    size = len(rendered.html.encode("utf-8"))
    if size > HTML_WARN_BYTES:
        found.append(
            Finding(
                html_rel,
                1,
                "html-too-large",
                WARNING,
                f"HTML is {size / 1024:.0f} KB; Gmail clips messages over 102 KB",
                "shorten the email or move long content to the website",
            )
        )
    checker = _ImageAltChecker()
    checker.feed(rendered.html)
    if checker.missing:
        found.append(
            Finding(
                html_rel,
                _line_of(html_file, "<img"),
                "image-without-alt",
                WARNING,
                f"{checker.missing} image(s) without alt text",
                'give every <img> an alt="..." describing it (images are often blocked)',
            )
        )
    found += subject_findings(
        rendered.subject,
        rendered.preheader,
        file=text_rel,
        subject_line=subject_line or _line_of(text_file, "block subject"),
        preheader_line=_line_of(text_file, "block preheader"),
        vocabulary=vocabulary,
    )
    found += message_findings(
        rendered,
        html_file=html_rel,
        text_file=text_rel,
        image_line=_line_of(html_file, "<img"),
        subject_line=subject_line or _line_of(text_file, "block subject"),
        preheader_line=_line_of(text_file, "block preheader"),
        settings=workspace.settings,
    )
    return found


def subject_findings(
    subject: str | None,
    preheader: str | None,
    *,
    file: str,
    subject_line: int,
    preheader_line: int,
    vocabulary: Vocabulary,
) -> list[Finding]:
    """An empty subject or one mostly in capitals, and a health concern named in the subject or preheader
    (rendered text); None skips that part."""
    found: list[Finding] = []
    letters = [c for c in subject or "" if c.isalpha()]
    if subject is None:
        pass
    elif not subject.strip():
        found.append(
            Finding(
                file,
                subject_line,
                "subject-empty",
                ERROR,
                "the subject is empty",
                "write a subject in {% block subject %} or in the campaign step",
            )
        )
    elif len(letters) >= 4 and sum(c.isupper() for c in letters) * 2 > len(letters):
        found.append(
            Finding(
                file,
                subject_line,
                "subject-all-caps",
                WARNING,
                "the subject is mostly capitals",
                "use sentence case; all-caps subjects read as shouting and trip spam filters",
            )
        )
    for label, value, line in (("subject", subject, subject_line), ("preheader", preheader, preheader_line)):
        if value is None:
            continue
        for pattern in health_terms(vocabulary):
            hit = pattern.search(value)
            if hit:
                found.append(
                    Finding(
                        file,
                        line,
                        "health-term-in-subject",
                        WARNING,
                        f'the {label} names a health concern ("{hit.group(0)}"), '
                        "which shows on lock screens and in notifications",
                        f"keep the {label} neutral and name the concern in the body",
                    )
                )
                break
    return found


def config_findings(workspace: Workspace) -> list[Finding]:
    path = workspace.config_path
    rel = relative(workspace, path)
    clinic = workspace.settings.clinic
    found: list[Finding] = []
    for key in ("name", "postal_address", "website", "booking_url", "sender_email", "sender_name"):
        value = getattr(clinic, key)
        if not value or _PLACEHOLDER.search(value):
            found.append(
                Finding(
                    rel,
                    _line_of(path, re.compile(rf"^\s*{key}\s*=")),
                    "config-placeholder",
                    ERROR,
                    f"[clinic] {key} is still a placeholder ({value!r})",
                    f"set [clinic] {key} to the clinic's real value",
                )
            )
    if not _PLACEHOLDER.search(clinic.sender_email):
        try:
            validate_email(clinic.sender_email, check_deliverability=False)
        except EmailNotValidError as err:
            found.append(
                Finding(
                    rel,
                    _line_of(path, "sender_email"),
                    "config-invalid-sender",
                    ERROR,
                    f"[clinic] sender_email is not a valid address: {err}",
                    "use an address on a domain authenticated in SendGrid",
                )
            )
    if _PLACEHOLDER.search(workspace.settings.tracking.public_base_url):
        found.append(
            Finding(
                rel,
                _line_of(path, "public_base_url"),
                "config-placeholder",
                ERROR,
                "[tracking] public_base_url is still a placeholder",
                "set it to the public HTTPS address of `needlecast web`",
            )
        )
    tracking = workspace.settings.tracking
    if (
        workspace.settings.delivery.backend == "sendgrid"
        and not (os.environ.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or tracking.webhook_public_key)
        and not tracking.accept_unsigned_events
    ):
        found.append(
            Finding(
                rel,
                _line_of(path, "[tracking]"),
                "config-webhook-unsigned",
                WARNING,
                "no SendGrid webhook verification key: the web app refuses SendGrid's events (bounces, "
                "unsubscribes and complaints are not recorded)",
                'turn on "Signed Event Webhook" in SendGrid, copy its verification key into '
                "SENDGRID_WEBHOOK_PUBLIC_KEY or [tracking] webhook_public_key",
            )
        )
    return found


def lint_workspace(
    workspace: Workspace, templates: Sequence[str] | None = None, articles: Sequence[str] | None = None
) -> list[Finding]:
    """Every finding in the content, the templates and the config (see the module contract); `templates` and
    `articles` (ids) narrow the renderings and the articles checked to a campaign's own.

    One problem never hides the others: an article that cannot be parsed is a finding and the templates'
    sources are still checked; a template that does not render is a finding and the others still render.
    """
    found: list[Finding] = list(config_findings(workspace))
    vocabulary = load_vocabulary_for(workspace)
    library = load_library_for(workspace, vocabulary)
    for article_id, path in library.paths.items():
        if articles is not None and article_id not in articles:
            continue
        file = relative(workspace, path)
        problem = library.problems.get(article_id)
        if problem is not None:
            found.append(
                Finding(
                    file,
                    1,
                    "content-unparsable",
                    ERROR,
                    str(problem),
                    "give the article headings and 'Title: body' benefit paragraphs (`needlecast content list`)",
                )
            )
            continue
        found += claim_findings(file, path.read_text(encoding="utf-8-sig"))
        for section in library.articles[article_id].sections:
            if section.review:
                found.append(
                    Finding(
                        file,
                        section.line,
                        "content-tag-review",
                        WARNING,
                        f"'{section.title}': {section.review}",
                        f"check `needlecast content show {article_id} --why`; to decide, set "
                        f"{article_id}: {{{section.slug}: [...]}} in content/tags.yaml",
                    )
                )

    for source in sorted(workspace.templates_dir.rglob("*")):
        if source.suffix in (".html", ".txt") and source.is_file():
            found += claim_findings(relative(workspace, source), source.read_text(encoding="utf-8"))
    rendered_with = [a for a in library.articles.values() if articles is None or a.id in articles]
    if not rendered_with:
        return sorted(set(found))
    return sorted(set(found + _rendered_workspace_findings(workspace, vocabulary, rendered_with, templates)))


def _rendered_workspace_findings(
    workspace: Workspace, vocabulary: Vocabulary, rendered_with: list[Article], templates: Sequence[str] | None
) -> list[Finding]:
    """Every template rendered for every article and variant: its mechanics and deliverability findings, and
    SpamAssassin's score of each distinct message."""
    found: list[Finding] = []

    env = build_environment(workspace.templates_dir)
    messages: dict[tuple[str, str], bytes] = {}
    for name in templates or email_templates(workspace.templates_dir):
        html_file, text_file = workspace.templates_dir / f"{name}.html", workspace.templates_dir / f"{name}.txt"
        for article, concern in product(rendered_with, variant_concerns(vocabulary)):
            context = email_context(article, vocabulary, workspace.settings.clinic, concern)
            try:
                rendered = render_email(env, name, context)
            except TemplateProblem as err:
                found.append(
                    Finding(
                        relative(workspace, Path(err.template or html_file)),
                        err.line or 1,
                        "template-error",
                        ERROR,
                        str(err),
                        "fix the template",
                    )
                )
                continue
            found += rendered_findings(
                rendered,
                html_file=html_file,
                text_file=text_file,
                postal_address=workspace.settings.clinic.postal_address,
                vocabulary=vocabulary,
                workspace=workspace,
            )
            messages[(relative(workspace, html_file), f"{article.id}/{concern}")] = sample_eml(workspace, rendered)
    return sorted(set(found + scored_findings(workspace, messages)))


def scored_findings(
    workspace: Workspace, messages: dict[tuple[str, str], bytes], lines: dict[tuple[str, str], int] | None = None
) -> list[Finding]:
    """SpamAssassin's verdict on each rendered message, keyed (file, variant): a `spam-score` finding (at
    `lines[key]`, else line 1) per message scoring 2.0 or more, or one `spam-check-unavailable` warning when
    SpamAssassin is missing or fails (never a silent pass)."""
    if not messages:
        return []
    keys = {f"{i}": key for i, key in enumerate(messages)}
    try:
        scores = score_messages({i: messages[key] for i, key in keys.items()})
    except (SpamAssassinMissing, SpamAssassinFailed) as err:
        return [
            Finding(
                relative(workspace, workspace.templates_dir),
                1,
                "spam-check-unavailable",
                WARNING,
                f"the emails were not scored for spam: {err}",
                "install SpamAssassin on this computer (on Debian or Ubuntu: the spamassassin package)",
            )
        ]
    found: list[Finding] = []
    for i, (file, variant) in keys.items():
        line = (lines or {}).get((file, variant), 1)
        found += spam_findings(scores[i], html_file=file, variant=variant, line=line)
    return found


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == ERROR for f in findings)
