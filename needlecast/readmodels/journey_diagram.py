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

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, SIDE_ROOM = 230, 84, 36, 76, 16, 70
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


def _walk(journey: Journey) -> tuple[list[str], set[tuple[str, str]]]:
    """The nodes a depth-first walk from the start reaches (in the order it finds them) and the ways on that
    close a loop (to a node still on the walk's stack), each node's ways on in the file's order."""
    found: list[str] = []
    back: set[tuple[str, str]] = set()
    on_stack: set[str] = set()
    stack: list[tuple[str, list[str]]] = []

    def visit(node_id: str) -> None:
        found.append(node_id)
        on_stack.add(node_id)
        stack.append((node_id, [t for t in journey.nodes[node_id].targets() if t in journey.nodes]))

    visit(journey.start)
    while stack:
        node_id, targets = stack[-1]
        if not targets:
            on_stack.discard(node_id)
            stack.pop()
            continue
        target = targets.pop(0)
        if target in on_stack:
            back.add((node_id, target))
        elif target not in found:
            visit(target)
    return found, back


def layers(journey: Journey) -> list[list[str]]:
    """The nodes by depth: the longest way from the start without going round a loop, so that every arrow but
    a loop's points down; in a row, in the order a walk from the start finds them. Nodes no walk from the
    start reaches come last, in the file's order."""
    found, back = _walk(journey)
    depth = dict.fromkeys(found, 0)
    for _ in found:  # longest paths over the loop-free ways on: at most one pass per node
        changed = False
        for node_id in found:
            for target in journey.nodes[node_id].targets():
                if target in depth and (node_id, target) not in back and depth[target] < depth[node_id] + 1:
                    depth[target] = depth[node_id] + 1
                    changed = True
        if not changed:
            break
    rows: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for node_id in found:
        rows[depth[node_id]].append(node_id)
    rest = [n for n in journey.nodes if n not in depth]
    return rows + ([rest] if rest else [])


def place(journey: Journey) -> tuple[dict[str, Box], int, int]:
    """Each node's box, and the drawing's width and height (room on the left for arrows that skip a row, on
    the right for loops)."""
    rows = layers(journey)
    widest = max(len(r) for r in rows)
    inner = widest * BOX_W + (widest - 1) * GAP_X
    boxes: dict[str, Box] = {}
    for depth, row in enumerate(rows):
        span = len(row) * BOX_W + (len(row) - 1) * GAP_X
        left = MARGIN + SIDE_ROOM + (inner - span) // 2
        for i, node_id in enumerate(row):
            boxes[node_id] = Box(node_id, left + i * (BOX_W + GAP_X), MARGIN + depth * (BOX_H + GAP_Y), depth)
    return boxes, MARGIN * 2 + inner + SIDE_ROOM * 2, MARGIN * 2 + len(rows) * (BOX_H + GAP_Y) - GAP_Y


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


ARROW = 'fill="none" stroke="#4a4a4a" stroke-width="1.5" marker-end="url(#jd-arrow)"'


def _edges(journey: Journey, boxes: dict[str, Box], width: int) -> list[str]:
    """Each way on: straight down to the next row; round the left side to a row further down; round the right
    side (dashed) back up a loop."""
    drawn: list[str] = []
    skips = loops = 0
    for node_id, node in journey.nodes.items():
        edges = [(t, label) for t, label in edges_of(node) if t in boxes and node_id in boxes]
        for i, (target, label) in enumerate(edges):
            start, end = boxes[node_id], boxes[target]
            sx, sy = start.x + BOX_W * (i + 1) / (len(edges) + 1), start.y + BOX_H
            ex, ey = end.x + BOX_W / 2, end.y - 2
            if end.depth == start.depth + 1:
                drawn.append(f'<path d="M{sx:.0f} {sy} L{ex:.0f} {ey}" {ARROW}/>')
                drawn.append(_label((sx + ex) / 2, sy + (ey - sy) * (0.45 + 0.1 * (i % 2)), label))
            elif end.depth > start.depth:  # skips a row: round the left side, clear of the boxes between
                skips += 1
                side = MARGIN + 8 + (skips % 4) * 12
                ex = end.x + BOX_W * 0.25
                across = sy + 14 + 20 * i  # each of a node's ways on crosses at its own height: labels apart
                path = f"M{sx:.0f} {sy} V{across} H{side} V{end.y - 10 - 6 * (skips % 3)} H{ex:.0f} V{ey}"
                drawn.append(f'<path d="{path}" {ARROW}/>' + _label((sx + side) / 2 + 20, across, label))
            else:  # a loop back up: round the right side
                loops += 1
                side = width - MARGIN - 8 - (loops % 4) * 12
                ex = end.x + BOX_W * 0.75
                path = f"M{start.x + BOX_W} {start.y + BOX_H / 2:.0f} H{side} V{end.y - 16} H{ex:.0f} V{ey}"
                drawn.append(f'<path d="{path}" {ARROW} stroke-dasharray="5 3"/>')
                drawn.append(_label(side - 30, (start.y + end.y) / 2 + BOX_H / 2, label))
    return drawn


def _box(box: Box, count: NodeCount, href: str) -> str:
    people = f"{count.waiting:,} waiting · {count.passed:,} passed · {count.left:,} left"
    kind = count.kind.replace("_", " ")
    # Named by its visible text (an aria-label would differ from it where a description is cut short; the
    # table under the diagram says each in full).
    return (
        f'<a href="{escape(href)}" class="jd-node" data-node="{escape(count.node)}">'
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
