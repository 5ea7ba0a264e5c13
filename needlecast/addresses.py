"""Email addresses: validation and normalisation, the keyed hash, masking for display.

Validation is email-validator's (no DNS lookups). Because a million calls cost ~25 s, plain ASCII
addresses of the everyday shape take a fast path first: a strict pattern that accepts only addresses
email-validator also accepts (dot-atom local part of at most 64 characters, letter-digit-hyphen domain
labels, an alphabetic TLD that is not a special-use name, at most 254 characters). Anything else, and
anything the pattern rejects, goes to email-validator, whose message becomes the reject reason. A test
compares the two on a corpus.

Normalisation lowercases the whole address: every mailbox provider of note treats the local part
case-insensitively, and two rows differing only in case are the same person for consent purposes.

A module of its own below every package (it imports only `errors`): contacts, console users, bookings and
webhook events all name people by address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from needlecast.errors import InvalidAddress

_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FAST = re.compile(rf"^(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>(?:{_LABEL}\.)+(?P<tld>[a-z]{{2,63}}))$")
_SPECIAL = frozenset(SPECIAL_USE_DOMAIN_NAMES)


def normalise_email(raw: str) -> str:
    """The normalised address, or `InvalidAddress` with email-validator's reason."""
    candidate = raw.strip().lower()
    if not candidate:
        raise InvalidAddress("the email address is empty")
    match = _FAST.match(candidate)
    if (
        match
        and len(candidate) <= 254
        and len(match.group("local")) <= 64
        and match.group("tld") not in _SPECIAL  # the pattern needs a dot, so a special name can only be the TLD
        and "--" not in match.group("domain")  # IDNA reserves "xx--" labels: email-validator decides those
    ):
        return candidate
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as err:
        raise InvalidAddress(str(err)) from err
    return result.normalized.lower()


def email_hash(key: bytes, normalised: str) -> str:
    """HMAC-SHA256 of a normalised address under the store's hash key, as hex."""
    return hmac.new(key, normalised.encode("utf-8"), hashlib.sha256).hexdigest()


def email_hasher(key: bytes) -> Callable[[str], str]:
    """`email_hash` under one key for many addresses (an import hashes a million): the key is set up once
    and each address costs a copy of the keyed state."""
    keyed = hmac.new(key, digestmod=hashlib.sha256)

    def hashed(normalised: str) -> str:
        mac = keyed.copy()
        mac.update(normalised.encode("utf-8"))
        return mac.hexdigest()

    return hashed


def mask_email(address: str) -> str:
    """'ana.lopez@example.com' -> 'a***@e***.com', for lists shown to people."""
    local, _, domain = address.partition("@")
    host, _, tld = domain.rpartition(".")
    return f"{local[:1]}***@{host[:1]}***.{tld}" if host else f"{local[:1]}***@***"
