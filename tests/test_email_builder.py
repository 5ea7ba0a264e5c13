"""Emails built from blocks: the generation (HTML and text part from the same blocks), the builder's routes
over real HTTP (permissions, uploads, alt text), the template editor's problems in words, and an email built
through the routes that previews for every variant, saves, plans, lints and sends through the outbox."""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jinja2
import pytest
import yaml

from needlecast.accounts.audit import entries
from needlecast.config import Workspace
from needlecast.content.loader import load_article, load_vocabulary_for
from needlecast.delivery.outbox import read_outbox
from needlecast.errors import TemplateProblem
from needlecast.readmodels.email_previews import render_edited_template, template_source
from needlecast.templating import blocks
from needlecast.templating.context import email_context, variant_concerns
from needlecast.templating.environment import build_environment, midsentence
from needlecast.templating.problems import in_words
from needlecast.templating.render import RenderedEmail, render_email
from tests.cli_runner import run
from tests.console_site import ConsoleSite, assert_anonymous_refused, assert_roles_refused, csrf_of, sqlite_site

pytestmark = pytest.mark.database_independent


def png(width: int = 40, height: int = 20, rgb: tuple[int, int, int] = (154, 78, 53)) -> bytes:
    """A real PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


DOCUMENT = blocks.BlockDocument(
    subject="[first name], a spring offer on [treatment]",
    preheader="What [treatment] can do for [concern].",
    blocks=(
        blocks.Block("heading", text="Spring at [clinic name]"),
        blocks.Block("text", text="Hello [first name].\n\nHere is what helps with [concern]."),
        blocks.Block("section", section="lead"),
        blocks.Block("image", image="treatment-room-0123456789ab.png", alt="Our calm treatment room"),
        blocks.Block("divider"),
        blocks.Block("heading", text="Ready when you are"),
        blocks.Block("button", text="Book a consultation", link="[booking page]"),
        blocks.Block("footer", text="Reply to this email with any question."),
    ),
)


def _render_all(workspace: Workspace, document: blocks.BlockDocument) -> dict[str, RenderedEmail]:
    html, text = blocks.generate(document, "https://track.example/nc/images", "offer")
    env = build_environment(workspace.templates_dir)
    assert env.loader is not None
    env.loader = jinja2.ChoiceLoader(
        [jinja2.DictLoader({"emails/offer.html": html, "emails/offer.txt": text}), env.loader]
    )
    vocabulary = load_vocabulary_for(workspace)
    article = load_article(workspace, vocabulary)
    return {
        concern: render_email(
            env, "emails/offer", email_context(article, vocabulary, workspace.settings.clinic, concern)
        )
        for concern in variant_concerns(vocabulary)
    }


def test_the_html_and_the_text_part_come_from_the_same_blocks_and_say_the_same(workspace: Workspace) -> None:
    rendered = _render_all(workspace, DOCUMENT)
    vocabulary = load_vocabulary_for(workspace)
    article = load_article(workspace, vocabulary)
    clinic = workspace.settings.clinic
    for concern, email in rendered.items():
        reader = midsentence(vocabulary.label(concern)) if concern != "general" else "your skin"
        said = [
            f"Spring at {clinic.name}",
            "Hello %%first_name",
            f"Here is what helps with {reader}.",
            "Ready when you are",
            "Book a consultation",
            "Reply to this email with any question.",
        ]
        for words in said:
            assert words in email.text, (concern, words)
            assert words in email.html, (concern, words)
        lead = article.lead_for(concern) or article.lead_for("general")
        assert lead is not None
        assert lead.title.upper() in email.text and lead.title in email.html  # the concern's own section
        assert f"Book a consultation: {clinic.booking_url}" in email.text
        assert f'href="{clinic.booking_url}"' in email.html
        assert 'alt="Our calm treatment room"' in email.html
        assert 'src="https://track.example/nc/images/treatment-room-0123456789ab.png"' in email.html
        assert email.subject == f"%%first_name%%, a spring offer on {article.treatment}"
        assert "%%unsubscribe_url%%" in email.text and "%%unsubscribe_url%%" in email.html  # the layout's footer
    leads = {email.text.split("\n\n")[3] for email in rendered.values()}
    assert len(leads) > 1  # each variant gets its own section, chosen at render time


def test_the_article_section_is_chosen_when_rendering_never_pasted_into_the_template() -> None:
    html, text = blocks.generate(DOCUMENT, "https://track.example/nc/images", "offer")
    assert "{% if lead %}" in html and "{% if lead %}" in text
    assert "{{ s.body | paragraphs }}" in html and "{{ s.body }}" in text
    assert "collagen" not in (html + text).lower()


def test_what_a_person_types_is_text_never_template_code(workspace: Workspace) -> None:
    typed = blocks.BlockDocument(
        subject="{{ 7 * 7 }} and {% if x %}",
        preheader="",
        blocks=(blocks.Block("text", text="<b>Bold</b> {{ clinic.__class__ }} {% for %} [unknown] [FIRST NAME]"),),
    )
    email = _render_all(workspace, typed)["acne"]
    assert email.subject == "{{ 7 * 7 }} and {% if x %}"
    assert "<b>Bold</b> {{ clinic.__class__ }} {% for %} [unknown] %%first_name%%" in email.text
    assert "&lt;b&gt;Bold&lt;/b&gt; {{ clinic.__class__ }} {% for %} [unknown] %%first_name.html%%" in email.html


@pytest.mark.parametrize(
    ("block", "field", "words"),
    [
        (blocks.Block("image", image="room-0123456789ab.png"), "alt", "describe the image"),
        (blocks.Block("image", alt="A room"), "image", "upload the image"),
        (blocks.Block("button", text="Go", link="javascript:alert(1)"), "link", "https://"),
        (blocks.Block("button", text="", link="[booking page]"), "text", "button's words"),
        (blocks.Block("heading", text=" "), "text", "write the heading"),
        (blocks.Block("section", section="everything"), "section", "choose which section"),
    ],
)
def test_a_block_that_cannot_be_saved_says_why_beside_its_field(block: blocks.Block, field: str, words: str) -> None:
    document = blocks.BlockDocument("Hello", "", (blocks.Block("text", text="Hi"), block, blocks.Block("footer")))
    found = blocks.problems(document)
    assert words in found[f"blocks-1-{field}"]
    with pytest.raises(blocks.BlocksRejected):
        blocks.generate(document, "https://track.example/images", "offer")
    shown, left_out = blocks.previewable(document)
    assert left_out == [1] and block not in shown.blocks


def test_blocks_move_and_go_but_the_footer_stays_last_and_a_document_round_trips() -> None:
    document = blocks.added(DOCUMENT, "divider")
    assert [b.kind for b in document.blocks][-2:] == ["divider", "footer"]
    last = len(document.blocks) - 1
    assert blocks.moved(document, last, -1) == document  # the footer does not move
    assert blocks.moved(document, last - 1, 1) == document
    up = blocks.moved(document, 1, -1)
    assert [b.kind for b in up.blocks][:2] == ["text", "heading"]
    assert blocks.removed(document, last) == document
    assert len(blocks.removed(document, 0).blocks) == len(document.blocks) - 1
    stored = yaml.safe_load(blocks.dump_document(DOCUMENT, {"html": "a", "text": "b"}))
    assert blocks.parse_document(stored) == DOCUMENT
    footerless = blocks.parse_document({"subject": "x", "blocks": [{"kind": "footer"}, {"kind": "text", "text": "y"}]})
    assert [b.kind for b in footerless.blocks] == ["text", "footer"]


def test_a_template_problem_reads_in_plain_words_with_its_line(workspace: Workspace) -> None:
    html, text = template_source(workspace, "emails/welcome")
    cases = {
        html.replace("{{ lead.title }}", "{{ lead.titel }}", 1): "a section has no “titel”; it has title, body",
        html.replace("{% endif %}\n<p>Over", "\n<p>Over", 1): "a {% if %} opened above this line is not closed",
        html.replace("{{ lead.title }}", "{{ leed.title }}", 1): "there is no “leed” a template can use",
        html.replace("{{ lead.title }}", "{{ lead.title | shout }}", 1): "there is no filter “shout”",
    }
    for broken, words in cases.items():
        with pytest.raises(TemplateProblem) as caught:
            render_edited_template(workspace, "emails/welcome", broken, text)
        said = in_words(caught.value)
        assert words in said and re.match(r"Line \d+ of emails/welcome\.html: ", said), said
        assert "Error" not in said and "object" not in said and "Jinja" not in said


@pytest.fixture()
def console(workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsoleSite]:
    with sqlite_site(workspace_dir, tmp_path, monkeypatch) as running:
        yield running


ROUTES = [
    ("GET", "/console/email-builder/new?name=offer", "templates.edit"),
    ("GET", "/console/email-builder/offer", "templates.edit"),
    ("POST", "/console/email-builder/offer", "templates.edit"),
    ("POST", "/console/email-builder/offer/preview", "templates.edit"),
    ("GET", "/console/email-builder/images/logo-0123456789abcdef.png", "templates.edit"),
]


def test_the_builder_refuses_anonymous_requests_and_roles_that_may_not_edit_templates(console: ConsoleSite) -> None:
    assert_anonymous_refused(console, ROUTES, {"subject": "x", "count": "0", "do": "save"})
    assert_roles_refused(console, ROUTES, {"subject": "x", "count": "0", "do": "save"})
    assert not (console.workspace.templates_dir / "emails" / "offer.html").exists()


def form_of(document: blocks.BlockDocument, **extra: str) -> dict[str, str]:
    """The builder form's fields for `document`."""
    fields = {"subject": document.subject, "preheader": document.preheader, "count": str(len(document.blocks))}
    for i, block in enumerate(document.blocks):
        fields[f"blocks-{i}-kind"] = block.kind
        for part in ("text", "link", "section", "image", "alt"):
            fields[f"blocks-{i}-{part}"] = getattr(block, part)
        if block.show_title:
            fields[f"blocks-{i}-show_title"] = "yes"
    return {**fields, **extra}


def _errors(page: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="error" id="error-([\w-]+)">([^<]+)</p>', page))


def test_an_upload_that_is_no_image_or_too_large_is_refused_and_an_image_needs_its_words(
    console: ConsoleSite,
) -> None:
    marketer = console.login("marketer")
    token = csrf_of(marketer.get("/console/email-builder/new?name=offer").text)
    document = blocks.BlockDocument("Hi", "", (blocks.Block("text", text="Hello"), blocks.Block("image")))
    fields = form_of(document, csrf=token, do="preview")
    images = console.workspace.root / "images"
    for data, words in (
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "PNG, JPEG, GIF or WebP"),
        (png()[:8] + b"\x00" * 1_000_001, "under 1 MB"),
    ):
        answer = marketer.post(
            "/console/email-builder/offer", data=fields, files={"blocks-1-file": ("room.png", data, "image/png")}
        )
        assert answer.status_code == 422 and words in _errors(answer.text)["blocks-1-image"]
        assert not images.exists() or not list(images.iterdir())
    stored = marketer.post(
        "/console/email-builder/offer",
        data={**fields, "do": "save"},
        files={"blocks-1-file": ("../../Treatment Room!.PNG", png(), "image/png")},
    )
    assert stored.status_code == 422
    assert "describe the image" in _errors(stored.text)["blocks-1-alt"]
    (name,) = [p.name for p in images.iterdir()]
    assert re.fullmatch(r"treatment-room-[0-9a-f]{12}\.png", name)
    assert f'name="blocks-1-image" value="{name}"' in stored.text  # kept for the next press
    assert not (console.workspace.templates_dir / "emails" / "offer.html").exists()
    served = httpx.get(f"{console.url}/images/{name}")  # the tracking host serves it to the emails
    assert served.status_code == 200 and served.headers["content-type"] == "image/png" and served.content == png()
    with console.engine.connect() as conn:
        assert [e["target"] for e in entries(conn, action="template.image_uploaded")] == [f"image:{name}"]


def test_a_template_written_by_hand_opens_in_the_template_editor_and_is_never_replaced_by_blocks(
    console: ConsoleSite,
) -> None:
    marketer = console.login("marketer")
    opened = marketer.get("/console/email-builder/welcome")
    assert opened.status_code == 303 and opened.headers["location"].endswith("/console/templates/emails/welcome")
    before = (console.workspace.templates_dir / "emails" / "welcome.html").read_text()
    token = csrf_of(marketer.get("/console/templates").text)
    marketer.post("/console/email-builder/welcome", data=form_of(DOCUMENT, csrf=token, do="save"))
    assert (console.workspace.templates_dir / "emails" / "welcome.html").read_text() == before
    taken = marketer.get("/console/email-builder/new?name=welcome")
    assert taken.status_code == 303 and "problem=taken" in taken.headers["location"]
    listed = marketer.get(taken.headers["location"].removeprefix(console.url))
    assert "There is already an email called “welcome”" in listed.text


def test_the_template_editor_says_a_mistake_in_words_with_its_line(console: ConsoleSite) -> None:
    marketer = console.login("marketer")
    page = marketer.get("/console/templates/emails/welcome")
    html, text = template_source(console.workspace, "emails/welcome")
    answer = marketer.post(
        "/console/templates/emails/welcome",
        data={"csrf": csrf_of(page.text), "html": html.replace("{{ lead.title }}", "{{ lead.titel }}"), "text": text},
    )
    error = re.search(r'id="template-error">([^<]+)<', answer.text)
    assert answer.status_code == 422 and error, answer.text
    assert re.match(r"Line \d+ of emails/welcome\.html: a section has no “titel”", error.group(1)), error.group(1)


SUBJECTS = ["A spring offer for you", "[first name], your spring offer"]


def test_an_email_built_from_blocks_previews_for_every_variant_saves_plans_lints_and_sends(
    console: ConsoleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = console.workspace
    marketer = console.login("marketer")
    assert marketer.get("/console/email-builder/spring-offer").status_code == 404  # no such email yet
    new = marketer.get("/console/email-builder/new?name=spring-offer")
    assert new.status_code == 200 and 'action="/console/email-builder/spring-offer"' in new.text
    token = csrf_of(new.text)
    document = blocks.BlockDocument(
        "[first name], spring at [clinic name]",
        "Our spring offer on [treatment].",
        (
            blocks.Block("heading", text="Spring at [clinic name]"),
            blocks.Block("text", text="Hello [first name], here is our spring offer."),
            blocks.Block("section", section="lead"),
            blocks.Block("image", alt="Our treatment room, full of light"),
            blocks.Block("button", text="Book your consultation", link="[booking page]"),
            blocks.Block("footer"),
        ),
    )
    uploaded = marketer.post(
        "/console/email-builder/spring-offer",
        data=form_of(document, csrf=token, do="preview"),
        files={"blocks-3-file": ("Room.png", png(), "image/png")},
    )
    assert uploaded.status_code == 200, _errors(uploaded.text)
    image = re.search(r'name="blocks-3-image" value="([^"]+)"', uploaded.text)
    assert image
    document = blocks.BlockDocument(
        document.subject,
        document.preheader,
        tuple(
            blocks.Block("image", image=image.group(1), alt=b.alt) if b.kind == "image" else b for b in document.blocks
        ),
    )
    vocabulary = load_vocabulary_for(workspace)
    article = load_article(workspace, vocabulary)
    for variant in variant_concerns(vocabulary):
        shown = marketer.post(
            "/console/email-builder/spring-offer/preview", data=form_of(document, csrf=token, variant=variant)
        ).json()
        lead = article.lead_for(variant) or article.lead_for("general")
        assert shown["problem"] == "" and shown["left_out"] == [] and shown["variant"] == variant
        assert lead is not None and lead.title in shown["html"] and lead.title.upper() in shown["text"]
        assert shown["subject"] == "Ana, spring at Lumen Skin Clinic"
        assert 'src="data:image/png;base64,' in shown["html"]  # the workspace's file, in the console's frame

    saved = marketer.post("/console/email-builder/spring-offer", data=form_of(document, csrf=token, do="save"))
    assert saved.status_code == 303, _errors(saved.text)
    emails = workspace.templates_dir / "emails"
    assert {p.name for p in emails.glob("spring-offer*")} == {
        "spring-offer.html",
        "spring-offer.txt",
        "spring-offer.blocks.yaml",
    }
    reopened = marketer.get(saved.headers["location"].removeprefix(console.url))
    assert "Saved." in reopened.text and 'value="Book your consultation"' in reopened.text
    assert 'id="hand-edited"' not in reopened.text
    with console.engine.connect() as conn:
        (entry,) = entries(conn, action="template.saved")
    assert entry["target"] == "template:emails/spring-offer"

    _campaign_sends_it(console, monkeypatch, document)

    listed = marketer.get("/console/templates").text
    assert 'href="/console/email-builder/spring-offer">emails/spring-offer</a> <span class="badge">built from' in listed
    html = emails / "spring-offer.html"
    html.write_text(html.read_text() + "{# a hand edit #}\n")  # the code edited by hand: the builder says so
    assert 'id="hand-edited"' in marketer.get("/console/email-builder/spring-offer").text


def _campaign_sends_it(console: ConsoleSite, monkeypatch: pytest.MonkeyPatch, document: blocks.BlockDocument) -> None:
    """A campaign that sends the built email plans, lints and sends through the outbox, its text part as
    the blocks say."""
    root = console.workspace.root
    (root / "campaigns" / "spring-offer.yaml").write_text(
        yaml.safe_dump(
            {
                "id": "spring-offer",
                "kind": "broadcast",
                "segment": "all-leads",
                "time_zone": "Europe/London",
                "steps": [
                    {"id": "offer", "template": "emails/spring-offer", "ab": {"split": [50, 50], "subjects": SUBJECTS}}
                ],
                "schedule": {"send_at": "2020-11-01 09:00"},
                "signoff": {"reviewer": "QA", "date": "2026-11-24", "note": "test content"},
            },
            sort_keys=False,
        ).replace("[first name]", "{{ first_name }}")
    )
    env = {"NEEDLECAST_DATABASE_URL": str(console.engine.url), "NEEDLECAST_QUIET_HOURS": "off"}
    plan = run(monkeypatch, root, "plan", "spring-offer", "--format", "json", **env)
    assert plan.code == 0, plan.stderr
    planned: dict[str, Any] = json.loads(plan.stdout)
    assert planned["problems"] == [] and planned["campaigns"][0]["id"] == "spring-offer"
    lint = run(monkeypatch, root, "lint", "--format", "json", **env)
    mine = [f for f in json.loads(lint.stdout) if "spring-offer" in f["file"]]
    assert mine and not [f for f in mine if f["severity"] == "error"], mine  # lint reads it, and it is fine
    assert {f["file"] for f in mine} <= {"templates/emails/spring-offer.html", "templates/emails/spring-offer.txt"}
    assert not [f for f in mine if f["rule"] in ("template-error", "image-alt", "missing-unsubscribe")], mine
    sent = run(monkeypatch, root, "send", "spring-offer", "--now", **env)
    assert sent.code == 0 and " sent" in sent.stdout, sent.stdout + sent.stderr
    requests = [e["request"] for e in read_outbox(console.workspace.outbox_dir)]
    assert requests
    image = next(b.image for b in document.blocks if b.kind == "image")
    base = console.workspace.settings.tracking.public_base_url.rstrip("/")
    subjects = set()
    for request in requests:
        text = next(c["value"] for c in request["content"] if c["type"] == "text/plain")
        html = next(c["value"] for c in request["content"] if c["type"] == "text/html")
        assert text.startswith("Spring at Lumen Skin Clinic\n\nHello ")
        assert "here is our spring offer." in text and "here is our spring offer." in html
        assert "Book your consultation: https://lumen-clinic.example.com/book" in text
        assert f'src="{base}/images/{image}"' in html and 'alt="Our treatment room, full of light"' in html
        subjects.add(request["subject"])
    assert subjects == {SUBJECTS[0], "%%first_name%%, your spring offer"}  # both arms sent


def test_the_campaign_page_shows_each_subject_as_a_sample_reader_reads_it(console: ConsoleSite) -> None:
    page = console.login("analyst").get("/console/campaigns/spring-guide").text
    steps = page[page.index('id="steps"') :]
    assert "A (50 %): What microneedling can do for your skin" in steps
    assert "B (50 %): Ana, your guide to microneedling" in steps
    assert "{{" not in steps and "[first name]" not in steps
    nurture = console.login("analyst").get("/console/campaigns/new-lead-nurture").text
    assert "Welcome to Lumen Skin Clinic: your guide to microneedling" in nurture  # the template's own, rendered


def test_the_reports_name_each_arm_by_its_subject_as_a_sample_reader_reads_it(workspace: Workspace) -> None:
    from needlecast.campaign.context import CampaignContext
    from needlecast.readmodels.email_previews import sample_arm_subjects

    subjects = sample_arm_subjects(CampaignContext.load(workspace))
    assert subjects == {
        ("spring-guide", "guide", "A"): "What microneedling can do for your skin",
        ("spring-guide", "guide", "B"): "Ana, your guide to microneedling",
    }
