"""Contact actions: suppress, erase, record consent, start a double opt-in.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.audience.contacts import get_contact
from needlecast.audience.suppression import erase, suppress
from needlecast.errors import InvalidRequest

if TYPE_CHECKING:
    from needlecast.audience.consent import Purpose


MANUAL_REASONS = ("unsubscribed", "hard_bounce", "complaint", "manual")


def suppress_contact(engine: Engine, actor: Actor, email: str, reason: str, source: str) -> bool:
    """Suppress an address (a contact or not); True when newly suppressed."""
    require(actor, "contacts.suppress")
    if reason not in MANUAL_REASONS:
        raise InvalidRequest(f"'{reason}' is not one of: {', '.join(MANUAL_REASONS)}")
    with engine.begin() as conn:
        try:
            target = f"contact:#{get_contact(conn, email)['id']}"
        except LookupError:
            target = "address (not a contact)"
        added = suppress(conn, email, reason, source=source)
        audit.record(conn, actor, "contact.suppressed", target, reason=reason, new=added)
    return added


def erase_contact(engine: Engine, actor: Actor, email: str) -> bool:
    """Erase a person (see `audience.suppression.erase`); True when a contact existed."""
    require(actor, "contacts.erase")
    with engine.begin() as conn:
        try:
            target = f"contact:#{get_contact(conn, email)['id']}"
        except LookupError:
            target = "address (not a contact)"
        existed = erase(conn, email)
        audit.record(conn, actor, "contact.erased", target)
    return existed


def record_contact_consent(
    engine: Engine, actor: Actor, email: str, purpose: Purpose, granted: bool, *, source: str, wording: str = ""
) -> int:
    """Record consent given or withdrawn (`audience.consent.record_consent`) for the contact with `email`;
    audited as `contact.consent` by contact id. Returns the id; `NotFound` for an unknown address."""
    from needlecast.audience.consent import record_consent

    require(actor, "contacts.write")
    with engine.begin() as conn:
        contact_id = int(get_contact(conn, email)["id"])
        record_consent(conn, contact_id, purpose, granted, source=source, wording_version=wording)
        audit.record(
            conn, actor, "contact.consent", f"contact:#{contact_id}", purpose=purpose, granted=granted, source=source
        )
    return contact_id


def start_opt_in(engine: Engine, actor: Actor, email: str, secret: bytes, *, source: str) -> str:
    """Start double opt-in for the contact with `email` (pending, marketing consent off until confirmed);
    audited as `contact.opt_in_started`. Returns the signed confirmation token."""
    from needlecast.audience.consent import start_double_opt_in

    require(actor, "contacts.write")
    with engine.begin() as conn:
        contact_id = int(get_contact(conn, email)["id"])
        token = start_double_opt_in(conn, contact_id, secret, source=source)
        audit.record(conn, actor, "contact.opt_in_started", f"contact:#{contact_id}", source=source)
    return token
