"""The user guides' pictures cannot go stale: every picture the guides (docs/**/*.md) and the README show is one
that a browser test takes (`save_doc_screenshot(page, "NAME")` in tests/, which writes docs/screenshots/NAME.png
each time the test runs), every such picture is committed (the site builds from a fresh clone) and shown
somewhere, and the site's navigation and links lead to files that exist. `mkdocs build --strict` (.ci/run) checks
the links again, with the anchors; these checks need no MkDocs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
SCREENSHOTS = DOCS / "screenshots"
# A Markdown image or link: ![alt](target) or [words](target), the target up to a space or ")".
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)")


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _shown() -> dict[Path, list[str]]:
    """Each image file the guides and the README show, resolved, with the pages that show it."""
    shown: dict[Path, list[str]] = {}
    for page in [*_pages(), REPO / "README.md"]:
        for target in IMAGE.findall(page.read_text(encoding="utf-8")):
            assert "://" not in target, f"{page.relative_to(REPO)} shows a picture from elsewhere: {target}"
            shown.setdefault((page.parent / target).resolve(), []).append(str(page.relative_to(REPO)))
    return shown


def _taken() -> dict[str, str]:
    """The name of every picture a test takes with `save_doc_screenshot`, with where (file:line)."""
    taken: dict[str, str] = {}
    unnamed: list[str] = []
    for path in sorted((REPO / "tests").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if "save_doc_screenshot" not in source:
            continue  # parsing only the files that call it keeps this test quick
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if called != "save_doc_screenshot":
                continue
            where = f"{path.name}:{node.lineno}"
            name = node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                taken[name.value] = where
            else:
                unnamed.append(where)
    # A name made at run time could not be checked against the guides here.
    assert unnamed == [], f"save_doc_screenshot needs its name written out: {unnamed}"
    return taken


def test_every_picture_the_guides_and_the_readme_show_is_taken_by_a_browser_test() -> None:
    shown = _shown()
    assert shown, "the guides show pictures"
    taken = _taken()
    outside = {str(path): pages for path, pages in shown.items() if path.parent != SCREENSHOTS}
    assert outside == {}, "a picture outside docs/screenshots/ is taken by no test"
    untaken = {path.stem: pages for path, pages in shown.items() if path.stem not in taken}
    assert untaken == {}, "pictures the guides show that no test takes (save_doc_screenshot): " + str(untaken)
    missing = {path.name: pages for path, pages in shown.items() if not path.is_file()}
    assert missing == {}, "pictures the guides show that are not in docs/screenshots/ (run the tests, commit them)"


def test_every_picture_a_test_takes_is_committed_and_shown() -> None:
    taken = _taken()
    assert taken, "the browser tests take the guides' pictures"
    shown = {path.stem for path in _shown()}
    # Not a picture half-written by a browser test running beside this one (`.NAME.PID.THREAD.png`, then renamed).
    files = {path.stem for path in SCREENSHOTS.glob("*.png") if not path.name.startswith(".")}
    assert {name: where for name, where in taken.items() if name not in files} == {}, (
        "pictures a test takes that are not committed in docs/screenshots/"
    )
    assert {name: where for name, where in taken.items() if name not in shown} == {}, (
        "pictures a test takes that no guide shows: show them, or stop taking them"
    )
    assert sorted(files - set(taken)) == [], "files in docs/screenshots/ that no test takes any more: remove them"


def _nav_files(entries: object) -> list[str]:
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, list):
        return [found for entry in entries for found in _nav_files(entry)]
    if isinstance(entries, dict):
        return [found for value in entries.values() for found in _nav_files(value)]
    return []


def test_the_sites_navigation_and_links_lead_to_files_that_exist() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["docs_dir"] == "docs" and config["theme"]["name"] == "material" and config["strict"] is True
    nav = _nav_files(config["nav"])
    assert nav[0] == "index.md" and {
        f"guides/{who}.md" for who in ("marketer", "reviewer", "analyst", "operator")
    } <= set(nav)
    assert [page for page in nav if not (DOCS / page).is_file()] == []
    broken = []
    for page in _pages():
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith(("#", "mailto:")):
                continue
            if not (page.parent / target.split("#")[0]).resolve().is_file():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []
    analyst = (DOCS / "guides" / "analyst.md").read_text(encoding="utf-8")
    assert "](../analysis.ipynb)" in analyst  # the example notebook, which tests/test_notebook.py executes
