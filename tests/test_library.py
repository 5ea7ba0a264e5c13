"""The content library: articles in three formats, tags that explain themselves, campaigns that choose their
article (or draw on the whole library), drafts, and lint and sign-off per article."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
import yaml

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.editor import record_signoff
from needlecast.campaign.definition.signoff import covered_files, stale_files
from needlecast.campaign.send.rendering import render_campaign
from needlecast.config import open_workspace
from needlecast.content.loader import load_library_for, load_vocabulary_for
from needlecast.delivery.outbox import read_outbox
from needlecast.errors import ContentError, NotFound
from needlecast.lint import lint_workspace
from tests.cli_runner import run

LIBRARY = Path(__file__).parent / "data" / "library"


@pytest.fixture()
def library_dir(workspace_dir: Path) -> Path:
    """The demo workspace with three more articles (Markdown, a messy HTML page, plain text) and a broken one."""
    for source in LIBRARY.iterdir():
        shutil.copy(source, workspace_dir / "content" / source.name)
    return workspace_dir


def _sections(library_dir: Path, article: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    library = load_library_for(open_workspace(library_dir))
    return {s.slug: (s.kind, s.concerns) for s in library.article(article).sections}


def test_every_article_in_three_formats_is_read_with_its_title_and_treatment(library_dir: Path) -> None:
    library = load_library_for(open_workspace(library_dir))
    assert library.ids == ("microneedling", "boosters", "laser", "peels")  # the default article first
    found = {a.id: (a.title, a.treatment, a.path.name) for a in library.articles.values()}
    assert found == {
        "microneedling": ("Microneedling", "Microneedling", "microneedling.txt"),
        "boosters": ("Skin boosters", "Skin boosters", "boosters.txt"),
        "laser": ("Laser resurfacing", "Laser resurfacing", "laser.html"),
        "peels": ("Chemical peels at the clinic", "Chemical peels", "peels.md"),  # front matter names it
    }
    assert _sections(library_dir, "peels") == {
        "what-is-a-chemical-peel": ("intro", ("general",)),
        "evens-out-redness-and-brown-patches": ("benefit", ("pigmentation",)),
        "clears-congested-skin": ("benefit", ("acne",)),
        "a-quick-appointment": ("benefit", ("general",)),
        "the-bottom-line": ("closing", ("general",)),
    }
    peels = library.article("peels")
    assert peels.section("evens-out-redness-and-brown-patches").line == 15  # front matter lines still count
    assert _sections(library_dir, "boosters")["softens-crow-s-feet-and-fine-lines"] == ("benefit", ("ageing",))


def test_a_messy_html_page_keeps_the_article_and_drops_the_page_around_it(library_dir: Path) -> None:
    laser = load_library_for(open_workspace(library_dir)).article("laser")
    assert [(s.slug, s.kind, s.concerns, s.line) for s in laser.sections] == [
        ("what-is-laser-resurfacing", "intro", ("general",), 13),
        ("tightens-loose-skin", "benefit", ("ageing",), 16),
        ("smooths-acne-scars", "benefit", ("acne",), 19),
        ("conclusion", "closing", ("general",), 22),
    ]
    text = " ".join(f"{s.title} {s.body}" for s in laser.sections)
    assert "outer layer of skin & gently" in text  # character references decoded
    assert "contracts the fibres under the surface, so skin looks firmer" in text  # inline markup kept as text
    assert "Results vary from person to person." in laser.section("smooths-acne-scars").body
    for furniture in ("Not a heading", "Injected", "Home", "Related", "Call us", "color", "track("):
        assert furniture not in text


@pytest.mark.parametrize(
    ("title", "body", "tags"),
    [
        ("Evens Out Redness and Brown Patches", "Fades what the sun leaves behind.", ("pigmentation",)),
        ("Tightens Loose Skin", "The heat contracts the fibres.", ("ageing",)),
        ("Tightening the Jawline", "Firmer contours.", ("ageing",)),
        ("Softens Crow's Feet", "Around the eyes.", ("ageing",)),
        ("Calms Breakouts", "Fewer spots within weeks.", ("acne",)),
        ("Fades Dark Spots", "Sun spots and age spots lighten.", ("pigmentation",)),  # "spots" in them is not acne
        ("Refines Texture", "Helps with blackheads and oily skin.", ("acne",)),  # two body terms
        ("A Quick Appointment", "Back to work the same day.", ("general",)),
    ],
)
def test_ordinary_clinic_phrasing_is_tagged_as_a_clinician_would(
    workspace_dir: Path, title: str, body: str, tags: tuple[str, ...]
) -> None:
    vocabulary = load_vocabulary_for(open_workspace(workspace_dir))
    assert vocabulary.tag(title, body) == tags


def test_tags_carry_their_reasons_and_weak_or_split_evidence_is_flagged(workspace_dir: Path) -> None:
    vocabulary = load_vocabulary_for(open_workspace(workspace_dir))
    tightening = vocabulary.explain("Tightens Loose Skin", "Loose skin and sagging improve.")
    assert tightening.tags == ("ageing",) and not tightening.review
    assert tightening.reasons[0].startswith("ageing 5 (title:") and "'loose skin'" in tightening.reasons[0]
    weak = vocabulary.explain("Safe for Everyone", "A small risk of hyperpigmentation.")
    assert weak.tags == ("general",) and weak.review.startswith("weak evidence") and "pigmentation" in weak.review
    split = vocabulary.explain("Calms Acne and Fades Melasma", "")
    assert split.tags == ("acne", "pigmentation") and split.review.startswith("split")
    # A title outweighs passing mentions in the body: the primary concern is the title's.
    ranked = vocabulary.explain("Fades Melasma", "Also good for acne and breakouts and blemishes.")
    assert ranked.tags == ("pigmentation", "acne")


def test_content_show_why_prints_the_reasons_and_list_shows_every_article(
    library_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    why = run(monkeypatch, library_dir, "content", "show", "peels", "--why", "--format", "json")
    assert why.code == 0, why.stderr
    sections = {s["slug"]: s for s in json.loads(why.stdout)["sections"]}
    assert any("'brown patches'" in r for r in sections["evens-out-redness-and-brown-patches"]["reasons"])
    table = run(monkeypatch, library_dir, "content", "show", "peels", "--why")
    assert "pigmentation: vocabulary" in table.stdout and "in the title +3" in table.stdout
    listing = run(monkeypatch, library_dir, "content", "list", "--format", "json")
    data = json.loads(listing.stdout)
    assert [a["id"] for a in data["articles"]] == ["microneedling", "boosters", "laser", "peels"]
    assert data["articles"][3]["sections"] == {"acne": 1, "ageing": 0, "pigmentation": 1, "general": 1}
    assert [p["id"] for p in data["problems"]] == ["broken"] and "broken.md" in data["problems"][0]["problem"]
    missing = run(monkeypatch, library_dir, "content", "show", "nope")
    assert missing.code != 0 and "no article 'nope'" in missing.stderr and "peels" in missing.stderr


def test_a_broken_article_is_reported_with_what_is_expected_and_the_others_load(library_dir: Path) -> None:
    workspace = open_workspace(library_dir)
    library = load_library_for(workspace)
    assert set(library.articles) == {"microneedling", "boosters", "laser", "peels"}
    with pytest.raises(ContentError, match=r"broken\.md: no sections found\. Expected '## Heading'"):
        library.article("broken")
    with pytest.raises(NotFound, match="articles: microneedling, boosters, laser, peels"):
        library.article("nope")
    found = [f for f in lint_workspace(workspace) if f.file == "content/broken.md"]
    assert [(f.rule, f.severity) for f in found] == [("content-unparsable", "error")]


def test_tag_overrides_apply_per_article(library_dir: Path) -> None:
    (library_dir / "content" / "tags.yaml").write_text(
        "peels: {a-quick-appointment: [acne, general]}\nenhances-product-absorption: [ageing]\n"
    )
    library = load_library_for(open_workspace(library_dir))
    quick = library.article("peels").section("a-quick-appointment")
    assert quick.concerns == ("acne", "general") and quick.reasons == ("set by hand",)
    assert library.default.section("enhances-product-absorption").concerns == ("ageing",)  # plain entries: default
    (library_dir / "content" / "tags.yaml").write_text("peels: {no-such-section: [acne]}\n")
    library = load_library_for(open_workspace(library_dir))
    assert "laser" in library.articles and "peels" not in library.articles
    with pytest.raises(ContentError, match="no-such-section"):
        library.article("peels")


LIBRARY_WIDE = """
id: acne-guide
kind: broadcast
segment: all-leads
time_zone: Europe/London
steps:
  - id: guide
    template: emails/concern_guide
    sections: {concern: auto, from: all}
schedule: {send_at: "2027-03-02 09:00"}
"""


def test_a_library_wide_step_gives_each_variant_its_concerns_sections_from_every_article(library_dir: Path) -> None:
    (library_dir / "campaigns" / "acne-guide.yaml").write_text(LIBRARY_WIDE)
    ctx = CampaignContext.load(open_workspace(library_dir))
    assert not ctx.problems
    renders = render_campaign(ctx, ctx.campaign("acne-guide"))
    acne = renders[("guide", "acne", "")].text
    for heading in (
        "MICRONEEDLING: IMPROVES ACNE AND SCARRING",
        "LASER RESURFACING: SMOOTHS ACNE SCARS",
        "CHEMICAL PEELS: CLEARS CONGESTED SKIN",
    ):
        assert heading in acne
    assert "BROWN PATCHES" not in acne and "LOOSE SKIN" not in acne
    pigmentation = renders[("guide", "pigmentation", "")].text
    assert "CHEMICAL PEELS: EVENS OUT REDNESS AND BROWN PATCHES" in pigmentation and "ACNE" not in pigmentation
    assert renders[("guide", "acne", "")].subject == "Which of our treatments could suit you"  # no concern in it
    # A library-wide step's sign-off covers every article.
    covered = covered_files(ctx, ctx.campaign("acne-guide"))
    assert {"content/peels.md", "content/laser.html", "content/boosters.txt", "content/microneedling.txt"} <= set(
        covered
    )


def test_a_campaign_naming_an_unknown_article_is_refused_with_the_articles_there_are(library_dir: Path) -> None:
    text = LIBRARY_WIDE.replace("    sections: {concern: auto, from: all}\n", "    article: peeling\n")
    (library_dir / "campaigns" / "acne-guide.yaml").write_text(text)
    ctx = CampaignContext.load(open_workspace(library_dir))
    [problem] = ctx.problems
    assert problem.field == "steps[0].article" and "'peeling' is not an article" in str(problem)
    assert "peels" in problem.fix and "laser" in problem.fix


def test_a_drafted_campaign_plans_previews_and_sends_through_the_outbox_for_every_variant(
    library_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(monkeypatch, library_dir, "audience", "import", str(library_dir / "audiences" / "sample.csv")).code == 0
    drafted = run(monkeypatch, library_dir, "content", "draft", "peels", "--kind", "broadcast")
    assert drafted.code == 0, drafted.stderr
    path = library_dir / "campaigns" / "peels-broadcast.yaml"
    assert "No section of the article is about ageing: those leads get the general variant." in drafted.stdout
    document = yaml.safe_load(path.read_text())
    assert document["draft"] is True and "signoff" not in document and document["article"] == "peels"
    assert document["steps"][0]["variants"] == ["acne", "pigmentation", "general"]
    assert path.read_text().startswith("# Drafted by `needlecast content draft peels`")
    assert sorted(p.name for p in (library_dir / "campaigns").iterdir()) == [
        "new-lead-nurture.yaml",
        "peels-broadcast.yaml",
        "spring-guide.yaml",
    ]  # the draft, and nothing else
    again = run(monkeypatch, library_dir, "content", "draft", "peels", "--kind", "broadcast")
    assert again.code != 0 and "--force" in again.stderr

    plan = run(monkeypatch, library_dir, "plan", "peels-broadcast", "--days", "30", "--format", "json")
    assert plan.code == 0, plan.stderr
    for variant in ("acne", "pigmentation", "general"):
        shown = run(monkeypatch, library_dir, "preview", "--campaign", "peels-broadcast", "--concern", variant)
        assert shown.code == 0, shown.stderr
        assert "subject: What chemical peels can do for your skin" in shown.stdout
    refused = run(monkeypatch, library_dir, "send", "peels-broadcast", "--now")
    assert refused.code != 0 and "draft" in refused.stderr

    path.write_text(path.read_text().replace("draft: true\n", ""))
    sent = run(monkeypatch, library_dir, "send", "peels-broadcast", "--now", NEEDLECAST_QUIET_HOURS="off")
    assert sent.code == 0, sent.stderr
    requests = [e["request"] for e in read_outbox(library_dir / "outbox")]
    assert {r["subject"] for r in requests} == {"What chemical peels can do for your skin"}
    bodies = {r["content"][1]["value"] for r in requests}  # the HTML parts
    assert len(requests) == 3 and len(bodies) == 3  # one rendering per variant
    assert any("Evens Out Redness and Brown Patches" in b for b in bodies)
    assert any("Clears Congested Skin" in b for b in bodies)
    assert not any("Microneedling" in b for b in bodies)


def test_lint_names_the_articles_file_and_line_and_a_sign_off_shows_a_later_change(library_dir: Path) -> None:
    peels = library_dir / "content" / "peels.md"
    peels.write_text(peels.read_text().replace("for a calmer, more even look.", "with guaranteed results."))
    workspace = open_workspace(library_dir)
    claims = [f for f in lint_workspace(workspace) if f.file == "content/peels.md" and "guaranteed" in f.message]
    assert [(f.line, f.severity) for f in claims] == [(16, "error")]
    # The gate reads a campaign's own articles: a peels campaign is held by the peels claim, and a
    # microneedling-free campaign is not held by microneedling's.
    narrowed = lint_workspace(workspace, articles=["laser"])
    assert not [f for f in narrowed if f.file.startswith("content/") and f.severity == "error"]

    (library_dir / "campaigns" / "acne-guide.yaml").write_text(
        LIBRARY_WIDE.replace("sections: {concern: auto, from: all}", "article: peels")
    )
    ctx = CampaignContext.load(workspace)
    record_signoff(ctx, ctx.campaign("acne-guide"), "Dr Reviewer", "peel claims reviewed", date(2026, 12, 4))
    ctx = CampaignContext.load(workspace)
    assert stale_files(ctx, ctx.campaign("acne-guide")) == []
    peels.write_text(peels.read_text() + "\nA line added after the review.\n")
    ctx = CampaignContext.load(workspace)
    assert stale_files(ctx, ctx.campaign("acne-guide")) == ["content/peels.md"]
    (library_dir / "content" / "laser.html").write_text("<h2>Changed</h2><p>Another article changed.</p>")
    ctx = CampaignContext.load(workspace)
    assert stale_files(ctx, ctx.campaign("acne-guide")) == ["content/peels.md"]  # not an article it uses
