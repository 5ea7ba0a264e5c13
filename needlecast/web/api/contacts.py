"""/contacts and /suppressions: create or update a contact with its consent evidence, read contacts a page at
a time, look one up by address, erase a person, suppress an address, read the suppression list.

Changes go through `needlecast.actions.contacts` (checked and audited as the key); reads through
`needlecast.readmodels.contact_pages`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

import needlecast.web.api.schemas as s
from needlecast.actions import contacts as contacts_actions
from needlecast.readmodels import contact_pages as contacts_read
from needlecast.web.actors import Actor
from needlecast.web.api.deps import Api, ContactId, Key, allowed
from needlecast.web.api.errors import ERRORS
from needlecast.web.api.paging import CURSOR_HELP, HASH_CURSOR, ID_CURSOR, after_hash, after_id, hash_cursor, id_cursor

router = APIRouter(responses=ERRORS)


def contact_out(p: contacts_read.Profile) -> s.ContactOut:
    return s.ContactOut(
        id=p.id,
        email=p.email,
        first_name=p.first_name,
        last_name=p.last_name,
        status=p.status,
        concerns=p.concerns,
        time_zone=p.time_zone,
        lists=p.lists,
        tags=p.tags,
        attributes=p.attributes,
        marketing_consent=p.marketing_consent,
        concern_consent=p.concern_consent,
        suppressed=p.suppressed,
        signed_up_at=p.signed_up_at,
    )


def _consent(change: s.ConsentIn | None) -> contacts_actions.ConsentChange | None:
    if change is None:
        return None
    return contacts_actions.ConsentChange(change.granted, change.source, change.wording_version, change.at)


@router.post(
    "/contacts",
    response_model=s.ContactOut,
    status_code=200,
    tags=["contacts"],
    summary="Create or update a contact by address",
)
def upsert(
    body: s.ContactIn,
    api: Api,
    actor: Annotated[Actor, Depends(allowed("contacts.write"))],
    idempotency_key: Key = None,
) -> s.ContactOut:
    change = contacts_actions.ContactUpdate(
        body.email,
        body.first_name,
        body.last_name,
        tuple(body.concerns) if body.concerns is not None else None,
        body.time_zone,
        tuple(body.lists),
        tuple(body.tags),
        dict(body.attributes),
        _consent(body.marketing_consent),
        _consent(body.concern_consent),
    )
    done = contacts_actions.upsert(api.engine, api.workspace, actor, change, api.vocabulary)
    return contact_out(contacts_read.profile(api.engine, done.contact_id, unmasked=True))


@router.get("/contacts", response_model=s.ContactPage, tags=["contacts"], summary="List contacts, by id")
def contact_list(
    api: Api,
    actor: Annotated[Actor, Depends(allowed("contacts.view_unmasked"))],
    cursor: Annotated[str | None, Query(pattern=ID_CURSOR, description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> s.ContactPage:
    page = contacts_read.contact_page(api.engine, after_id(cursor), limit)
    return s.ContactPage(
        items=[contact_out(p) for p in page.items], next_cursor=id_cursor(page.items[-1].id) if page.more else None
    )


@router.get("/contacts/{contact_id:int}", response_model=s.ContactOut, tags=["contacts"], summary="One contact")
def contact_get(
    contact_id: ContactId, api: Api, actor: Annotated[Actor, Depends(allowed("contacts.view_unmasked"))]
) -> s.ContactOut:
    return contact_out(contacts_read.profile(api.engine, contact_id, unmasked=True))


@router.post(
    "/contacts/lookup",
    response_model=s.ContactOut,
    tags=["contacts"],
    summary="Find a contact by address (in the body, so that no address is in a URL)",
)
def contact_lookup(
    body: s.LookupIn, api: Api, actor: Annotated[Actor, Depends(allowed("contacts.view_unmasked"))]
) -> s.ContactOut:
    return contact_out(contacts_read.profile_by_address(api.engine, body.email, unmasked=True))


@router.delete(
    "/contacts/{contact_id:int}",
    response_model=s.ErasureOut,
    tags=["contacts"],
    summary="Erase a person: their data is deleted, the address stays suppressed",
)
def contact_erase(
    contact_id: ContactId,
    api: Api,
    actor: Annotated[Actor, Depends(allowed("contacts.erase"))],
    idempotency_key: Key = None,
) -> s.ErasureOut:
    email = contacts_read.profile(api.engine, contact_id, unmasked=True).email
    return s.ErasureOut(erased=contacts_actions.erase_contact(api.engine, actor, email))


@router.post(
    "/suppressions",
    response_model=s.SuppressionAdded,
    tags=["suppressions"],
    summary="Suppress an address: it is never mailed again",
)
def suppression_add(
    body: s.SuppressionIn,
    api: Api,
    actor: Annotated[Actor, Depends(allowed("contacts.suppress"))],
    idempotency_key: Key = None,
) -> s.SuppressionAdded:
    added = contacts_actions.suppress_contact(api.engine, actor, body.email, body.reason, source=f"api ({actor.name})")
    return s.SuppressionAdded(suppressed=added)


@router.get(
    "/suppressions",
    response_model=s.SuppressionPage,
    tags=["suppressions"],
    summary="The suppression list (keyed hashes: the addresses are not kept)",
)
def suppression_list(
    api: Api,
    actor: Annotated[Actor, Depends(allowed("contacts.view"))],
    cursor: Annotated[str | None, Query(pattern=HASH_CURSOR, description=CURSOR_HELP)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> s.SuppressionPage:
    page = contacts_read.suppression_page(api.engine, after_hash(cursor), limit)
    items = [s.SuppressionOut(**row) for row in page.items]
    return s.SuppressionPage(items=items, next_cursor=hash_cursor(items[-1].email_hash) if page.more else None)
