"""Leads from the signup form: a request stored, a confirmation queued, consents recorded on confirmation.

Contract:
- `receive(conn, form, now)` is all the web request does with a valid form: it stores the submission as it
  came (`signup_intake`), the same one INSERT whatever the address, so every answer takes the same path and
  time. `take_received(conn, settings, now, limit)` (the scheduler's `confirmations` job) takes up to
  `limit` of them, each once, and applies `request_signup` to each (one that fails is dropped, logged by id,
  and never costs the others); it returns how many it took.
- `request_signup(conn, form, settings, now)` validates the form's values (`InvalidRequest` naming the field) and
  decides, without telling the caller which: a new address becomes a `pending` contact with no consent and
  no concerns yet; an existing one is left exactly as it is; a suppressed or erased address gets nothing at
  all (it stays suppressed). It returns a `Signup` with the contact id and the stored request, and whether a
  confirmation email should go (not to a suppressed address), or None when nothing is to be done. A
  confirmation to go is queued on the request (`confirmation = 'queued'`): the scheduler's `confirmations`
  job sends it (`audience.confirmations`), never the web request.
- Nothing a stranger submits changes a contact until the emailed link is followed: `apply_confirmation`
  then records the marketing consent and, if ticked, the consent to use the skin concern (health data),
  each with the form's wording version, its source (`form:NAME`), the time and the request's address hash,
  and sets the concerns and first name. Without the health-data consent the lead gets general content.
- With double opt-in off, a new address's request is applied at once (an existing contact still confirms).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from needlecast.addresses import email_hash, normalise_email
from needlecast.audience.consent import record_consent
from needlecast.audience.contacts import new_contact_row
from needlecast.config import SignupSettings
from needlecast.content.vocabulary import Vocabulary
from needlecast.errors import InvalidAddress, InvalidRequest, NeedlecastError, NotFound
from needlecast.store import confirmations as queue
from needlecast.store.helpers import hash_key, insert_new
from needlecast.store.schema import consent_events, contacts, signup_intake, signup_requests, suppressions

log = logging.getLogger("needlecast.audience")
FORM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
CONFIRM_PREFIX = "signup:"


@dataclass(frozen=True)
class SignupForm:
    email: str
    first_name: str
    concerns: tuple[str, ...]
    marketing: bool
    concern_consent: bool
    form: str
    address_hash: str


@dataclass(frozen=True)
class Signup:
    contact_id: int
    request_id: int
    email: str
    first_name: str
    send_confirmation: bool
    applied: bool  # single opt-in: already recorded


def parse_form(values: dict[str, Any], vocabulary: Vocabulary, address_hash: str) -> SignupForm:
    """The form's fields (urlencoded or JSON alike), validated; `InvalidRequest`/`InvalidAddress` name the
    field."""

    def text(name: str, limit: int) -> str:
        value = values.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise InvalidRequest(f"{name}: must be text")
        if len(value) > limit:
            raise InvalidRequest(f"{name}: longer than {limit} characters")
        return " ".join(value.split())

    def ticked(name: str) -> bool:
        value = values.get(name)
        return value is True or (isinstance(value, str) and value.lower() in ("1", "yes", "on", "true"))

    try:
        email = normalise_email(text("email", 320))
    except InvalidAddress as err:
        raise InvalidRequest(f"email: {err}") from None
    raw = values.get("concerns") or []
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise InvalidRequest("concerns: must be a list of concerns")
    unknown = [c for c in raw if c not in vocabulary.names]
    if unknown:
        raise InvalidRequest(f"concerns: '{unknown[0]}' is not one of {', '.join(vocabulary.names)}")
    form = text("form", 40) or "website"
    if not FORM_NAME.match(form):
        raise InvalidRequest("form: use lower-case letters, digits and - (at most 40)")
    if not ticked("marketing_consent"):
        raise InvalidRequest("marketing_consent: tick the box to agree to receive our emails")
    return SignupForm(
        email, text("first_name", 200), tuple(dict.fromkeys(raw)), True, ticked("concern_consent"), form, address_hash
    )


def receive(conn: Connection, form: SignupForm, now: datetime) -> None:
    conn.execute(
        insert(signup_intake),
        {
            "email": form.email,
            "first_name": form.first_name,
            "concerns": ";".join(form.concerns),
            "concern_consent": form.concern_consent,
            "form": form.form,
            "address_hash": form.address_hash,
            "created_at": now,
        },
    )


def take_received(conn: Connection, settings: SignupSettings, now: datetime, limit: int) -> int:
    rows = queue.take_intake(conn, limit)
    for row in rows:
        form = SignupForm(
            row["email"],
            row["first_name"],
            tuple(filter(None, str(row["concerns"]).split(";"))),
            True,
            bool(row["concern_consent"]),
            row["form"],
            row["address_hash"],
        )
        try:
            with conn.begin_nested():  # one bad submission never costs the others
                request_signup(conn, form, settings, now)
        except NeedlecastError as err:
            log.error("signup submission #%s dropped: %s", row["id"], type(err).__name__)
    return len(rows)


def request_signup(conn: Connection, form: SignupForm, settings: SignupSettings, now: datetime) -> Signup | None:
    """Store the request (see the module contract); None when nothing may be done (a suppressed address)."""
    key = hash_key(conn)
    hashed = email_hash(key, form.email)
    if conn.execute(select(suppressions.c.email_hash).where(suppressions.c.email_hash == hashed)).first():
        return None  # suppressed or erased: stays so, and the form answers as it does for anyone
    # One statement inserts the address unless it is there: concurrent signups of one new address make one
    # contact, and exactly one of them is the new one (no unique violation, none in the server's log).
    created_id = insert_new(
        conn,
        contacts,
        {**new_contact_row(form.email, hashed, now, status="pending"), "updated_at": now},
        contacts.c.id,
    )
    new = created_id is not None
    if created_id is None:
        created_id = conn.execute(select(contacts.c.id).where(contacts.c.email == form.email)).scalar()
        if created_id is None:
            return None  # erased after the insert saw it: nothing may be done
    contact_id = int(created_id)
    applied_now = new and not settings.double_opt_in
    request_id = int(
        conn.execute(
            insert(signup_requests).returning(signup_requests.c.id),
            {
                "contact_id": contact_id,
                "first_name": form.first_name,
                "concerns": ";".join(form.concerns),
                "marketing": form.marketing,
                "concern_consent": form.concern_consent,
                "marketing_wording": settings.marketing_wording_version,
                "concern_wording": settings.concern_wording_version,
                "source": f"form:{form.form}",
                "address_hash": form.address_hash,
                "created_at": now,
                "confirmed_at": None,
                "confirmation": "" if applied_now else "queued",
            },
        ).scalar_one()
    )
    if new:
        conn.execute(
            insert(consent_events),
            {
                "contact_id": contact_id,
                "purpose": "marketing",
                "action": "pending",
                "source": f"form:{form.form}",
                "wording_version": settings.marketing_wording_version,
                "recorded_at": now,
                "address_hash": form.address_hash,
            },
        )
    if applied_now:
        apply_confirmation(conn, contact_id, request_id, now)
        return Signup(contact_id, request_id, form.email, form.first_name, False, True)
    return Signup(contact_id, request_id, form.email, form.first_name, True, False)


def apply_confirmation(conn: Connection, contact_id: int, request_id: int, now: datetime) -> bool:
    """Record what the signup request asked for (see the module contract). False when it was applied already
    (also by a concurrent confirmation); `NotFound` when the request or its contact is gone."""
    request = (
        conn.execute(
            select(signup_requests).where(
                signup_requests.c.id == request_id, signup_requests.c.contact_id == contact_id
            )
        )
        .mappings()
        .first()
    )
    if request is None:
        raise NotFound("that confirmation link belongs to a signup that no longer exists")
    if conn.execute(select(contacts.c.id).where(contacts.c.id == contact_id)).first() is None:
        raise NotFound("that confirmation link belongs to a contact who no longer exists")
    # Claimed in one statement: of concurrent confirmations (a mail scanner and the person, two clicks)
    # exactly one records the consents; the others find it confirmed.
    claimed = conn.execute(
        update(signup_requests)
        .where(signup_requests.c.id == request_id, signup_requests.c.confirmed_at.is_(None))
        .values(confirmed_at=now)
    ).rowcount
    if claimed != 1:
        return False
    source = str(request["source"])
    values: dict[str, Any] = {"updated_at": now}
    if request["first_name"]:
        values["first_name"] = request["first_name"]
    if request["concerns"]:
        values["concerns"] = request["concerns"]
    conn.execute(update(contacts).where(contacts.c.id == contact_id).values(values))
    evidence = {"source": source, "at": now, "address_hash": request["address_hash"]}
    record_consent(conn, contact_id, "marketing", True, wording_version=request["marketing_wording"], **evidence)
    wants_concern = bool(request["concern_consent"] and request["concerns"])
    had_concern = bool(conn.execute(select(contacts.c.concern_consent).where(contacts.c.id == contact_id)).scalar())
    if wants_concern or had_concern:  # granted, or withdrawn by the person's own confirmed choice
        record_consent(
            conn, contact_id, "concern", wants_concern, wording_version=request["concern_wording"], **evidence
        )
    return True
