"""`needlecast content`: the article's sections and their concern tags."""

from __future__ import annotations

from needlecast.cli.common import FormatOption, OutputFormat, console, content_app, current_workspace, print_json, table


@content_app.command("show")
def content_show(format: FormatOption = OutputFormat.table) -> None:
    """Print the article's sections and their concern tags."""
    from needlecast.content.loader import load_article

    article = load_article(current_workspace())
    if format == OutputFormat.json:
        print_json(
            {
                "file": article.path.name,
                "title": article.title,
                "sections": [
                    {"line": s.line, "kind": s.kind, "slug": s.slug, "title": s.title, "concerns": list(s.concerns)}
                    for s in article.sections
                ],
            }
        )
        return
    shown = table(
        f"{article.title or article.path.name} ({article.path.name})",
        ["line", "kind", "slug", "title", "concerns"],
        right=("line",),
    )
    for section in article.sections:
        shown.add_row(str(section.line), section.kind, section.slug, section.title, ", ".join(section.concerns))
    console.print(shown)
