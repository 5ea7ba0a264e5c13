"""The Content page over real HTTP: every article's sections with their concern and why, flagged first; a
one-click correction written to content/tags.yaml and audited, which makes a covering sign-off stale."""

from __future__ import annotations

import html
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from needlecast.accounts.audit import entries
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.signoff import stale_files
from tests.console_site import ConsoleSite, csrf_of, site

LIBRARY = Path(__file__).parent / "data" / "library"

# Pages, forms, permissions and their answers: on SQLite only (conftest's rule).
pytestmark = pytest.mark.database_independent


@pytest.fixture()
def console(workspace_dir: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    monkeypatch.setenv("NEEDLECAST_DATABASE_URL", store_url)
    with site(workspace_dir, store_url, import_sample=False) as running:
        yield running


def test_the_content_page_lists_every_article_with_concerns_and_reasons_flagged_first(console: ConsoleSite) -> None:
    page = console.login("analyst").get("/console/content")
    assert page.status_code == 200
    text = page.text
    assert "Stimulates Collagen Production" in text and "Reduces Hyperpigmentation" in text
    assert "wording" in text and "vocabulary" in text  # the reasons, in words
    assert "Used by:" in text and "spring-guide" in text
    # The analyst sees the tags but has no buttons to change them.
    assert "Correct it" not in text and 'name="concern"' not in text
    flagged = text.find('class="flagged"')
    assert flagged == -1 or flagged < text.find("Stimulates Collagen Production")


def test_a_reviewers_one_click_correction_is_written_audited_and_makes_the_sign_off_stale(
    console: ConsoleSite,
) -> None:
    reviewer = console.login("reviewer")
    token = csrf_of(reviewer.get("/console/campaigns/spring-guide").text)
    signed = reviewer.post("/console/campaigns/spring-guide/signoff", data={"csrf": token, "note": "Reviewed"})
    assert signed.status_code in (200, 303)
    ctx = CampaignContext.load(console.workspace)
    assert not stale_files(ctx, ctx.campaign("spring-guide"))

    done = reviewer.post(
        "/console/content/microneedling/enhances-product-absorption/tags",
        data={"csrf": token, "concern": "acne"},
        follow_redirects=True,
    )
    assert done.status_code == 200 and "now goes to the acne emails" in done.text
    saved = yaml.safe_load((console.workspace.root / "content" / "tags.yaml").read_text())
    assert saved == {"microneedling": {"enhances-product-absorption": ["acne"]}}
    ctx = CampaignContext.load(console.workspace)
    section = ctx.library.article("microneedling").section("enhances-product-absorption")
    assert section.concerns == ("acne",)
    assert stale_files(ctx, ctx.campaign("spring-guide")) == ["tag corrections of microneedling"]
    assert "sign-off out of date" in done.text
    with console.engine.connect() as conn:
        audited = [e for e in entries(conn) if e["action"] == "content.tagged"]
    assert len(audited) == 1 and audited[0]["target"] == "section:microneedling/enhances-product-absorption"

    back = reviewer.post(
        "/console/content/microneedling/enhances-product-absorption/tags",
        data={"csrf": token, "concern": "auto"},
        follow_redirects=True,
    )
    assert "is back to its automatic tags (general)" in back.text
    assert yaml.safe_load((console.workspace.root / "content" / "tags.yaml").read_text()) == {}


def test_a_correction_naming_an_unknown_section_or_concern_is_refused_in_words(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/content").text)
    bad = marketer.post(
        "/console/content/microneedling/no-such-section/tags",
        data={"csrf": token, "concern": "acne"},
        follow_redirects=True,
    )
    assert "has no section 'no-such-section'" in html.unescape(bad.text)
    wrong = marketer.post(
        "/console/content/microneedling/enhances-product-absorption/tags",
        data={"csrf": token, "concern": "rosacea"},
        follow_redirects=True,
    )
    assert "concerns must be one or more of" in html.unescape(wrong.text)
    assert not (console.workspace.root / "content" / "tags.yaml").read_text().strip().endswith("rosacea]")


def test_a_new_article_dropped_into_content_shows_up_without_a_restart(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    assert "Chemical peels at the clinic" not in marketer.get("/console/content").text
    shutil.copy(LIBRARY / "peels.md", console.workspace.root / "content" / "peels.md")
    assert "Chemical peels at the clinic" in marketer.get("/console/content").text
