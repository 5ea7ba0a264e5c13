"""Build an RFC 5322 message (.eml) of one recipient's copy: multipart/alternative, text first, then HTML."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from needlecast.templating.render import RenderedEmail
from needlecast.templating.tokens import apply_substitutions

# Headers are written up to RFC 5322's hard limit rather than folded to 78 characters: folded, a
# List-Unsubscribe header with a long signed URL came out as RFC 2047 encoded-words, which no client reads
# as a URL (RFC 2369). The bodies keep their 7-bit transfer encodings, made under the default policy.
_HEADERS_UNFOLDED = policy.default.clone(max_line_length=998)


def build_eml(
    rendered: RenderedEmail,
    substitutions: Mapping[str, str],
    *,
    sender: tuple[str, str],
    recipient: str,
    reply_to: str = "",
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """The recipient's copy with tokens filled in, as bytes ready to write to a .eml file."""
    message = EmailMessage()
    message["Subject"] = apply_substitutions(rendered.subject, substitutions)
    message["From"] = formataddr(sender)
    message["To"] = recipient
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender[1].rpartition("@")[2] or None)
    for name, value in (headers or {}).items():
        message[name] = apply_substitutions(value, substitutions)
    message.set_content(apply_substitutions(rendered.text, substitutions), subtype="plain", charset="utf-8")
    message.add_alternative(apply_substitutions(rendered.html, substitutions), subtype="html", charset="utf-8")
    return message.as_bytes(policy=_HEADERS_UNFOLDED)
