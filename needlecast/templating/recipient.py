"""Per-recipient token values: first name (with the configured fallback) and signed links."""

from __future__ import annotations

from needlecast import signing
from needlecast.config import Settings
from needlecast.errors import ConfigurationError

_HTML_SPECIAL = set("&<>\"' ")


def link_base(settings: Settings) -> str:
    """`[tracking] public_base_url` without a trailing slash; refused if it holds characters that would need
    escaping in HTML (the link tokens go into HTML unescaped)."""
    base = settings.tracking.public_base_url.rstrip("/")
    if _HTML_SPECIAL.intersection(base):
        raise ConfigurationError(f"[tracking] public_base_url {base!r} must be a plain URL without "
                                 "spaces, quotes, '&', '<' or '>'")
    return base


def recipient_values(
    settings: Settings, secret: bytes, contact_id: int, campaign: str, first_name: str | None
) -> dict[str, str]:
    """The values of every token for one recipient of `campaign` (strings, ready for substitution).

    Both links carry the same signed "manage" token (one HMAC per recipient).
    """
    name = " ".join(first_name.split()) if first_name else ""
    token = signing.sign(secret, signing.MANAGE, contact_id, campaign)
    base = link_base(settings)
    return {
        "first_name": name or settings.templates.first_name_fallback,
        "unsubscribe_url": f"{base}/u/{token}",
        "preferences_url": f"{base}/p/{token}",
    }


def list_unsubscribe_headers(settings: Settings, unsubscribe: str) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers: the HTTPS one-click URL, the mailto when configured, and the POST hint."""
    targets = [f"<{unsubscribe}>"]
    if settings.clinic.unsubscribe_mailto:
        targets.append(f"<mailto:{settings.clinic.unsubscribe_mailto}?subject=unsubscribe>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
