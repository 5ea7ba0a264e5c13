"""The compiled templates every `Pages` of a folder shares (`web.common.CompiledPages`)."""

from __future__ import annotations

from pathlib import Path

from needlecast.web.common import Pages, compiled_pages


def test_pages_of_one_folder_compile_a_template_once_and_again_when_it_is_edited(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text("<p>{{ greeting }}</p>", encoding="utf-8")
    first = Pages(tmp_path)
    assert first.render("page.html", greeting="<hi>") == "<p>&lt;hi&gt;</p>"  # autoescaped, as ever
    compiled = compiled_pages(tmp_path)
    stored = dict(compiled._code)
    assert len(stored) == 1
    second = Pages(tmp_path)
    second.env.compile = None  # type: ignore[assignment,method-assign]  # a compile now would fail the test
    assert second.render("page.html", greeting="again") == "<p>again</p>"
    (tmp_path / "page.html").write_text("<h1>{{ greeting }}</h1>", encoding="utf-8")
    third = Pages(tmp_path)
    assert third.render("page.html", greeting="edited") == "<h1>edited</h1>"  # its checksum changed
    assert compiled._code != stored
