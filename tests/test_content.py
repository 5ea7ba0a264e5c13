from __future__ import annotations

from pathlib import Path

import pytest

from needlecast.config import Workspace
from needlecast.content.loader import load_article, load_vocabulary_for
from needlecast.content.parser import parse_article
from needlecast.errors import ConfigurationError, ContentError


def test_sample_article_sections_and_tags_are_pinned(workspace: Workspace) -> None:
    article = load_article(workspace)
    mapping = {s.title: (s.kind, s.concerns) for s in article.sections}
    assert mapping == {
        "What is Microneedling?": ("intro", ("general",)),
        "Stimulates Collagen Production": ("benefit", ("ageing", "acne")),
        "Reduces Hyperpigmentation": ("benefit", ("pigmentation",)),
        "Enhances Product Absorption": ("benefit", ("general",)),
        "Improves Acne and Scarring": ("benefit", ("acne",)),
        "Minimizes Pore Size": ("benefit", ("ageing",)),
        "Safe for All Skin Types": ("benefit", ("general",)),
        "In short": ("closing", ("general",)),
    }
    assert article.section("reduces-hyperpigmentation").line == 10
    assert article.title == "Microneedling"


def test_each_concern_leads_with_its_own_section(workspace: Workspace) -> None:
    article = load_article(workspace)
    assert article.lead_for("acne").slug == "improves-acne-and-scarring"
    assert article.lead_for("ageing").slug == "stimulates-collagen-production"
    assert article.lead_for("pigmentation").slug == "reduces-hyperpigmentation"
    assert [s.slug for s in article.more_for("ageing")][:1] == ["minimizes-pore-size"]
    assert "stimulates-collagen-production" in [s.slug for s in article.more_for("acne")]


def test_markdown_article_parses_into_sections(workspace: Workspace, tmp_path: Path) -> None:
    source = tmp_path / "peel.md"
    source.write_text(
        "# Chemical peels\n\nA short summary.\n\n## What is a peel?\nAn exfoliating treatment.\n\n"
        "## Benefits\n\n### Fades dark spots\nLightens melasma and dark spots over weeks.\n\n"
        "### Softens fine lines\nHelps with wrinkles.\n\n## Conclusion\nTalk to us first.\n",
        encoding="utf-8",
    )
    article = parse_article(source, load_vocabulary_for(workspace))
    assert article.title == "Chemical peels"
    assert [(s.slug, s.kind, s.concerns) for s in article.sections] == [
        ("what-is-a-peel", "intro", ("general",)),
        ("fades-dark-spots", "benefit", ("pigmentation",)),
        ("softens-fine-lines", "benefit", ("ageing",)),
        ("conclusion", "closing", ("general",)),
    ]
    assert article.section("fades-dark-spots").line == 10


def test_article_without_sections_names_file_and_expectation(workspace: Workspace, tmp_path: Path) -> None:
    source = tmp_path / "blob.txt"
    source.write_text("just one paragraph of text with no structure at all\n", encoding="utf-8")
    with pytest.raises(ContentError, match=r"blob\.txt: no sections found\. Expected a heading line"):
        parse_article(source, load_vocabulary_for(workspace))


def test_tag_override_file_replaces_the_guess(workspace: Workspace) -> None:
    (workspace.root / "content" / "tags.yaml").write_text("enhances-product-absorption: [pigmentation]\n")
    article = load_article(workspace)
    assert article.section("enhances-product-absorption").concerns == ("pigmentation",)


def test_tag_override_for_unknown_section_or_concern_is_refused(workspace: Workspace) -> None:
    tags = workspace.root / "content" / "tags.yaml"
    tags.write_text("no-such-section: [acne]\n")
    with pytest.raises(ContentError, match="no-such-section"):
        load_article(workspace)
    tags.write_text("minimizes-pore-size: [rosacea]\n")
    with pytest.raises(ContentError, match="rosacea"):
        load_article(workspace)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Acne", "acne"),
        ("anti-aging", "ageing"),
        ("Anti Ageing", "ageing"),
        ("dark spots", "pigmentation"),
        ("MELASMA", "pigmentation"),
        ("breakouts", "acne"),
        ("rosacea", None),
        ("", None),
    ],
)
def test_vocabulary_normalises_synonyms_and_reports_unknowns(workspace: Workspace, value: str, expected: str) -> None:
    assert load_vocabulary_for(workspace).normalise(value) == expected


def test_an_article_is_parsed_again_when_its_text_or_overrides_change_and_kept_while_they_do_not(
    workspace: Workspace, tmp_path: Path
) -> None:
    vocabulary = load_vocabulary_for(workspace)
    source = tmp_path / "peel.md"
    source.write_text("# Peels\n\n## Benefits\n\n### Fades dark spots\nLightens melasma.\n", encoding="utf-8")
    first = parse_article(source, vocabulary)
    assert parse_article(source, vocabulary) is first  # the same text: kept, not tagged again
    # The same length, the same moment for all the file system says: only the text tells them apart.
    source.write_text("# Peels\n\n## Benefits\n\n### Fades fine lines\nSoftens wrinkle.\n", encoding="utf-8")
    edited = parse_article(source, vocabulary)
    assert [(s.slug, s.concerns) for s in edited.benefits] == [("fades-fine-lines", ("ageing",))]
    overridden = parse_article(source, vocabulary, {"fades-fine-lines": ["acne"]})
    assert overridden.section("fades-fine-lines").concerns == ("acne",)
    assert parse_article(source, vocabulary).section("fades-fine-lines").concerns == ("ageing",)


def test_a_vocabulary_is_read_again_when_its_file_changes(workspace: Workspace) -> None:
    path = workspace.path(workspace.settings.content.vocabulary)
    first = load_vocabulary_for(workspace)
    assert load_vocabulary_for(workspace) is first  # the same text: parsed once
    path.write_text(path.read_text(encoding="utf-8") + "  redness:\n    synonyms: [rosacea]\n", encoding="utf-8")
    assert load_vocabulary_for(workspace).normalise("rosacea") == "redness"
    path.write_text("concerns: [not, a, mapping]\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="expected a 'concerns:' mapping"):
        load_vocabulary_for(workspace)
