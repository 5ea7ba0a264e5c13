"""The API's page cursors: opaque strings that say where the next page starts, and the patterns that
describe them in the OpenAPI document (so every cursor the document admits decodes to a position)."""

from __future__ import annotations

import base64

# A page's cursor is the position after which the next page starts, as unpadded base64url: a contact id as
# 8 bytes (11 characters, the first bit clear, so at most the id column's 2**63 - 1) and a suppression's hash as
# its 32 bytes (43 characters). The patterns say exactly that, so the document describes every cursor the API
# takes and any string that matches one decodes to a position: no other length, no trailing bytes, no number
# the database cannot hold. An empty cursor is the first page.
ID_CURSOR = r"^([A-Za-f][A-Za-z0-9_-]{9}[AEIMQUYcgkosw048])?$"
HASH_CURSOR = r"^([A-Za-z0-9_-]{42}[AEIMQUYcgkosw048])?$"
CURSOR_HELP = "Leave out for the first page; then pass `next_cursor` of the page before, as it was given"


def _encode(position: bytes) -> str:
    return base64.urlsafe_b64encode(position).decode().rstrip("=")


def _decode(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def id_cursor(contact_id: int) -> str:
    return _encode(contact_id.to_bytes(8, "big"))


def after_id(cursor: str | None) -> int:
    """The contact id a page starts after (0: the first page), from a cursor `ID_CURSOR` lets through."""
    return int.from_bytes(_decode(cursor), "big") if cursor else 0


def hash_cursor(email_hash: str) -> str:
    return _encode(bytes.fromhex(email_hash))


def after_hash(cursor: str | None) -> str:
    """The suppression hash a page starts after ("": the first page), from a cursor `HASH_CURSOR` lets through."""
    return _decode(cursor).hex() if cursor else ""
