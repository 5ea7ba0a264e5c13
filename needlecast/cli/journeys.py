"""Journey commands: journey check (and repair), journey enter, journey preview, journey save.

Every command goes through `needlecast.actions.journeys`; the changes are audited as the local operator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from needlecast.cli.common import (
    FormatOption,
    OutputFormat,
    console,
    current_store,
    current_workspace,
    group,
    operator,
    print_json,
    setup_logging,
    table,
)
from needlecast.errors import InvalidRequest

journey_app = group("journey", "Journeys: check and repair positions, enter people, preview and save a change.")

JourneyArgument = Annotated[str, typer.Argument(help="Journey id (a campaign of kind journey).")]
MoveOption = Annotated[
    list[str] | None,
    typer.Option(
        "--move",
        help="NODE=TARGET: where the people waiting at a removed node go (a node of the journey, or exit). "
        "Repeat for each node.",
    ),
]


def _moves(given: list[str] | None) -> dict[str, str]:
    moves = {}
    for item in given or []:
        node, sep, target = item.partition("=")
        if not sep or not node or not target:
            raise InvalidRequest(f"--move '{item}' is not NODE=TARGET (e.g. --move pause=exit)")
        moves[node.strip()] = target.strip()
    return moves


@journey_app.command("check")
def journey_check(
    journey: Annotated[str | None, typer.Argument(help="One journey (default: every journey).")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Move stranded people as --move says, then sweep.")] = False,
    move: MoveOption = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Find positions at nodes a journey no longer has (stranded) and positions overdue past the sweeper's
    period; with --repair, move the stranded ones (--move NODE=TARGET or NODE=exit) and advance the rest.
    Exits 1 while any journey needs a repair."""
    from needlecast.actions.journeys import check, check_all
    from needlecast.actions.journeys import repair as repair_journey

    setup_logging()
    workspace = current_workspace()
    engine = current_store(workspace)
    reports = [check(engine, workspace, journey)] if journey else check_all(engine, workspace)
    if output == OutputFormat.json and not repair:
        print_json(
            [
                {"journey": r.campaign_id, "stranded": r.stranded, "overdue": r.overdue, "oldest_due": r.oldest_due}
                for r in reports
            ]
        )
        raise typer.Exit(0 if all(r.healthy for r in reports) else 1)
    shown = table("Journey check", ["journey", "stranded (node: people)", "overdue", "oldest due"], right=("overdue",))
    for report in reports:
        stranded = ", ".join(f"{node}: {count}" for node, count in sorted(report.stranded.items())) or "none"
        oldest = f"{report.oldest_due:%Y-%m-%d %H:%M} UTC" if report.oldest_due else ""
        shown.add_row(escape(report.campaign_id), escape(stranded), str(report.overdue), oldest)
    console.print(shown)
    if not repair:
        if any(not r.healthy for r in reports):
            console.print("Repair with: needlecast journey check JOURNEY --repair --move NODE=TARGET (or NODE=exit)")
            raise typer.Exit(1)
        return
    if not journey:
        raise InvalidRequest("--repair needs the journey: needlecast journey check JOURNEY --repair ...")
    done = repair_journey(engine, workspace, operator(), journey, _moves(move))
    for node, count in done.items():
        console.print(f"{escape(node)}: {count} moved")


@journey_app.command("enter")
def journey_enter(
    journey: JourneyArgument,
    contacts: Annotated[list[int], typer.Argument(help="Contact ids to put into the journey.")],
) -> None:
    """Put people into a journey at its first node (its re-entry rule applies)."""
    from needlecast.actions.journeys import enter

    setup_logging()
    workspace = current_workspace()
    result = enter(current_store(workspace), workspace, operator(), journey, contacts)
    console.print(
        f"{len(result.entered)} entered; {len(result.already_in)} not entered (in it, or its re-entry rule "
        f"refuses); {len(result.unknown)} unknown contact id(s)"
    )


@journey_app.command("preview")
def journey_preview(
    journey: JourneyArgument,
    file: Annotated[Path, typer.Argument(help="The new version of the journey's file.", exists=True)],
    move: MoveOption = None,
) -> None:
    """Say what saving FILE as the journey would do to the people waiting in it (changes nothing)."""
    from needlecast.readmodels.journeys import preview_save

    workspace = current_workspace()
    preview = preview_save(workspace, current_store(workspace), journey, file.read_text(encoding="utf-8"))
    for node, count in sorted(preview.waiting.items()):
        console.print(f"{escape(node)}: {count} waiting")
    for line in preview.describe(_moves(move)):
        console.print(escape(line))


@journey_app.command("save")
def journey_save(
    journey: JourneyArgument,
    file: Annotated[Path, typer.Argument(help="The new version of the journey's file.", exists=True)],
    move: MoveOption = None,
) -> None:
    """Save FILE as the journey's new version: the people of removed nodes go where --move says (refused
    until each such node has a destination), changed waits apply to those waiting; versioned and audited."""
    from needlecast.actions.journeys import save

    setup_logging()
    workspace = current_workspace()
    moves = _moves(move)
    result = save(current_store(workspace), workspace, operator(), journey, file.read_text(encoding="utf-8"), moves)
    console.print(f"{escape(journey)}: version {result.version} saved")
    for line in result.preview.describe(moves):
        console.print(escape(line))
