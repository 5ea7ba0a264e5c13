"""Journey actions: put people into a journey, save a new version of a live journey (moving the people its
change concerns), check a journey and repair it.

See `needlecast.actions` for the contract every action keeps. The audit entries carry counts and node ids,
never a person's address or name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.atomicfile import write_text_atomically
from needlecast.audience.contact_filter import Selection, selection_query
from needlecast.audience.frame_cache import FrameCache
from needlecast.audience.membership import load_frame
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import JOURNEY
from needlecast.campaign.journeys import edits
from needlecast.campaign.journeys import entries as entering
from needlecast.campaign.journeys.sweeper import enter as enter_positions
from needlecast.campaign.journeys.sweeper import sweep_journey, sweep_seconds
from needlecast.config import Workspace
from needlecast.errors import CampaignFileError, InvalidRequest
from needlecast.readmodels.journeys import journey_of, loaded_version
from needlecast.store import contact_search
from needlecast.store import journeys as store
from needlecast.store.delivery import delivery_store
from needlecast.store.helpers import utcnow
from needlecast.store.schema import contacts


@dataclass
class EnterResult:
    """What `enter` did, person by person (contact ids only)."""

    entered: list[int] = field(default_factory=list)
    already_in: list[int] = field(default_factory=list)  # in the journey now, or the re-entry rule refuses
    unknown: list[int] = field(default_factory=list)  # no such contact


def enter(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    campaign_id: str,
    contact_ids: Sequence[int],
    *,
    now: datetime | None = None,
) -> EnterResult:
    """Put one person or a selection into a journey at its first node (the API's and the console's entry).
    The journey's re-entry rule applies (`never`: whoever was in it once is not entered again); the sweeper
    checks consent and suppression before anything is sent. Audited with the counts."""
    require(actor, "campaigns.schedule")
    ctx = CampaignContext.load(workspace)
    campaign = journey_of(ctx, campaign_id)
    assert campaign.journey is not None
    now = now or utcnow()
    wanted = list(dict.fromkeys(int(c) for c in contact_ids))
    result = EnterResult()
    with delivery_store(engine).writing() as conn:
        known = {int(r[0]) for r in conn.execute(select(contacts.c.id).where(contacts.c.id.in_(wanted)))}
        result.unknown = [c for c in wanted if c not in known]
        frame = load_frame(conn).set_index("id", drop=False)
        latest = store.latest_entries(conn, campaign.id)
        triggered: dict[int, datetime | None] = {c: now for c in wanted if c in known}
        admitted = entering.admit(triggered, latest, campaign.journey.reentry, now)
        enter_positions(conn, campaign, admitted, frame, now)
        after = store.latest_entries(conn, campaign.id)
        result.entered = [c for c, number, _ in admitted if c in after and after[c].entry == number]
        result.already_in = [c for c in wanted if c in known and c not in result.entered]
        audit.record(
            conn,
            actor,
            "journey.entered",
            f"campaign:{campaign.id}",
            entered=len(result.entered),
            not_entered=len(result.already_in),
            unknown=len(result.unknown),
        )
    return result


MOST_ENTERED_AT_ONCE = 10_000  # people put into a journey by one request (the console's, the API's)


def enter_selection(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    campaign_id: str,
    selection: Selection,
    *,
    expected: int,
    frames: FrameCache | None = None,
) -> tuple[int, EnterResult | None]:
    """The contact list's "Put into a journey": the contacts of `selection`, counted as the list counts them,
    into `campaign_id` through `enter` (its rules and its audit entry). Returns (the selection's size now,
    what `enter` did), or (size, None) with nothing done when the selection no longer holds `expected`
    contacts. More than MOST_ENTERED_AT_ONCE is `InvalidRequest`, naming the fix."""
    require(actor, "campaigns.schedule")
    journey_of(CampaignContext.load(workspace), campaign_id)  # an unknown journey: NotFound before counting
    unmasked = actor.may("contacts.view_unmasked")
    with engine.connect() as conn:
        query = selection_query(conn, workspace, selection, unmasked=unmasked, now=utcnow(), frames=frames)
        found = contact_search.ids(conn, query)
    if len(found) != expected:
        return len(found), None
    if len(found) > MOST_ENTERED_AT_ONCE:
        raise InvalidRequest(
            f"selection: {len(found):,} people are more than {MOST_ENTERED_AT_ONCE:,} at once; narrow the filter, "
            "or let the journey's own entry (a segment, an event, a date) take them"
        )
    return len(found), enter(engine, workspace, actor, campaign_id, found)


@dataclass
class SaveResult:
    version: int
    preview: edits.ChangePreview
    changed: dict[str, int]  # node -> how many people the save moved or re-timed there


def save(
    engine: Engine,
    workspace: Workspace,
    actor: Actor,
    campaign_id: str,
    text: str,
    moves: Mapping[str, str] | None = None,
) -> SaveResult:
    """Save a new version of a journey's file: validated, then refused (`EditRefused`, naming the node) while
    a removed node holds people that `moves` gives no destination (a node, or `exit`); else written, the
    people moved and re-timed (`journeys.edits.apply_change`), the version kept with its source and the moves,
    and audited, in one transaction after the file is written (a failure after the write leaves positions at
    the removed nodes, which `needlecast journey check` finds and repairs)."""
    require(actor, "campaigns.edit")
    moves = dict(moves or {})
    ctx = CampaignContext.load(workspace)
    old, new = loaded_version(ctx, campaign_id, text)
    assert new.journey is not None
    now = utcnow()
    with engine.connect() as conn:
        preview = edits.preview_change(conn, campaign_id, old.journey if old else None, new.journey)
        frame = load_frame(conn).set_index("id", drop=False)
    missing = preview.needs_destination(moves)
    if missing:
        raise edits.EditRefused(
            f"{preview.removed[missing[0]]} people wait at '{missing[0]}', which this version removes: choose "
            f"a node for them ({', '.join(new.journey.nodes)}) or exit",
            field=f"moves.{missing[0]}",
        )
    write_text_atomically(new.path, text)
    with delivery_store(engine).writing() as conn:
        changed = edits.apply_change(conn, new, preview, moves, frame, now)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        version = store.record_version(conn, campaign_id, digest, actor.name, moves, text, now)
        audit.record(
            conn,
            actor,
            "journey.saved",
            f"campaign:{campaign_id}",
            version=version,
            removed=dict(preview.removed),
            moves=moves,
            retimed=preview.retimed,
        )
    return SaveResult(version, preview, changed)


def create(engine: Engine, workspace: Workspace, actor: Actor, campaign_id: str, text: str) -> SaveResult:
    """Save `text` as a new journey's file (the console's "New journey"): refused, naming the `id` field, when
    a campaign already has that id (an edit goes through `save`, which would replace it); otherwise `save`
    (validated by the loader, versioned, audited)."""
    require(actor, "campaigns.edit")
    ctx = CampaignContext.load(workspace)
    if campaign_id in ctx.campaigns:
        raise CampaignFileError(
            str(ctx.campaigns[campaign_id].path),
            "id",
            f"'{campaign_id}' is already the id of another campaign",
            "give the journey its own id",
        )
    return save(engine, workspace, actor, campaign_id, text)


def check(engine: Engine, workspace: Workspace, campaign_id: str, *, now: datetime | None = None) -> edits.CheckReport:
    """Stranded and overdue positions of a journey at `now` (default: the clock); a read, changing nothing."""
    campaign = journey_of(CampaignContext.load(workspace), campaign_id)
    with engine.connect() as conn:
        return edits.check(conn, campaign, now or utcnow(), timedelta(seconds=sweep_seconds(workspace)))


def check_all(engine: Engine, workspace: Workspace, *, now: datetime | None = None) -> list[edits.CheckReport]:
    """`check` of every journey of the workspace, drafts included (people may wait in none of them)."""
    ctx = CampaignContext.load(workspace)
    period = timedelta(seconds=sweep_seconds(workspace))
    with engine.connect() as conn:
        return [
            edits.check(conn, campaign, now or utcnow(), period)
            for campaign in ctx.campaigns.values()
            if campaign.kind == JOURNEY and campaign.journey is not None
        ]


def repair(
    engine: Engine, workspace: Workspace, actor: Actor, campaign_id: str, moves: Mapping[str, str]
) -> dict[str, int]:
    """Move the stranded people of a journey as `moves` says (each stranded node: a node, or `exit`), then
    sweep the journey once, which advances the overdue ones. Audited with the counts."""
    require(actor, "campaigns.schedule")
    ctx = CampaignContext.load(workspace)
    campaign = journey_of(ctx, campaign_id)
    now = utcnow()
    with engine.connect() as conn:
        frame = load_frame(conn).set_index("id", drop=False)
    with delivery_store(engine).writing() as conn:
        moved = edits.repair(conn, campaign, moves, frame, now)
        audit.record(conn, actor, "journey.repaired", f"campaign:{campaign_id}", moved=moved, moves=dict(moves))
    report = sweep_journey(engine, ctx, campaign, now)
    return {**moved, "(advanced by a sweep)": report.moved}
