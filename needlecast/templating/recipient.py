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


class RecipientValues:
    """The values of every token for recipients of one campaign (strings, ready for substitution).

    Settings are read and checked once, when it is made; each call costs one HMAC. Both links carry the
    same signed "manage" token.
    """

    def __init__(self, settings: Settings, secret: bytes, campaign: str) -> None:
        base = link_base(settings)
        self._unsubscribe = f"{base}/u/"
        self._preferences = f"{base}/p/"
        self._fallback = settings.templates.first_name_fallback
        self._sign = signing.Signer(secret, signing.MANAGE, campaign)

    def __call__(self, contact_id: int, first_name: str | None) -> dict[str, str]:
        token = self._sign(contact_id)
        return {
            "first_name": (" ".join(first_name.split()) or self._fallback) if first_name else self._fallback,
            "unsubscribe_url": self._unsubscribe + token,
            "preferences_url": self._preferences + token,
        }


def recipient_values(
    settings: Settings, secret: bytes, contact_id: int, campaign: str, first_name: str | None
) -> dict[str, str]:
    """The values of every token for one recipient of `campaign` (see `RecipientValues`)."""
    return RecipientValues(settings, secret, campaign)(contact_id, first_name)


def list_unsubscribe_targets(settings: Settings) -> str:
    """What follows the HTTPS URL in `List-Unsubscribe`: the mailto target when one is configured."""
    mailto = settings.clinic.unsubscribe_mailto
    return f", <mailto:{mailto}?subject=unsubscribe>" if mailto else ""


ONE_CLICK = "List-Unsubscribe=One-Click"


def list_unsubscribe_headers(settings: Settings, unsubscribe: str) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers: the HTTPS one-click URL, the mailto when configured, and the POST hint."""
    return {"List-Unsubscribe": f"<{unsubscribe}>{list_unsubscribe_targets(settings)}",
            "List-Unsubscribe-Post": ONE_CLICK}
