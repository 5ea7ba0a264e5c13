"""Journey pages: a journey (or a sequence) drawn as a diagram with its people per node, and one node's page
(its people, masked for analysts as the contact list masks them, and for a send node its email's preview).
Module-level views (`auth.page`); reads only, through `needlecast.readmodels.journey_figures`."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from needlecast.readmodels.email_previews import campaign_preview
from needlecast.readmodels.journey_diagram import diagram
from needlecast.readmodels.journey_figures import KIND_WORDS, edges_of, figures_of, node_people
from needlecast.web.console.auth import Who, console_of, page


@page("campaigns.view")
def journey_page(request: Request, who: Who) -> Response:
    """The journey's diagram, its nodes with their people, the people at nodes it no longer has, its paths."""
    console = console_of(request)
    campaign_id = request.path_params["campaign"]
    figures = figures_of(console.engine, console.workspace, campaign_id)
    base = f"{console.prefix(request)}/journeys/{quote(campaign_id)}/nodes/"
    journey = figures.campaign.journey
    assert journey is not None
    ways = {n: [(t, label) for t, label in edges_of(node)] for n, node in journey.nodes.items()}
    return console.render(
        request,
        who,
        "journey.html",
        title=f"Journey: {figures.campaign.name}",
        figures=figures,
        ways=ways,
        kinds=KIND_WORDS,
        svg=diagram(figures, lambda node: base + quote(node)),
        node_base=base,
    )


@page("contacts.view")
def node_page(request: Request, who: Who) -> Response:
    """One node's people (paged; `?left=1` for those who left the journey there) and its email's preview."""
    console = console_of(request)
    campaign_id, node_id = request.path_params["campaign"], request.path_params["node"]
    query = request.query_params
    left = query.get("left") == "1"
    number = int(query["page"]) if query.get("page", "").isdigit() else 1
    unmasked = who.actor.may("contacts.view_unmasked")
    shown = node_people(
        console.engine, console.workspace, campaign_id, node_id, left=left, page=number, unmasked=unmasked
    )
    figures = figures_of(console.engine, console.workspace, campaign_id)
    counted = next((n for n in figures.nodes if n.node == node_id), None)
    preview = None
    if shown.node is not None and shown.node.kind == "send":
        preview = campaign_preview(
            console.workspace, console.secret, campaign_id, node_id, query.get("variant", ""), query.get("arm", "")
        )
    frame_url = ""
    if preview is not None:
        frame_query = urlencode(
            {"step": node_id, "variant": preview.variant, **({"arm": preview.arm} if preview.arm else {})}
        )
        frame_url = f"{console.prefix(request)}/campaigns/{quote(campaign_id)}/preview.html?{frame_query}"
    return console.render(
        request,
        who,
        "journey_node.html",
        title=f"Step {node_id} of {shown.campaign.name}",
        shown=shown,
        counted=counted,
        node_id=node_id,
        kinds=KIND_WORDS,
        masked=not unmasked,
        preview=preview,
        frame_url=frame_url,
    )


ROUTES = [
    Route("/journeys/{campaign}", journey_page),
    Route("/journeys/{campaign}/nodes/{node}", node_page),
]
