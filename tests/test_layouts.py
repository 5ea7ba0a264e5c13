"""Benefit sections found in the layouts clinics write them in, in each of the three formats."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from needlecast.content.model import KIND_BENEFIT, KIND_DETAIL, KIND_SECTION, Article
from needlecast.content.parser import parse_article
from needlecast.content.vocabulary import Vocabulary, load_vocabulary
from needlecast.errors import ContentError

REPO = Path(__file__).resolve().parent.parent

INTRO = ("What is a chemical peel?", "A peel is a solution that renews the surface of the skin over a few days.")
BENEFITS = [
    ("Clears congested pores", "Salicylic acid dissolves the oil that blocks pores and causes blackheads.", "acne"),
    ("Softens fine lines", "Fresh collagen makes fine lines and wrinkles look softer.", "ageing"),
    ("Fades dark patches", "Melasma and sun spots lighten over a course of peels.", "pigmentation"),
]
QUESTIONS = {
    "Clears congested pores": "Can a peel clear congested pores?",
    "Softens fine lines": "Will it soften my fine lines?",
    "Fades dark patches": "Does it fade dark patches?",
}
DETAILS = [
    ("Who is it for?", "Most skin types. We check yours at a consultation first."),
    ("Downtime", "Expect light flaking for three days."),
    ("Prices", "From 95 pounds a session, or 250 for a course of three."),
]


def _md(benefits: str, faq: bool = False) -> str:
    details = "".join(f"## {t}\n\n{b}\n\n" for t, b in DETAILS) if not faq else ""
    return f"# Chemical peels\n\n## {INTRO[0]}\n\n{INTRO[1]}\n\n{benefits}\n{details}## The bottom line\n\nAsk us.\n"


def _txt(benefits: str) -> str:
    details = "".join(f"{t}{'' if t.endswith('?') else ':'}\n{b}\n\n" for t, b in DETAILS)
    return f"{INTRO[0]}\n{INTRO[1]}\n\n{benefits}\n{details}"


def _html(benefits: str, furniture: str = "") -> str:
    details = "".join(f"<h2>{t}</h2><p>{b}</p>\n" for t, b in DETAILS)
    return (
        f"<html><head><title>Peels</title></head><body>{furniture}<h1>Chemical peels</h1>\n"
        f"<h2>{INTRO[0]}</h2>\n<p>{INTRO[1]}</p>\n{benefits}\n{details}<h2>The bottom line</h2><p>Ask us.</p>"
        "</body></html>"
    )


def _each(line: Callable[[str, str], str]) -> str:
    return "".join(line(title, body) for title, body, _ in BENEFITS)


LAYOUTS: dict[tuple[str, str], tuple[str, str]] = {
    # (layout, format): (file suffix, article text)
    ("headings", "md"): (".md", _md("## Benefits\n\n" + _each(lambda t, b: f"### {t}\n\n{b}\n\n"))),
    ("headings", "txt"): (".txt", _txt(_each(lambda t, b: f"{t}:\n{b}\n\n"))),
    ("headings", "html"): (".html", _html("<h2>Benefits</h2>" + _each(lambda t, b: f"<h3>{t}</h3><p>{b}</p>\n"))),
    ("lead-in list", "md"): (
        ".md",
        _md(
            "## Benefits\n\n"
            f"- **{BENEFITS[0][0]}** — {BENEFITS[0][1]}\n"
            f"- **{BENEFITS[1][0]}:** {BENEFITS[1][1]}\n"
            f"- [{BENEFITS[2][0]}](/pigmentation) - {BENEFITS[2][1]}\n\n"
        ),
    ),
    ("lead-in list", "txt"): (
        ".txt",
        _txt("Benefits:\n" + _each(lambda t, b: f"• {t} — {b}\n") + "\n"),
    ),
    ("lead-in list", "html"): (
        ".html",
        _html(
            "<h2>Benefits</h2><ol>"
            f"<li><strong>{BENEFITS[0][0]}</strong> — {BENEFITS[0][1]}</li>"
            f"<li><b>{BENEFITS[1][0]}.</b> {BENEFITS[1][1]}</li>"
            f'<li><a href="/pigmentation">{BENEFITS[2][0]}</a>: {BENEFITS[2][1]}</li></ol>'
        ),
    ),
    ("title-body paragraphs", "md"): (".md", _md("## Benefits\n\n" + _each(lambda t, b: f"{t} — {b}\n\n"))),
    ("title-body paragraphs", "txt"): (".txt", _txt(_each(lambda t, b: f"{t}: {b}\n\n"))),
    ("title-body paragraphs", "html"): (".html", _html(_each(lambda t, b: f"<p>{t} — {b}</p>\n"))),
    ("definition list", "md"): (".md", _md("## Benefits\n\n" + _each(lambda t, b: f"{t}\n: {b}\n\n"))),
    ("definition list", "txt"): (".txt", _txt("Benefits:\n\n" + _each(lambda t, b: f"{t}\n: {b}\n\n"))),
    ("definition list", "html"): (
        ".html",
        _html("<h2>Benefits</h2><dl>" + _each(lambda t, b: f"<dt>{t}</dt><dd>{b}</dd>") + "</dl>"),
    ),
    ("cards", "md"): (".md", _md("## Why choose a peel?\n\n" + _each(lambda t, b: f"### {t}\n\n{b}\n\n"))),
    ("cards", "txt"): (".txt", _txt(_each(lambda t, b: f"{t}:\n{b}\n\n"))),
    ("cards", "html"): (
        ".html",
        _html(
            '<section class="treatments"><h2>What can a peel do for you?</h2><div class="grid">'
            + _each(lambda t, b: f'<div class="card"><h3>{t}</h3><p>{b}</p></div>')
            + "</div></section>"
        ),
    ),
    ("faq", "md"): (
        ".md",
        _md(
            "## Frequently asked questions\n\n"
            + _each(lambda t, b: f"### {QUESTIONS[t]}\n\n{b}\n\n")
            + "".join(f"### {t}\n\n{b}\n\n" for t, b in DETAILS),
            faq=True,
        ),
    ),
    ("faq", "txt"): (".txt", _txt(_each(lambda t, b: f"{QUESTIONS[t]}\n{b}\n\n"))),
    ("faq", "html"): (
        ".html",
        _html("<h2>FAQs</h2>" + _each(lambda t, b: f"<h3>{QUESTIONS[t]}</h3><p>{b}</p>\n")),
    ),
}


@pytest.fixture(scope="module")
def vocabulary() -> Vocabulary:
    return load_vocabulary(REPO / "content" / "vocabulary.yaml")


def _parse(tmp_path: Path, vocabulary: Vocabulary, suffix: str, text: str) -> Article:
    path = tmp_path / f"peels{suffix}"
    path.write_text(text, encoding="utf-8")
    return parse_article(path, vocabulary)


@pytest.mark.parametrize(("layout", "fmt"), sorted(LAYOUTS))
def test_benefits_are_found_and_tagged_in_every_layout_and_format(
    tmp_path: Path, vocabulary: Vocabulary, layout: str, fmt: str
) -> None:
    suffix, text = LAYOUTS[(layout, fmt)]
    article = _parse(tmp_path, vocabulary, suffix, text)
    by_title = {s.title: s for s in article.sections}
    for title, body, concern in BENEFITS:
        shown = QUESTIONS[title] if layout == "faq" else title
        assert shown in by_title, (shown, [(s.title, s.kind) for s in article.sections])
        section = by_title[shown]
        assert section.kind in (KIND_BENEFIT, KIND_SECTION) and section.body == body
        assert section.concerns[0] == concern, (shown, section.reasons)
    # Its introduction, and the sections about the treatment rather than a benefit, are recognised as such.
    assert article.intro is not None and article.intro.title.rstrip("?") == INTRO[0].rstrip("?")
    for title, _ in DETAILS:
        if title in by_title:
            assert by_title[title].kind == KIND_DETAIL and by_title[title].concerns == ("general",)
    assert {s.title for s in article.benefits} == {QUESTIONS[t] if layout == "faq" else t for t, _, _ in BENEFITS}


def test_a_source_line_is_kept_for_each_list_item(tmp_path: Path, vocabulary: Vocabulary) -> None:
    suffix, text = LAYOUTS[("lead-in list", "md")]
    article = _parse(tmp_path, vocabulary, suffix, text)
    lines = text.splitlines()
    for title, _, _ in BENEFITS:
        section = next(s for s in article.sections if s.title == title)
        assert title in lines[section.line - 1]


def test_a_saved_web_page_keeps_the_article_and_drops_banners_offers_prices_and_reviews(
    tmp_path: Path, vocabulary: Vocabulary
) -> None:
    page = (
        "<html><head><title>Peels | Clinic</title></head><body>"
        '<div id="cookie-consent"><h3>We value your privacy</h3><p>We use cookies to improve pores, sorry, pages.</p>'
        "<button>Accept</button></div>"
        '<nav><a href="/">Home</a></nav>'
        '<div class="promo-banner"><h2>Winter offer: 20% off peels</h2><p>Book by Friday.</p></div>'
        "<main><h1>Chemical peels</h1>"
        f"<h2>{INTRO[0]}</h2><p>{INTRO[1]}</p><h2>Benefits</h2><ul>"
        + _each(lambda t, b: f"<li><strong>{t}</strong> — {b}</li>")
        + "</ul>"
        '<div class="price-list"><h2>Peel prices</h2><p>Superficial peel 95</p></div>'
        '<section class="testimonials"><h2>What our clients say</h2><p>My acne scars are gone!</p></section>'
        "</main>"
        '<aside class="book-now"><h2>Book now</h2><p>Call us today.</p></aside>'
        '<div class="opening-hours"><h2>Opening hours</h2><p>Mon-Fri 9-5</p></div>'
        "</body></html>"
    )
    article = _parse(tmp_path, vocabulary, ".html", page)
    titles = [s.title for s in article.sections]
    assert titles == [INTRO[0], *(t for t, _, _ in BENEFITS)]
    assert [s.concerns[0] for s in article.benefits] == ["acne", "ageing", "pigmentation"]


def test_an_article_without_benefits_says_which_layouts_were_tried(tmp_path: Path, vocabulary: Vocabulary) -> None:
    with pytest.raises(ContentError) as raised:
        _parse(tmp_path, vocabulary, ".md", "# Peels\n\n## Prices\n\nFrom 95.\n\n## Opening hours\n\nMon-Fri.\n")
    message = str(raised.value)
    assert "no benefit sections" in message and "definition lists" in message and "FAQ" in message
