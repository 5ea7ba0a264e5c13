"""A journey drawn as a diagram: inline SVG, drawn on the server, no script and no style attribute (the
console's Content-Security-Policy allows styles from its stylesheet only: colours are SVG presentation
attributes and classes of `console.css`).

Contract: `diagram(figures, link)` is the SVG of the journey of `figures` (`journey_figures.JourneyFigures`):
a box per node (coloured by kind) with its id, what it does in words and its people (waiting, passed, left),
each box a link to `link(node id)`; an arrow per way on, labelled (a branch's conditions, a split's share, a
wait-until's event and timeout). Layout: layered by depth from the first node (the shortest number of steps),
each layer a row in the order the walk found its nodes; an arrow to an earlier or the same row (a loop) goes
round on the right. Deterministic: the same journey and figures give the same SVG.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup, escape

from needlecast.campaign.journeys.model import Journey
from needlecast.readmodels.journey_figures import JourneyFigures, NodeCount, edges_of

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, LOOP_ROOM = 230, 84, 36, 76, 16, 70
FILL = {  # pale fills by kind; the text is near-black on each (contrast above 12:1)
    "send": "#e3edfb",
    "wait": "#fdf0d8",
    "wait_until": "#fde6c8",
    "branch": "#efe3fa",
    "split": "#efe3fa",
    "goto": "#ececec",
    "exit": "#f9e0e0",
}


@dataclass(frozen=True)
class Box:
    node: str
    x: int
    y: int
    depth: int


def layers(journey: Journey) -> list[list[str]]:
    """The nodes by depth from the start (breadth first, in the file's order of ways on); nodes no walk from the
    start reaches come last, in the file's order."""
    depth = {journey.start: 0}
    order = [journey.start]
    for node_id in order:  # grows while walking: a breadth-first walk
        node = journey.nodes[node_id]
        for target in node.targets():
            if target in journey.nodes and target not in depth:
                depth[target] = depth[node_id] + 1
                order.append(target)
    rows: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for node_id in order:
        rows[depth[node_id]].append(node_id)
    rest = [n for n in journey.nodes if n not in depth]
    return rows + ([rest] if rest else [])


def place(journey: Journey) -> tuple[dict[str, Box], int, int]:
    """Each node's box, and the drawing's width and height."""
    rows = layers(journey)
    widest = max(len(r) for r in rows)
    inner = widest * BOX_W + (widest - 1) * GAP_X
    boxes: dict[str, Box] = {}
    for depth, row in enumerate(rows):
        span = len(row) * BOX_W + (len(row) - 1) * GAP_X
        left = MARGIN + (inner - span) // 2
        for i, node_id in enumerate(row):
            boxes[node_id] = Box(node_id, left + i * (BOX_W + GAP_X), MARGIN + depth * (BOX_H + GAP_Y), depth)
    return boxes, MARGIN * 2 + inner + LOOP_ROOM, MARGIN * 2 + len(rows) * (BOX_H + GAP_Y) - GAP_Y


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label(x: float, y: float, text: str) -> str:
    if not text:
        return ""
    shown = _short(text, 34)
    width = len(shown) * 6.4 + 10
    return (
        f'<rect class="jd-label" x="{x - width / 2:.0f}" y="{y - 10:.0f}" width="{width:.0f}" height="18" rx="3"'
        f' fill="#ffffff" stroke="#c8c8c8"/><text x="{x:.0f}" y="{y + 3:.0f}" text-anchor="middle"'
        f' font-size="11.5" fill="#2b2b2b">{escape(shown)}</text>'
    )


def _edges(journey: Journey, boxes: dict[str, Box], width: int) -> list[str]:
    drawn: list[str] = []
    loops = 0
    for node_id, node in journey.nodes.items():
        edges = [(t, label) for t, label in edges_of(node) if t in boxes]
        for i, (target, label) in enumerate(edges):
            start, end = boxes[node_id], boxes[target]
            sx = start.x + BOX_W * (i + 1) / (len(edges) + 1)
            sy = start.y + BOX_H
            if end.depth > start.depth:
                ex, ey = end.x + BOX_W / 2, end.y
                line = (
                    f'<line x1="{sx:.0f}" y1="{sy}" x2="{ex:.0f}" y2="{ey - 2}" stroke="#4a4a4a" stroke-width="1.5"'
                    ' marker-end="url(#jd-arrow)"/>'
                )
                drawn.append(line + _label((sx + ex) / 2, sy + (ey - sy) * (0.45 + 0.1 * (i % 2)), label))
            else:  # a loop back (or across a row): round the right-hand side
                loops += 1
                edge_x = width - MARGIN - LOOP_ROOM + 14 + (loops % 4) * 12
                sy2, ey2 = start.y + BOX_H / 2, end.y + BOX_H / 2
                path = f"M{start.x + BOX_W} {sy2:.0f} H{edge_x} V{ey2:.0f} H{end.x + BOX_W + 2}"
                drawn.append(
                    f'<path d="{path}" fill="none" stroke="#4a4a4a" stroke-width="1.5" stroke-dasharray="5 3"'
                    ' marker-end="url(#jd-arrow)"/>' + _label(edge_x - 40, (sy2 + ey2) / 2, label)
                )
    return drawn


def _box(box: Box, count: NodeCount, href: str) -> str:
    people = f"{count.waiting:,} waiting · {count.passed:,} passed · {count.left:,} left"
    name = f"{count.node}: {count.words}. {people}"
    kind = count.kind.replace("_", " ")
    return (
        f'<a href="{escape(href)}" class="jd-node" aria-label="{escape(name)}" data-node="{escape(count.node)}">'
        f"<title>{escape(name)}</title>"
        f'<rect x="{box.x}" y="{box.y}" width="{BOX_W}" height="{BOX_H}" rx="8"'
        f' fill="{FILL.get(count.kind, "#ffffff")}" stroke="#3d3d3d" stroke-width="1.2"/>'
        f'<text x="{box.x + 10}" y="{box.y + 22}" font-size="14" font-weight="bold" fill="#111111">'
        f"{escape(_short(count.node, 20))}"
        f'<tspan font-weight="normal" font-size="12" fill="#3b3b3b"> · {escape(kind)}</tspan></text>'
        f'<text x="{box.x + 10}" y="{box.y + 44}" font-size="12.5" fill="#1f1f1f">'
        f"{escape(_short(count.words, 32))}</text>"
        f'<text x="{box.x + 10}" y="{box.y + 68}" font-size="12" fill="#1f1f1f" class="jd-counts">'
        f"{escape(people)}</text>"
        "</a>"
    )


def diagram(figures: JourneyFigures, link: Callable[[str], str]) -> Markup:
    """The journey's SVG (see the module contract)."""
    journey = figures.campaign.journey
    assert journey is not None
    boxes, width, height = place(journey)
    counts = {c.node: c for c in figures.nodes}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="journey-svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="group" aria-label="The journey {escape(figures.campaign.id)}'
        ' as a diagram: each node a link to its people">',
        '<defs><marker id="jd-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"'
        ' orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="#4a4a4a"/></marker></defs>',
        *_edges(journey, boxes, width),
        *(_box(boxes[n], counts[n], link(n)) for n in journey.nodes),
        "</svg>",
    ]
    return Markup("".join(parts))
