"""A sequence as a journey: `kind: sequence` files run through the journey engine as a straight line.

A sequence's steps are emails at fixed delays after enrolment. As a journey, each step becomes two nodes: a
wait whose delay is counted from the person's entry (`WaitNode.from_entry`), with a generated id, then the
send node with the step's own id. So:

    steps: [{id: welcome, delay: 0d}, {id: deep-dive, delay: 3d}]
    ->  wait-1 (entry + 0d) -> welcome -> wait-2 (entry + 3d) -> deep-dive -> (end)

Contract:
- The send nodes keep the step ids and a sequence never re-enters (`reentry: never`), so the ledger key of
  each email stays (campaign, step, contact): the rows sent before the switch are the same rows, and nobody
  already mailed gets a step twice.
- Entry is the sequence's `enrol:` rule (`ENTRY_ENROL`); the sequence's `exits:` end the entry wherever the
  person is (the sweeper reads them from the campaign); there is no goal.
- A generated wait id never collides with a step id (`wait-N`, lengthened with `-x` until it is free).
"""

from __future__ import annotations

from collections.abc import Sequence

from needlecast.campaign.definition.model import Step
from needlecast.campaign.journeys.model import ENTRY_ENROL, Entry, Journey, Node, Reentry, SendNode, WaitNode


def wait_id(number: int, taken: set[str]) -> str:
    """The generated id of the wait before the `number`th step (1-based), free among `taken`."""
    candidate = f"wait-{number}"
    while candidate in taken:
        candidate += "-x"
    return candidate


def straight_line(steps: Sequence[Step]) -> Journey:
    """The journey of a sequence's `steps` (see the module contract)."""
    taken = {s.id for s in steps}
    ids: list[str] = []
    for number, step in enumerate(steps, start=1):
        generated = wait_id(number, taken)
        taken.add(generated)
        ids += [generated, step.id]
    nodes: dict[str, Node] = {}
    for position, step in enumerate(steps):
        wait, send = ids[2 * position], ids[2 * position + 1]
        following = ids[2 * position + 2] if 2 * position + 2 < len(ids) else ""
        nodes[wait] = WaitNode(wait, step.index, send, delay=step.delay, from_entry=True)
        nodes[send] = SendNode(send, step.index, following)
    return Journey(nodes, Entry(ENTRY_ENROL), Reentry())
