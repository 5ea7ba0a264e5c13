"""The API's request and response bodies (Pydantic), which the OpenAPI document describes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable name for the kind of error, e.g. not_found, invalid, forbidden")
    message: str = Field(description="What is wrong and what to do about it")
    field: str | None = Field(default=None, description="The request field at fault, when there is one")


class ErrorOut(BaseModel):
    error: ErrorDetail


class ConsentIn(Strict):
    granted: bool = Field(description="True: consent given; false: withdrawn")
    source: str = Field(min_length=1, max_length=200, description="Evidence: where it came from (a form, a call)")
    wording_version: str = Field(default="", max_length=100, description="The version of the wording shown")
    at: datetime | None = Field(default=None, description="When it was given (default: now); with a time zone")


class ContactIn(Strict):
    email: str = Field(min_length=3, max_length=320, description="The address: the contact's key")
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    concerns: list[str] | None = Field(default=None, max_length=20, description="Concerns from the vocabulary")
    time_zone: str | None = Field(default=None, max_length=64, description="An IANA zone such as Europe/London")
    lists: list[str] = Field(default_factory=list, max_length=50)
    tags: list[str] = Field(default_factory=list, max_length=50)
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=50)
    marketing_consent: ConsentIn | None = None
    concern_consent: ConsentIn | None = Field(
        default=None,
        description="Consent to use the skin concern (health data): without it the contact gets general content",
    )


class LookupIn(Strict):
    email: str = Field(min_length=3, max_length=320)


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
    email: str = Field(min_length=3, max_length=320)
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


class PlanOut(BaseModel):
    id: str
    days: int
    emails: list[PlanRow]
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
