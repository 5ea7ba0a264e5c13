"""The API's request and response bodies (Pydantic), which the OpenAPI document describes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import available_timezones

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool


def _any_case(word: str) -> str:
    return "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in word)


# What the document says of an address, in any case, which the server checks with email-validator (no DNS):
# the everyday shape that `needlecast.addresses` takes on its fast path (a dot-atom local part of at
# most 64 characters, letter-digit-hyphen labels without "--", a top-level domain that ends with a letter and
# is not a special-use name such as .test or .local, where nothing can be delivered), 254 characters at most.
# The server also takes some rarer addresses (international ones); what the document promises, it takes.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SPECIAL = "|".join(_any_case(name) for name in SPECIAL_USE_DOMAIN_NAMES)
_TLD = r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,61})?[A-Za-z]"
EMAIL_PATTERN = rf"^(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?!.*--)(?:{_LABEL}\.)+(?!(?:{_SPECIAL})$){_TLD}$"
EMAIL_SCHEMA: dict[str, Any] = {"format": "email", "pattern": EMAIL_PATTERN}


def email_field(**extra: Any) -> Any:
    """An email address field, described as the server checks it (the server's own message names a fault)."""
    return Field(min_length=3, max_length=254, json_schema_extra=EMAIL_SCHEMA, **extra)


_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _rfc3339(value: Any) -> Any:
    """Only what the document's `date-time` is (RFC 3339, with its offset): Pydantic alone would also take a
    number of seconds, a date without a time or a time without a zone."""
    if isinstance(value, str) and _RFC3339.match(value):
        return value
    raise ValueError("give the time as an RFC 3339 date-time with its time zone, such as 2026-03-01T09:30:00Z")


Instant = Annotated[datetime, BeforeValidator(_rfc3339)]


# The zones the server takes (`upsert_contact` checks the same set), or "" (or null) for none. A pattern rather
# than an enum of some 600 names: the same set, which a fuzzer does not try one request per name of.
TIME_ZONES = sorted(available_timezones())
TIME_ZONE_PATTERN = "^(|" + "|".join(zone.replace("+", "\\+") for zone in TIME_ZONES) + ")$"


# Free text the store keeps: anything but a NUL character, which PostgreSQL cannot hold in a text column (the
# document says so, and the server refuses one with 422 naming the field instead of failing in the database).
NO_NUL = r"^[^\x00]*$"


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (remove it: it cannot be stored)")
    return value


Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": NO_NUL})]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable name for the kind of error, e.g. not_found, invalid, forbidden")
    message: str = Field(description="What is wrong and what to do about it")
    field: str | None = Field(default=None, description="The request field at fault, when there is one")


class ErrorOut(BaseModel):
    error: ErrorDetail


class ConsentIn(Strict):
    granted: StrictBool = Field(description="True: consent given; false: withdrawn")
    source: Text = Field(min_length=1, max_length=200, description="Evidence: where it came from (a form, a call)")
    wording_version: Text = Field(default="", max_length=100, description="The version of the wording shown")
    at: Instant | None = Field(default=None, description="When it was given (default: now); with a time zone")


class ContactIn(Strict):
    email: str = email_field(description="The address: the contact's key")
    first_name: Text | None = Field(default=None, max_length=200)
    last_name: Text | None = Field(default=None, max_length=200)
    concerns: list[str] | None = Field(
        default=None, max_length=20, description="Concerns from the vocabulary (the document lists this clinic's)"
    )
    time_zone: str | None = Field(
        default=None,
        max_length=64,
        description="An IANA zone such as Europe/London (empty: the clinic's)",
        json_schema_extra={"pattern": TIME_ZONE_PATTERN},
    )
    lists: list[Text] = Field(default_factory=list, max_length=50)
    tags: list[Text] = Field(default_factory=list, max_length=50)
    # A key holding NUL is refused like a value; `propertyNames` says so in the document (patternProperties
    # alone leaves other keys allowed, so a schema-valid request would meet a 422).
    attributes: dict[Text, Text | int | float | bool] = Field(
        default_factory=dict, max_length=50, json_schema_extra={"propertyNames": {"pattern": NO_NUL}}
    )
    marketing_consent: ConsentIn | None = None
    concern_consent: ConsentIn | None = Field(
        default=None,
        description="Consent to use the skin concern (health data): without it the contact gets general content",
    )


class LookupIn(Strict):
    email: str = email_field()


class ContactOut(BaseModel):
    id: int
    email: str
    first_name: str
    last_name: str
    status: str
    concerns: list[str]
    time_zone: str
    lists: list[str]
    tags: list[str]
    attributes: dict[str, Any]
    marketing_consent: bool
    concern_consent: bool
    suppressed: str | None
    signed_up_at: datetime


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_cursor: str | None = Field(description="Pass it as `cursor` for the next page (null: the last page)")


class ErasureOut(BaseModel):
    erased: bool = Field(description="True when a contact existed; the address is suppressed as erased either way")


class SuppressionIn(Strict):
    email: str = email_field()
    reason: str = Field(default="manual", pattern="^(unsubscribed|hard_bounce|complaint|manual)$")


class SuppressionOut(BaseModel):
    email_hash: str = Field(description="The store's keyed hash of the address (the address is never kept)")
    reason: str
    source: str
    created_at: datetime


class SuppressionPage(BaseModel):
    items: list[SuppressionOut]
    next_cursor: str | None


class SuppressionAdded(BaseModel):
    suppressed: bool = Field(description="False when the address was suppressed already (its first reason kept)")


class SegmentOut(BaseModel):
    segment: str
    members: int
    variants: dict[str, int]
    excluded: dict[str, int]


class JourneyEntriesIn(Strict):
    # At most 15 digits: a bound a JSON number states exactly (a float's 53 bits), so that no client's parser
    # rounds an id past it into range or out of it.
    contact_ids: list[Annotated[int, Field(ge=1, le=999_999_999_999_999)]] = Field(
        min_length=1, max_length=1000, description="The contacts to put into the journey (ids), at most 1,000 a request"
    )


class JourneyEntriesOut(BaseModel):
    entered: list[int] = Field(description="Put in at the journey's first step")
    not_entered: list[int] = Field(description="In the journey now, or kept out by its re-entry rule")
    unknown: list[int] = Field(description="No contact has this id")


class CampaignOut(BaseModel):
    id: str
    name: str
    kind: str
    segment: str
    file: str
    state: str
    note: str
    counts: dict[str, int]
    next_send: datetime | None
    next_send_note: str
    ab_tests: list[str] = Field(default_factory=list, description="Each A/B winner test: its decision, or when")


class PlanRow(BaseModel):
    day: str
    step: str
    variant: str
    arm: str
    recipients: int


class ForecastRow(BaseModel):
    day: str = Field(description="The day (UTC) the emails are due")
    node: str = Field(description="The journey's or sequence's send node (its id in the file)")
    emails: int = Field(description="Emails expected that day at that node")
    at_most: bool = Field(description="True when the count is an upper bound (after a wait-until or a branch)")


class PlanOut(BaseModel):
    id: str
    days: int
    emails: list[PlanRow]
    forecast: list[ForecastRow] = Field(
        default_factory=list,
        description="A journey's or sequence's expected emails per day and send node (empty for a broadcast)",
    )
    new_enrolments: int
    excluded: dict[str, int]
    deferred: dict[str, int]
    notes: list[str]


class EventsIn(Strict):
    events: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=1000,
        description="Up to 1,000 events, each {id, email, type, occurred_at, value?, currency?}; each is "
        "validated on its own and a bad one never costs the others",
    )


class EventProblemOut(BaseModel):
    index: int
    field: str
    message: str


class EventsOut(BaseModel):
    stored: int
    duplicates: int
    dropped: int = Field(description="Events for an erased address: dropped, never stored")
    rejected: list[EventProblemOut]


class ReportOut(BaseModel):
    campaign: str
    funnel: list[dict[str, Any]]
    ab_test: list[dict[str, Any]]
    health: list[dict[str, Any]]
    conversions: list[dict[str, Any]]
    journey_funnel: list[dict[str, Any]] = []  # a journey's or a sequence's: per node, entered to converted
    journey_paths: list[dict[str, Any]] = []  # a journey's or a sequence's: the conversion per path taken
