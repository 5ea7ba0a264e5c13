"""Pre-send deliverability checks of one rendered email (part of `needlecast lint`, the review page and the gate).

Contract: `message_findings(rendered, ...)` returns the findings of one rendered variant:
- `html-clipped` (error): an HTML part over 102 KB, which Gmail clips (hiding the footer's unsubscribe link);
- `image-heavy` (warning): fewer than `WORDS_PER_IMAGE` words of text per image;
- `link-unknown-host` (warning): a link to a host that is neither the clinic's (its website, booking page,
  tracking address and sender domain, with their subdomains) nor in `[deliverability] link_hosts`;
- `link-shortener` (error): a link through a URL shortener (bit.ly and the like), which spam filters distrust;
- `subject-too-long` (warning, over 70 characters), `subject-trigger` (warning: free, guaranteed, act now, or a
  price), `preheader-missing` (warning);
- `text-part-incomplete` (warning): the text part lacks much of the HTML part's wording.
`spam_findings(scored, ...)` turns SpamAssassin scores (`needlecast.spamcheck`) into `spam-score` findings: a
warning from 2.0, an error from 5.0, listing the rules that hit.
Recipient tokens (`%%unsubscribe_url%%`) in links stand for the clinic's signed links and are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser
from urllib.parse import urlsplit

from needlecast.config import Settings
from needlecast.findings import ERROR, WARNING, Finding
from needlecast.spamcheck import ERROR_SCORE, WARN_SCORE, SpamScore
from needlecast.templating.render import RenderedEmail

GMAIL_CLIP_BYTES = 102 * 1024
WORDS_PER_IMAGE = 60
SUBJECT_MAX_CHARS = 70
TEXT_PART_MIN_SHARE = 0.8  # of the HTML part's distinct words that the text part must have
SHORTENERS = frozenset(
    {
        *("bit.ly", "bitly.com", "tinyurl.com", "goo.gl", "ow.ly", "t.co", "is.gd", "buff.ly", "rebrand.ly"),
        *("cutt.ly", "shorturl.at", "tiny.cc", "rb.gy", "bl.ink", "lnkd.in", "s.id", "t.ly", "v.gd", "qr.ae"),
        *("soo.gd", "short.io", "shorte.st", "adf.ly"),
    }
)
_TRIGGERS = re.compile(r"\b(?:free|guaranteed?|act now)\b", re.IGNORECASE)
_PRICE = re.compile(
    r"[£$€¥]\s?\d|\d(?:[\d,.]*\d)?\s?(?:[£$€]|\b(?:GBP|EUR|USD|pounds?|euros?|dollars?)\b)", re.IGNORECASE
)
_WORD = re.compile(r"[^\W\d_]{4,}")
_TOKEN = re.compile(r"%%[\w.]+%%")
_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+", re.IGNORECASE)
_SKIPPED_TAGS = frozenset({"style", "script", "title", "head"})
# Why a SpamAssassin rule hit, in the clinic's words, for the rules ordinary newsletters trip.
_RULE_HINTS = {
    "HTML_IMAGE_ONLY": "write more text around the images (a logo with a few lines of text reads as an image ad)",
    "HTML_IMAGE_RATIO": "add text or remove images: the email is mostly pictures",
    "MIME_HTML_ONLY": "give the email a text part",
    "HTML_SHORT_LINK_IMG": "put text beside linked images",
    "SUBJ_ALL_CAPS": "write the subject in sentence case",
    "HTML_FONT_LOW_CONTRAST": "use text colours that contrast with the background",
    "URI_": "link only to the clinic's own website",
}


class _HtmlFacts(HTMLParser):
    """The visible words, images (and how many lack alt text) and link targets of an HTML part."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.words: list[str] = []
        self.images = 0
        self.links: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        values = dict(attrs)
        if tag == "img":
            self.images += 1
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.words += data.split()


def clinic_hosts(settings: Settings) -> set[str]:
    """The hosts a link may point at: the clinic's own (see the module contract) and `link_hosts`."""
    clinic = settings.clinic
    urls = (clinic.website, clinic.booking_url, settings.tracking.public_base_url, clinic.logo_url)
    hosts = {(urlsplit(u).hostname or "").lower() for u in urls if u}
    hosts.add(clinic.sender_email.rpartition("@")[2].lower())
    hosts |= {h.strip().lower() for h in settings.deliverability.link_hosts}
    return {h for h in hosts if h}


def _host_allowed(host: str, allowed: set[str]) -> bool:
    return any(host == a or host.endswith("." + a) for a in allowed)


def _link_findings(links: Iterable[str], file: str, settings: Settings) -> list[Finding]:
    allowed = clinic_hosts(settings)
    found: list[Finding] = []
    for link in dict.fromkeys(links):
        if link.startswith("%%") or not link.lower().startswith(("http://", "https://")):
            continue  # a recipient token (the clinic's signed links), mailto:, tel: or an anchor
        host = (urlsplit(link).hostname or "").lower()
        if host in SHORTENERS:
            found.append(
                Finding(
                    file,
                    1,
                    "link-shortener",
                    ERROR,
                    f"a link goes through the URL shortener {host}, which spam filters distrust",
                    "link to the full address on the clinic's website instead",
                )
            )
        elif not _host_allowed(host, allowed):
            found.append(
                Finding(
                    file,
                    1,
                    "link-unknown-host",
                    WARNING,
                    f"a link goes to {host}, which is not the clinic's website",
                    f"link to the clinic's own pages, or add {host!r} to [deliverability] link_hosts in "
                    "needlecast.toml if it is a site you trust",
                )
            )
    return found


def subject_line_findings(subject: str, file: str, line: int) -> list[Finding]:
    """`subject-too-long` and `subject-trigger` for one rendered subject line."""
    found: list[Finding] = []
    subject = subject.strip()
    if len(subject) > SUBJECT_MAX_CHARS:
        found.append(
            Finding(
                file,
                line,
                "subject-too-long",
                WARNING,
                f"the subject has {len(subject)} characters; phones show about {SUBJECT_MAX_CHARS}",
                f"shorten the subject to {SUBJECT_MAX_CHARS} characters or fewer",
            )
        )
    trigger = _TRIGGERS.search(subject) or _PRICE.search(subject)
    if trigger:
        found.append(
            Finding(
                file,
                line,
                "subject-trigger",
                WARNING,
                f'the subject says "{trigger.group(0)}", a phrase spam filters score against',
                "leave offers, prices and promises out of the subject; put them in the body",
            )
        )
    return found


def _subject_findings(rendered: RenderedEmail, file: str, subject_line: int, preheader_line: int) -> list[Finding]:
    found = subject_line_findings(rendered.subject, file, subject_line)
    if not rendered.preheader.strip():
        found.append(
            Finding(
                file,
                preheader_line,
                "preheader-missing",
                WARNING,
                "the email has no preheader (the line inboxes show after the subject)",
                "write one sentence in {% block preheader %} that says what the email offers",
            )
        )
    return found


def message_findings(
    rendered: RenderedEmail,
    *,
    html_file: str,
    text_file: str,
    image_line: int,
    subject_line: int,
    preheader_line: int,
    settings: Settings,
) -> list[Finding]:
    """The deliverability findings of one rendered variant (see the module contract)."""
    found: list[Finding] = []
    size = len(rendered.html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        found.append(
            Finding(
                html_file,
                1,
                "html-clipped",
                ERROR,
                f"the HTML part is {size / 1024:.0f} KB: Gmail clips it after 102 KB, hiding the rest and the "
                "unsubscribe link",
                "shorten the email, or link to the rest on the clinic's website",
            )
        )
    facts = _HtmlFacts()
    facts.feed(rendered.html)
    facts.close()
    if facts.images and len(facts.words) / facts.images < WORDS_PER_IMAGE:
        found.append(
            Finding(
                html_file,
                image_line,
                "image-heavy",
                WARNING,
                f"{facts.images} image(s) and {len(facts.words)} words: spam filters distrust emails that are "
                "mostly pictures, and many readers see none of them",
                f"write at least {WORDS_PER_IMAGE} words per image, or use fewer images",
            )
        )
    found += _link_findings(facts.links, html_file, settings)
    found += _link_findings(_TEXT_URL.findall(rendered.text), text_file, settings)
    found += _subject_findings(rendered, text_file, subject_line, preheader_line)
    html_words = {w.lower() for w in _WORD.findall(_TOKEN.sub(" ", " ".join(facts.words)))}
    text_words = {w.lower() for w in _WORD.findall(_TOKEN.sub(" ", rendered.text))}
    lacking = sorted(html_words - text_words)
    if html_words and len(lacking) > (1 - TEXT_PART_MIN_SHARE) * len(html_words):
        found.append(
            Finding(
                text_file,
                1,
                "text-part-incomplete",
                WARNING,
                f"the text part lacks {len(lacking)} of the {len(html_words)} words of the HTML part "
                f"(e.g. {', '.join(lacking[:5])}); readers and spam filters compare the two",
                "write the same message in the .txt file as in the .html file",
            )
        )
    return found


def spam_findings(scored: SpamScore, *, html_file: str, variant: str, line: int = 1) -> list[Finding]:
    """A `spam-score` finding when `scored` reaches the warning (2.0) or error (5.0) score, else none."""
    if scored.score < WARN_SCORE:
        return []
    severity = ERROR if scored.score >= ERROR_SCORE else WARNING
    hits = scored.hits()
    rules = ", ".join(f"{name} {points:+.1f}" for name, points in hits) or "none listed"
    hints = sorted({hint for name, _ in hits for prefix, hint in _RULE_HINTS.items() if name.startswith(prefix)})
    return [
        Finding(
            html_file,
            line,
            "spam-score",
            severity,
            f"SpamAssassin scores the {variant} email {scored.score:.1f} (a warning from {WARN_SCORE:.0f}, "
            f"spam from {ERROR_SCORE:.0f}); rules that hit: {rules}",
            "; ".join(hints) or "look up each rule listed on SpamAssassin's website and change what it points at",
        )
    ]
