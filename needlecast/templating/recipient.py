"""Per-recipient token values: first name (with the configured fallback) and signed links."""

from __future__ import annotations

import dataclasses

from needlecast import signing
from needlecast.config import Settings
from needlecast.errors import ConfigurationError
from needlecast.templating.render import RenderedEmail
from needlecast.templating.tokens import TOKENS

_HTML_SPECIAL = set("&<>\"' ")


def link_base(settings: Settings) -> str:
    """`[tracking] public_base_url` without a trailing slash; refused if it holds characters that would need
    escaping in HTML (the link tokens go into HTML unescaped)."""
    base = settings.tracking.public_base_url.rstrip("/")
    if _HTML_SPECIAL.intersection(base):
        raise ConfigurationError(
            f"[tracking] public_base_url {base!r} must be a plain URL without spaces, quotes, '&', '<' or '>'"
        )
    return base


class RecipientValues:
    """The values of every token for recipients of one campaign (strings, ready for substitution).

    Settings are read and checked once, when it is made; each call costs one HMAC. Both links carry the
    same signed "manage" token.

    Two forms: `__call__` gives the links whole, for filling in a rendering here (previews, `.eml`);
    `for_request` gives the token alone, for a provider request whose rendering has its links spelled
    out up to the token (`with_links`), so that each recipient's substitutions carry the token once
    instead of two full URLs.
    """

    def __init__(self, settings: Settings, secret: bytes, campaign: str) -> None:
        base = link_base(settings)
        self._unsubscribe = f"{base}/u/"
        self._preferences = f"{base}/p/"
        self._fallback = settings.templates.first_name_fallback
        self._sign = signing.Signer(secret, signing.MANAGE, campaign)

    def _first_name(self, first_name: str | None) -> str:
        return (" ".join(first_name.split()) or self._fallback) if first_name else self._fallback

    def __call__(self, contact_id: int, first_name: str | None) -> dict[str, str]:
        token = self._sign(contact_id)
        return {
            "first_name": self._first_name(first_name),
            "unsubscribe_url": self._unsubscribe + token,
            "preferences_url": self._preferences + token,
        }

    def for_request(self, contact_id: int, first_name: str | None) -> tuple[dict[str, str], str]:
        """The values for a rendering made `with_links` (first name, and the signed token as `manage`),
        and the person's unsubscribe URL (for the List-Unsubscribe header)."""
        token = self._sign(contact_id)
        return {"first_name": self._first_name(first_name), "manage": token}, self._unsubscribe + token

    def with_links(self, rendered: RenderedEmail) -> RenderedEmail:
        """`rendered` with its link tokens spelled out up to the person's token: `%%unsubscribe_url%%`
        becomes `BASE/u/%%manage%%`, `%%preferences_url%%` becomes `BASE/p/%%manage%%` (one spelling
        for text and HTML: the base is checked to need no escaping)."""
        unsubscribe, preferences = TOKENS["unsubscribe_url"].text, TOKENS["preferences_url"].text
        manage = TOKENS["manage"].text

        def spelled(part: str) -> str:
            return part.replace(unsubscribe, self._unsubscribe + manage).replace(
                preferences, self._preferences + manage
            )

        return dataclasses.replace(
            rendered,
            subject=spelled(rendered.subject),
            preheader=spelled(rendered.preheader),
            html=spelled(rendered.html),
            text=spelled(rendered.text),
        )


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
    return {
        "List-Unsubscribe": f"<{unsubscribe}>{list_unsubscribe_targets(settings)}",
        "List-Unsubscribe-Post": ONE_CLICK,
    }
