"""`needlecast content`: the library's articles, their sections and concern tags, and campaign drafts."""

from __future__ import annotations

from typing import Annotated

import typer

from needlecast.cli.common import (
    FormatOption,
    OutputFormat,
    console,
    content_app,
    current_store,
    current_workspace,
    err_console,
    operator,
    print_json,
    table,
)


@content_app.command("list")
def content_list(format: FormatOption = OutputFormat.table) -> None:
    """Every article of content/ with its sections per concern; files that cannot be read, with why."""
    from needlecast.readmodels.content import library_view

    view = library_view(current_workspace())
    concerns, rows, problems = view.concerns, view.articles, view.problems
    if format == OutputFormat.json:
        print_json({"articles": rows, "problems": problems})
        return
    shown = table(
        "Content library (sections per concern)",
        ["id", "file", "treatment", *concerns, "to review"],
        right=(*concerns, "to review"),
    )
    for row in rows:
        counts = [str(row["sections"][c]) for c in concerns]
        name = f"{row['id']} (default)" if row["default"] else str(row["id"])
        shown.add_row(name, str(row["file"]), str(row["treatment"]), *counts, str(row["to_review"] or ""))
    console.print(shown)
    for problem in problems:
        err_console.print(f"not loaded: {problem['problem']}", highlight=False, markup=False)


@content_app.command("show")
def content_show(
    article: Annotated[
        str | None, typer.Argument(help="The article's id (its file name without .txt/.md/.html; `content list`).")
    ] = None,
    why: Annotated[bool, typer.Option("--why", help="Say why each section has its tags (words and weights).")] = False,
    format: FormatOption = OutputFormat.table,
) -> None:
    """Print an article's sections and their concern tags (default: the [content] article)."""
    from needlecast.readmodels.content import article_view

    chosen = article_view(current_workspace(), article)
    if format == OutputFormat.json:
        print_json(chosen)
        return
    columns = ["line", "kind", "slug", "title", "concerns", *(["why"] if why else [])]
    shown = table(f"{chosen['title']} ({chosen['file']}, treatment: {chosen['treatment']})", columns, right=("line",))
    for section in chosen["sections"]:
        tags = ", ".join(section["concerns"]) + (" (review)" if section["review"] else "")
        reasons = "\n".join([*section["reasons"], *([f"review: {section['review']}"] if section["review"] else [])])
        shown.add_row(
            str(section["line"]),
            section["kind"],
            section["slug"],
            section["title"],
            tags,
            *([reasons or "no evidence"] if why else []),
        )
    console.print(shown)
    flagged = sum(1 for s in chosen["sections"] if s["review"])
    if flagged and not why:
        console.print(f"{flagged} section(s) flagged for review: `needlecast content show {chosen['id']} --why`")


@content_app.command("draft")
def content_draft(
    article: Annotated[str, typer.Argument(help="The article's id (`needlecast content list`).")],
    kind: Annotated[
        str,
        typer.Option(
            help="sequence (welcome, deep dive, consultation), broadcast, or a clinic journey: recall, aftercare, "
            "no-show, win-back."
        ),
    ] = "sequence",
    segment: Annotated[
        str | None, typer.Option(help="The audience segment (default new-leads for a sequence, else all-leads).")
    ] = None,
    campaign_id: Annotated[
        str | None, typer.Option("--id", help="The campaign's id (default ARTICLE-nurture / ARTICLE-broadcast).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace campaigns/ID.yaml if it exists.")] = False,
    sessions: Annotated[int, typer.Option(help="recall: sessions in the course.")] = 3,
    every_weeks: Annotated[int, typer.Option(help="recall: weeks between sessions.")] = 4,
    maintenance_months: Annotated[int, typer.Option(help="recall: months after the course to maintenance.")] = 6,
) -> None:
    """Write a draft campaign (campaigns/ID.yaml, and nothing else) that uses the article, with a variant per
    concern the article covers. It is `draft: true` (never sent) and has no sign-off until you add them."""
    from needlecast.actions.campaigns import draft_campaign

    workspace = current_workspace()
    draft, path = draft_campaign(
        current_store(workspace),
        workspace,
        operator(),
        article,
        kind=kind,
        segment=segment,
        campaign_id=campaign_id,
        force=force,
        course=(sessions, every_weeks, maintenance_months),
    )
    console.print(f"wrote {path}", highlight=False, markup=False)
    for note in draft.notes[1:]:
        console.print(f"  {note}", highlight=False, markup=False)
    console.print(
        f"next: needlecast plan {draft.id} ; needlecast preview --campaign {draft.id} --concern general",
        highlight=False,
        markup=False,
    )
