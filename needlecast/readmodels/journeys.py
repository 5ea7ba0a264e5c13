"""Journey read models: where the people of a journey are, and what saving a new version would do to them
(the console's journey page and its save dialog, the CLI's `journey preview`). Reads only.

Contract:
- `journey_overview(engine, workspace, campaign_id)`: per node of the journey, in the file's order, how many
  people wait there now and how many left the journey there (reached an exit or its end, converted, exited
  early), and the nodes the journey no longer has that still hold people.
- `preview_save(workspace, engine, campaign_id, text)`: what saving `text` as the journey's file would do to
  the people waiting (`journeys.edits.ChangePreview`, with `describe()` in words); raises
  `CampaignFileError` (file, field, fix) when the text does not load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.editor import _validate
from needlecast.campaign.definition.model import JOURNEY, Campaign
from needlecast.campaign.journeys import edits
from needlecast.config import Workspace
from needlecast.errors import CampaignFileError, NotFound
from needlecast.store import journeys as store


@dataclass
class NodeFigures:
    node: str
    kind: str
    waiting: int = 0
    done: int = 0  # reached an exit node or the end of the journey here
    converted: int = 0  # reached the goal while here
    exited: int = 0  # left early while here (suppressed, consent withdrawn, no date, an edit)


@dataclass
class JourneyOverview:
    campaign_id: str
    nodes: list[NodeFigures] = field(default_factory=list)
    stranded: dict[str, int] = field(default_factory=dict)  # a node the journey no longer has -> people there


def journey_of(ctx: CampaignContext, campaign_id: str) -> Campaign:
    """The journey `campaign_id` (NotFound names the campaigns there are; a campaign of another kind is
    NotFound too, saying what it is)."""
    campaign = ctx.campaign(campaign_id)
    if campaign.kind != JOURNEY or campaign.journey is None:  # no journey has this id: a 404 on the web
        said = f"campaign '{campaign_id}' is a {campaign.kind}, not a journey"
        raise NotFound(said, what="journey", name=campaign_id)
    return campaign


def journey_overview(engine: Engine, workspace: Workspace, campaign_id: str) -> JourneyOverview:
    """Where the journey's people are (see the module contract)."""
    campaign = journey_of(CampaignContext.load(workspace), campaign_id)
    assert campaign.journey is not None
    with engine.connect() as conn:
        counts = store.counts_by_node(conn, campaign_id)
    overview = JourneyOverview(campaign_id)
    for node_id, node in campaign.journey.nodes.items():
        figures = NodeFigures(node_id, node.kind)
        figures.waiting = counts.get((node_id, store.ACTIVE), 0)
        figures.done = counts.get((node_id, store.DONE), 0)
        figures.converted = counts.get((node_id, store.CONVERTED), 0)
        figures.exited = counts.get((node_id, store.EXITED), 0)
        overview.nodes.append(figures)
    for (node_id, state), count in counts.items():
        if state == store.ACTIVE and node_id not in campaign.journey.nodes:
            overview.stranded[node_id] = count
    return overview


def loaded_version(ctx: CampaignContext, campaign_id: str, text: str) -> tuple[Campaign | None, Campaign]:
    """The journey as it is (None when new) and `text` loaded as its new version (validated as the console
    validates an edit: file, field and fix on any problem)."""
    old = ctx.campaigns.get(campaign_id)
    path = old.path if old is not None else ctx.workspace.campaigns_dir / f"{campaign_id}.yaml"
    new = _validate(ctx, path, text, old.path if old is not None else None)
    if new.kind != JOURNEY or new.id != campaign_id:
        raise CampaignFileError(str(path), "id", f"is not the journey '{campaign_id}'", f"keep id: {campaign_id}")
    return old, new


def preview_save(workspace: Workspace, engine: Engine, campaign_id: str, text: str) -> edits.ChangePreview:
    """What saving `text` as the journey's file would do to the people waiting (changes nothing)."""
    old, new = loaded_version(CampaignContext.load(workspace), campaign_id, text)
    assert new.journey is not None
    with engine.connect() as conn:
        return edits.preview_change(conn, campaign_id, old.journey if old else None, new.journey)
