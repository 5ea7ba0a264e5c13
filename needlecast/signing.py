"""Signed tokens for links in emails: unsubscribe, preferences and double opt-in confirmation.

Format: `base64url(payload) "." base64url(HMAC-SHA256(secret, kind "|" payload)[:16])`, where the payload is
`contact_id:campaign:expires` (`expires` a Unix time, 0 for never). No address or name is in a token, so a
URL carrying one reveals nothing about the person. The kind is bound into the MAC, so an unsubscribe token
cannot be replayed as a confirmation token.

Contract: `verify` returns the payload of a well-formed, authentic, unexpired token of the expected kind and
raises `TokenInvalid` otherwise (compared in constant time).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from needlecast.errors import TokenInvalid

# One "manage" token serves both the unsubscribe and the preference link of an email: both are the same
# capability (change what this person receives), and one HMAC per recipient keeps a million-recipient send
# cheap. Confirmation tokens are a different kind, so neither can stand in for the other.
MANAGE = "manage"
UNSUBSCRIBE = MANAGE
PREFERENCES = MANAGE
CONFIRM = "confirm"
_MAC_BYTES = 16


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    """Unpadded base64url (the same as `base64.urlsafe_b64encode` without "=", in fewer calls: a
    million-recipient send signs a million tokens)."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


_BLOCK = 64  # SHA-256 block size in bytes


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as err:
        raise TokenInvalid("token is not valid base64") from err


@dataclass(frozen=True)
class TokenPayload:
    contact_id: int
    campaign: str
    expires: int


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's inner and outer hash states for `secret` (RFC 2104), computed once per secret."""
    key = hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))


def _mac(secret: bytes, kind: str, payload: bytes) -> bytes:
    """HMAC-SHA256(secret, kind "|" payload), truncated. The same value as `hmac.digest`, from hash states
    keyed once: OpenSSL's one-shot HMAC sets up a context on every call, twice the cost per token."""
    inner, outer = _keyed(secret)
    inner = inner.copy()
    inner.update(kind.encode() + b"|" + payload)
    outer = outer.copy()
    outer.update(inner.digest())
    return outer.digest()[:_MAC_BYTES]


def sign(secret: bytes, kind: str, contact_id: int, campaign: str = "", ttl_seconds: int | None = None) -> str:
    """A token for `contact_id` (and `campaign`), valid forever or for `ttl_seconds`."""
    expires = int(time.time()) + ttl_seconds if ttl_seconds else 0
    payload = f"{int(contact_id)}:{campaign}:{expires}".encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, kind, payload))}"


class Signer:
    """`sign(secret, kind, contact_id, campaign)` for many contacts: never-expiring tokens of one kind and
    campaign, the same strings as `sign` gives. The HMAC's inner state has already taken `kind "|"`, so
    each token costs two small hash updates (a million-recipient send signs a million of them)."""

    def __init__(self, secret: bytes, kind: str, campaign: str = "") -> None:
        inner, self._outer = _keyed(secret)
        self._inner = inner.copy()
        self._inner.update(kind.encode() + b"|")
        self._suffix = f":{campaign}:0"

    def __call__(self, contact_id: int) -> str:
        payload = f"{int(contact_id)}{self._suffix}".encode()
        inner = self._inner.copy()
        inner.update(payload)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return f"{_b64(payload)}.{_b64(outer.digest()[:_MAC_BYTES])}"


def verify(secret: bytes, kind: str, token: str, *, now: float | None = None) -> TokenPayload:
    """The payload of an authentic token of `kind`; `TokenInvalid` for anything else."""
    body, dot, mac = token.partition(".")
    if not dot or not body or not mac:
        raise TokenInvalid("token is malformed")
    payload = _unb64(body)
    if not hmac.compare_digest(_unb64(mac), _mac(secret, kind, payload)):
        raise TokenInvalid("token signature does not match")
    try:
        contact, rest = payload.decode().split(":", 1)
        campaign, expires = rest.rsplit(":", 1)  # a campaign may hold ":" (a signup's is "signup:ID")
        parsed = TokenPayload(int(contact), campaign, int(expires))
    except (UnicodeDecodeError, ValueError) as err:
        raise TokenInvalid("token payload is malformed") from err
    if parsed.expires and (now if now is not None else time.time()) > parsed.expires:
        raise TokenInvalid("token has expired")
    return parsed
