"""What a new user meets: clear errors, schedules that do what they say, drafts, lint of campaign files,
output for people and scripts. Each test pins one behaviour that once surprised someone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from needlecast.store.engine import open_store
from needlecast.store.schema import campaign_state, deliveries
from tests.cli_runner import Result, run

PAST_BROADCAST = """
id: last-month
kind: broadcast
segment: all-leads
time_zone: Europe/London
steps: [{id: guide, template: emails/broadcast}]
schedule: {send_at: "2020-11-01 09:00"}
signoff: {reviewer: QA, date: 2026-11-24, note: test content}
"""


def _store(root: Path):  # type: ignore[no-untyped-def]
    return open_store(f"sqlite:///{root / '.needlecast' / 'needlecast.db'}")


def _rows(root: Path, campaign: str) -> int:
    with _store(root).connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(deliveries).where(deliveries.c.campaign_id == campaign)
            ).scalar_one()
        )


@pytest.fixture()
def imported(workspace_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    result = run(monkeypatch, workspace_dir, "audience", "import", str(workspace_dir / "audiences" / "sample.csv"))
    assert result.code == 0, result.stderr
    return workspace_dir


BAD_COMMANDS = [
    (["preview", "emails/welcome", "--concern", "acnee"], "'acnee' is not a content variant"),
    (["preview", "emails/nope"], "template not found"),
    (["preview", "--campaign", "spring-guide", "--arm", "C"], "use --arm A or B"),
    (["preview", "--campaign", "spring-guide", "--step", "nope"], "has no step 'nope'"),
    (["preview"], "name a template"),
    (["send", "nope"], "no campaign 'nope'"),
    (["plan", "nope"], "no campaign 'nope'"),
    (["campaign", "status", "nope"], "no campaign 'nope'"),
    (["campaign", "pause", "nope"], "no campaign 'nope'"),
    (["campaign", "pause", "spring-guide"], "not scheduled yet"),
    (["audience", "show", "nosuchsegment"], "no segment named 'nosuchsegment'"),
    (["audience", "show", "nobody@example.com"], "no contact with that address"),
    (["audience", "consent", "nobody@example.com"], "exactly one of --grant or --withdraw"),
    (["audience", "suppress", "x@example.com", "--reason", "bored"], "'bored' is not one of"),
    (["audience", "suppress", "not-an-address"], "email address"),
    (["audience", "import", "missing.csv"], "file not found"),
    (["report", "--format", "xlsx"], "add --out report.xlsx"),
    (["report", "--since", "yesterday"], "is not a date"),
    (["report", "--unmasked"], "add --include-recipients"),
    (["outbox", "show", "99"], "no request #99"),
]


@pytest.mark.parametrize(("args", "says"), BAD_COMMANDS, ids=[" ".join(a) for a, _ in BAD_COMMANDS])
def test_a_command_with_bad_arguments_says_what_is_wrong_in_one_line_without_a_traceback(
    workspace_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], says: str
) -> None:
    result = run(monkeypatch, workspace_dir, *args)
    assert result.code in (1, 2), result
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.startswith(("error:", "configuration error:")), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert says in result.stderr


@pytest.mark.parametrize("args", [["report", "--format", "pdf"], ["lint", "--format", "xml"], ["send"]])
def test_a_usage_mistake_is_a_usage_message_not_a_traceback(
    workspace_dir: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    result = run(monkeypatch, workspace_dir, *args)
    assert result.code == 2 and "Traceback" not in result.stderr and "Usage:" in result.stderr


def test_a_broadcast_dated_in_the_past_is_refused_unless_sent_now_on_purpose(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (imported / "campaigns" / "last-month.yaml").write_text(PAST_BROADCAST)
    refused = run(monkeypatch, imported, "send", "last-month", NEEDLECAST_QUIET_HOURS="off")
    assert refused.code == 1
    assert "field 'schedule.send_at'" in refused.stderr and "is already past" in refused.stderr
    assert "needlecast send last-month --now" in refused.stderr
    assert _rows(imported, "last-month") == 0
    with _store(imported).connect() as conn:
        assert conn.execute(select(campaign_state).where(campaign_state.c.campaign_id == "last-month")).first() is None
    sent = run(monkeypatch, imported, "send", "last-month", "--now", NEEDLECAST_QUIET_HOURS="off")
    assert sent.code == 0 and "257 sent" in sent.stdout


def test_schedule_sync_refuses_a_past_broadcast_and_schedules_the_others(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (imported / "campaigns" / "last-month.yaml").write_text(PAST_BROADCAST)
    result = run(monkeypatch, imported, "schedule", "sync")
    assert result.code == 0
    assert "campaign last-month not scheduled" in result.stderr and "schedule.send_at" in result.stderr
    listed = json.loads(run(monkeypatch, imported, "campaign", "list", "--format", "json").stdout)
    states = {item["id"]: item["state"] for item in listed}
    assert states == {"last-month": "not scheduled", "spring-guide": "active", "new-lead-nurture": "active"}


def test_a_misspelt_template_is_found_when_the_file_is_read_and_the_other_campaigns_still_plan(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (imported / "campaigns" / "typo.yaml").write_text(
        PAST_BROADCAST.replace("last-month", "typo").replace("emails/broadcast", "emails/broadcst")
    )
    plan = run(monkeypatch, imported, "plan", "--days", "400")
    assert plan.code == 0
    assert "not planned:" in plan.stdout and "typo.yaml: field 'steps[0].template'" in plan.stdout
    assert (
        "emails/broadcast, emails/concern_guide, emails/consultation, emails/deep_dive, emails/welcome" in plan.stdout
    )
    assert "spring-guide (broadcast" in plan.stdout  # the others are planned all the same
    send = run(monkeypatch, imported, "send", "typo", "--now")
    assert send.code == 1 and "typo.yaml: field 'steps[0].template'" in send.stderr
    assert _rows(imported, "typo") == 0


def test_a_step_that_does_not_render_fails_before_anything_is_enqueued(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (imported / "campaigns" / "broken.yaml").write_text(
        PAST_BROADCAST.replace("last-month", "broken").replace(
            "template: emails/broadcast}", 'template: emails/broadcast, subject: "Hi {{ frist_name }}"}'
        )
    )
    send = run(monkeypatch, imported, "send", "broken", "--now")
    assert send.code == 1
    assert "field 'steps[0].subject'" in send.stderr and "frist_name" in send.stderr
    assert _rows(imported, "broken") == 0
    plan = run(monkeypatch, imported, "plan", "broken")
    assert "will not send:" in plan.stdout and "frist_name" in plan.stdout


def test_a_sequence_is_started_and_sent_on_demand(imported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(monkeypatch, imported, "send", "new-lead-nurture", "--now", NEEDLECAST_QUIET_HOURS="off")
    assert result.code == 0, result.stderr
    assert "enrolled" in result.stdout and "sent: step welcome" in result.stdout
    status = run(monkeypatch, imported, "campaign", "status", "new-lead-nurture", "--format", "json")
    data = json.loads(status.stdout)
    assert data["state"] == "active" and data["counts"]["sent"] > 0
    again = run(monkeypatch, imported, "send", "new-lead-nurture", "--now", NEEDLECAST_QUIET_HOURS="off")
    assert "0 new ledger row(s), 0 sent" in again.stdout


def test_schedule_sync_schedules_a_sequence_and_reschedules_the_sweeper_when_its_interval_changes(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = run(monkeypatch, imported, "schedule", "sync")
    assert first.code == 0 and "job(s) added or changed" in first.stdout
    status = json.loads(run(monkeypatch, imported, "campaign", "status", "new-lead-nurture", "--format", "json").stdout)
    assert status["state"] == "active"  # scheduled by the sync, not "never scheduled"
    assert "0 job(s) added or changed" in run(monkeypatch, imported, "schedule", "sync").stdout
    config = imported / "needlecast.toml"
    config.write_text(config.read_text() + "\n[schedule]\nsweep_interval_seconds = 60\n")
    assert "1 job(s) added or changed" in run(monkeypatch, imported, "schedule", "sync").stdout


def test_plan_says_why_a_sequence_without_enrol_plans_nothing(imported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (imported / "campaigns" / "drip.yaml").write_text(
        "id: drip\nkind: sequence\nsegment: all-leads\ntime_zone: Europe/London\n"
        "steps: [{id: hello, template: emails/welcome, delay: 0d}]\n"
    )
    plan = run(monkeypatch, imported, "plan", "drip", "--format", "json")
    [item] = json.loads(plan.stdout)["campaigns"]
    assert item["emails"] == []
    assert any(
        "a sequence without 'enrol' takes the contacts who sign up after it is first scheduled" in n
        for n in item["notes"]
    )
    assert any("enrol: {joined_after:" in n for n in item["notes"])


def test_init_gives_the_sample_campaigns_as_drafts_without_a_sign_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "clinic"
    assert run(monkeypatch, None, "init", str(root)).code == 0
    for path in (root / "campaigns").glob("*.yaml"):
        text = path.read_text()
        assert "draft: true" in text and "signoff" not in text and "sign-off" not in text
    assert run(monkeypatch, root, "audience", "import", str(root / "audiences" / "sample.csv")).code == 0
    for campaign in ("spring-guide", "new-lead-nurture"):
        sent = run(monkeypatch, root, "send", campaign, "--now")
        assert sent.code == 1 and "is a draft" in sent.stderr
    sync = run(monkeypatch, root, "schedule", "sync")
    assert sync.code == 0
    listed = json.loads(run(monkeypatch, root, "campaign", "list", "--format", "json").stdout)
    assert {item["state"] for item in listed} == {"draft"}
    with _store(root).connect() as conn:
        assert conn.execute(select(func.count()).select_from(deliveries)).scalar_one() == 0
    plan = run(monkeypatch, root, "plan", "--days", "400")
    assert "a draft: nothing is scheduled or sent" in plan.stdout


def test_lint_checks_the_subject_lines_of_campaign_files(workspace_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = workspace_dir / "campaigns" / "spring-guide.yaml"
    campaign.write_text(
        campaign.read_text().replace(
            '- "What microneedling can do for your skin"', '- "GUARANTEED results, last chance to cure acne"'
        )
    )
    line = next(n for n, text in enumerate(campaign.read_text().splitlines(), 1) if "GUARANTEED" in text)
    findings = json.loads(run(monkeypatch, workspace_dir, "lint", "--format", "json").stdout)
    mine = [f for f in findings if f["file"] == "campaigns/spring-guide.yaml"]
    assert {"claim-guarantee", "claim-pressure", "claim-permanence", "health-term-in-subject"} <= {
        f["rule"] for f in mine
    }
    assert {f["line"] for f in mine if f["rule"].startswith("claim-")} == {line}


def test_plan_warns_when_the_sign_off_gate_will_block_a_campaign(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = imported / "campaigns" / "spring-guide.yaml"
    text = campaign.read_text()
    campaign.write_text(text[: text.index("signoff:")])
    plan = run(monkeypatch, imported, "plan", "spring-guide", "--days", "400")
    assert "will be blocked by the sign-off gate" in plan.stdout and "content/microneedling.txt:18" in plan.stdout


def test_lint_goes_on_after_a_template_error_and_names_the_right_line_of_a_text_part(
    workspace_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emails = workspace_dir / "templates" / "emails"
    (emails / "case.html").write_text('<p>{{ clinic.postal_address }} <a href="{{ unsubscribe_url }}">u</a></p>')
    (emails / "case.txt").write_text(
        "{% block subject %}Hello{% endblock %}\n{% block preheader %}{{ nope }}{% endblock %}\n"
        "{{ clinic.postal_address }}\n{{ unsubscribe_url }}\n\n\n"
    )
    (emails / "syntax.html").write_text("{% if %}")
    (emails / "syntax.txt").write_text("{% block subject %}x{% endblock %}")
    findings = json.loads(run(monkeypatch, workspace_dir, "lint", "--format", "json").stdout)
    errors = {(f["file"], f["line"], f["rule"]) for f in findings if f["rule"] == "template-error"}
    assert ("templates/emails/case.txt", 2, "template-error") in errors
    assert any(file == "templates/emails/syntax.html" for file, _, _ in errors)
    assert any(f["file"] == "content/microneedling.txt" for f in findings)  # the other findings are still there


def test_send_now_says_when_the_emails_held_by_quiet_hours_go(imported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Quiet hours from midnight to midnight minus a minute hold everything to the end of them.
    result = run(monkeypatch, imported, "send", "spring-guide", "--now", NEEDLECAST_QUIET_HOURS="00:00-23:59")
    assert result.code == 0
    assert "deferred: deferred by quiet hours:" in result.stdout
    assert "wait in the queue, the first due at" in result.stdout and "the scheduler" in result.stdout
    status = run(monkeypatch, imported, "campaign", "status", "spring-guide")
    assert "queued emails by due time" in status.stdout and "next send:" in status.stdout


def test_one_invalid_campaign_file_does_not_stop_plan_or_send_of_the_others(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (imported / "campaigns" / "bad.yaml").write_text("id: bad\nsteps: [unclosed\n")
    plan = run(monkeypatch, imported, "plan", "--days", "400")
    assert plan.code == 0 and "bad.yaml" in plan.stdout and "spring-guide (broadcast" in plan.stdout
    sent = run(monkeypatch, imported, "send", "spring-guide", "--now", NEEDLECAST_QUIET_HOURS="off")
    assert sent.code == 0 and "257 sent" in sent.stdout
    listed = run(monkeypatch, imported, "campaign", "list")
    assert "file has errors" in listed.stdout and "bad.yaml" in listed.stdout


def test_logs_stay_out_of_a_commands_output_unless_asked_for(
    imported: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    quiet = run(monkeypatch, imported, "send", "spring-guide", "--now", NEEDLECAST_QUIET_HOURS="off")
    assert quiet.code == 0 and " INFO " not in quiet.stderr + quiet.stdout
    log_file = tmp_path / "needlecast.log"
    cancel = run(monkeypatch, imported, "--log-file", str(log_file), "campaign", "reconcile", "spring-guide")
    assert cancel.code == 0 and " INFO " not in cancel.stderr
    assert log_file.exists()


def test_tables_keep_long_ids_whole_when_piped_and_help_shows_no_bool_labels(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_id = "an-exceptionally-long-campaign-identifier-for-the-spring"
    (imported / "campaigns" / "long.yaml").write_text(PAST_BROADCAST.replace("last-month", long_id))
    monkeypatch.delenv("COLUMNS", raising=False)
    listed = run(monkeypatch, imported, "campaign", "list")
    assert long_id in listed.stdout and "…" not in listed.stdout
    for command in (["send", "--help"], ["report", "--help"], ["audience", "show", "--help"]):
        assert "<bool>" not in run(monkeypatch, imported, *command).stdout


@pytest.mark.parametrize(
    "args",
    [
        ["audience", "segments"],
        ["audience", "show", "acne"],
        ["campaign", "list"],
        ["campaign", "status", "spring-guide"],
        ["plan"],
        ["content", "show"],
        ["lint"],
        ["outbox", "list"],
    ],
    ids=lambda a: " ".join(a),
)
def test_every_command_that_prints_a_table_also_prints_json(
    imported: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    run(monkeypatch, imported, "schedule", "sync")
    result = run(monkeypatch, imported, *args, "--format", "json")
    assert result.code in (0, 1), result.stderr  # lint exits 1 on the sample's claims
    json.loads(result.stdout)


def test_import_counts_as_json(workspace_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(
        monkeypatch,
        workspace_dir,
        "audience",
        "import",
        str(workspace_dir / "audiences" / "sample.csv"),
        "--format",
        "json",
    )
    counts = json.loads(result.stdout)
    assert counts["read"] == counts["inserted"] + counts["updated"] + counts["duplicates"] + counts["rejected"] == 300


def test_audience_show_looks_up_one_address_masked_unless_asked(
    imported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = "quinn.1@example.org"
    masked = run(monkeypatch, imported, "audience", "show", address)
    assert masked.code == 0 and address not in masked.stdout and "q***@e***.org" in masked.stdout
    assert "consent history" in masked.stdout
    full = json.loads(run(monkeypatch, imported, "audience", "show", address, "--unmasked", "--format", "json").stdout)
    assert full["email"] == address and full["consent"]


def test_report_csv_without_out_prints_to_stdout(imported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(monkeypatch, imported, "send", "spring-guide", "--now", NEEDLECAST_QUIET_HOURS="off").code == 0
    result = run(monkeypatch, imported, "report", "--format", "csv")
    assert result.code == 0 and result.stdout.splitlines()[0].startswith("Campaign,Step,Segment,Variant,Arm")


def test_preview_of_a_campaign_step_uses_its_own_subject_lines(
    workspace_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = run(
        monkeypatch,
        workspace_dir,
        "preview",
        "--campaign",
        "spring-guide",
        "--arm",
        "B",
        "--concern",
        "acne",
        "--first-name",
        "Ana",
        "--out",
        str(tmp_path),
    )
    assert result.code == 0, result.stderr
    assert "subject: Ana, your guide to microneedling" in result.stdout
    html = next(tmp_path.glob("spring-guide.guide.acne.B.html")).read_text()
    assert "Ana" in html and 'src="https://lumen-clinic.example.com/logo.png"' in html


def _result_summary(result: Result) -> str:
    return f"exit {result.code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
