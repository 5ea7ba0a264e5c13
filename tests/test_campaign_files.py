"""Campaign files: validation errors name the file, the field and the fix; timing rules; the planner."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time
from pathlib import Path

import pandas as pd
import pytest

from needlecast.campaign.definition.loader import load_campaign, load_campaigns
from needlecast.campaign.plan.rules import apply_cap, arm_for
from needlecast.campaign.plan.timing import after_quiet_hours, local_moment, parse_quiet_hours
from needlecast.config import ScheduleSettings
from needlecast.errors import CampaignFileError

VARIANTS = ("acne", "ageing", "pigmentation", "general")
REPO = Path(__file__).resolve().parent.parent

GOOD = """
id: winter
kind: broadcast
segment: all-leads
time_zone: Europe/London
steps:
  - id: guide
    template: emails/broadcast
schedule:
  send_at: "2026-12-01 09:00"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    return path


def test_sample_campaigns_load() -> None:
    found = load_campaigns(REPO / "campaigns", VARIANTS)
    campaigns = found.campaigns
    assert set(campaigns) == {"spring-guide", "new-lead-nurture"} and found.problems == []
    nurture = campaigns["new-lead-nurture"]
    assert [(s.id, s.delay.days) for s in nurture.steps] == [("welcome", 0), ("deep-dive", 3), ("consultation", 7)]
    assert campaigns["spring-guide"].schedule.local_time == time(9, 0)


def test_send_at_is_read_in_the_campaigns_zone(tmp_path: Path) -> None:
    campaign = load_campaign(_write(tmp_path, GOOD), VARIANTS)
    assert campaign.schedule.send_at.astimezone(UTC) == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field", "fix"),
    [
        (("kind: broadcast", "kind: blast"), "kind", "use 'broadcast' or 'sequence'"),
        (("time_zone: Europe/London", "time_zone: Mars/Base"), "time_zone", "IANA name"),
        (("    template: emails/broadcast\n", ""), "steps[0].template", "name an email"),
        (('  send_at: "2026-12-01 09:00"', '  send_at: "next tuesday"'), "schedule.send_at", "2026-12-01 09:00"),
        (("segment: all-leads\n", "segment: all-leads\ncolour: blue\n"), "colour", "remove it"),
        (
            ('  send_at: "2026-12-01 09:00"', '  send_at: "2026-12-01 09:00"\n  optimize: true'),
            "schedule.optimize",  # the American spelling is a typo here, named with the valid keys
            "remove it",
        ),
        (
            ("    template: emails/broadcast", "    template: emails/broadcast\n    ab: {bogus: 1, subjects: [a, b]}"),
            "steps[0].ab.bogus",
            "remove it",
        ),
        (("kind: broadcast", "kind: broadcast\ndraft: maybe"), "draft", "draft: true"),
        (("  - id: guide", "  - id: guide!"), "steps[0].id", "short id"),
        (
            ("    template: emails/broadcast", "    template: emails/broadcast\n    variants: [rosacea]"),
            "steps[0].variants",
            "use some of",
        ),
        (
            (
                "    template: emails/broadcast",
                "    template: emails/broadcast\n    ab: {split: [60, 30], subjects: [a, b]}",
            ),
            "steps[0].ab.split",
            "split: [50, 50]",
        ),
    ],
)
def test_bad_campaign_file_names_file_field_and_fix(
    tmp_path: Path, change: tuple[str, str], field: str, fix: str
) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(path, VARIANTS)
    error = caught.value
    assert error.path == str(path) and error.field == field and fix in error.fix
    assert str(path) in str(error) and f"field '{field}'" in str(error)


def test_sequence_needs_delays_in_order(tmp_path: Path) -> None:
    text = """
id: drip
kind: sequence
segment: all-leads
time_zone: Europe/London
steps:
  - {id: a, template: emails/welcome, delay: 3d}
  - {id: b, template: emails/deep_dive, delay: 1d}
"""
    with pytest.raises(CampaignFileError, match="not in order of their delay"):
        load_campaign(_write(tmp_path, text), VARIANTS)
    with pytest.raises(CampaignFileError, match=r"steps\[0\].delay"):
        load_campaign(_write(tmp_path, text.replace("delay: 3d", "delay: soon")), VARIANTS)


def test_two_files_with_one_id_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    found = load_campaigns(tmp_path, VARIANTS)
    assert set(found.campaigns) == {"winter"}
    [problem] = found.problems
    assert problem.path.endswith("b.yaml") and "also the id of a.yaml" in str(problem)


def test_one_broken_file_is_reported_and_the_others_still_load(tmp_path: Path) -> None:
    (tmp_path / "a-good.yaml").write_text(GOOD)
    (tmp_path / "b-bad-yaml.yaml").write_text("id: broken\nsteps: [unclosed\n")
    (tmp_path / "c-bad-field.yaml").write_text(
        GOOD.replace("id: winter", "id: spring").replace("kind: broadcast", "kind: blast")
    )
    found = load_campaigns(tmp_path, VARIANTS)
    assert set(found.campaigns) == {"winter"}
    assert sorted(Path(p.path).name for p in found.problems) == ["b-bad-yaml.yaml", "c-bad-field.yaml"]
    by_file = {Path(p.path).name: p for p in found.problems}
    assert by_file["b-bad-yaml.yaml"].field == "(file)" and "not valid YAML" in str(by_file["b-bad-yaml.yaml"])
    assert by_file["c-bad-field.yaml"].field == "kind" and by_file["c-bad-field.yaml"].campaign_id == "spring"


def test_a_misspelt_template_is_refused_with_the_templates_that_exist(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("template: emails/broadcast", "template: emails/broadcst"))
    templates = ("emails/broadcast", "emails/welcome")
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(path, VARIANTS, templates=templates)
    assert caught.value.field == "steps[0].template"
    assert "'emails/broadcst' is not a template" in str(caught.value)
    assert "emails/broadcast, emails/welcome" in caught.value.fix
    assert load_campaign(_write(tmp_path, GOOD), VARIANTS, templates=templates).steps[0].template == "emails/broadcast"


def test_an_undefined_segment_is_refused_naming_the_segments(tmp_path: Path) -> None:
    with pytest.raises(CampaignFileError) as caught:
        load_campaign(_write(tmp_path, GOOD), VARIANTS, segments=("acne", "everyone"))
    assert caught.value.field == "segment" and "acne, everyone" in caught.value.fix


FULL_BROADCAST = {
    "id": "full",
    "kind": "broadcast",
    "segment": "all-leads",
    "time_zone": "Europe/London",
    "sender": {"email": "a@example.com", "name": "A"},
    "steps": [{"id": "s", "template": "emails/broadcast", "ab": {"split": [50, 50], "subjects": ["x", "y"]}}],
    "schedule": {"send_at": "2027-01-01 09:00"},
    "signoff": {"reviewer": "R", "date": "2026-11-01", "note": "n"},
}
FULL_SEQUENCE = {
    "id": "seq",
    "kind": "sequence",
    "segment": "all-leads",
    "time_zone": "Europe/London",
    "steps": [{"id": "s", "template": "emails/welcome", "delay": "0d"}],
    "enrol": {"joined_after": "2026-01-01", "tag": "t"},
    "exits": [{"field": "booked", "equals": "yes"}],
}


def _mappings(value: object, path: str = "") -> list[tuple[str, dict[str, object]]]:
    """Every mapping inside a campaign document, with the field path the loader names it by."""
    found: list[tuple[str, dict[str, object]]] = []
    if isinstance(value, dict):
        found.append((path, value))
        for key, item in value.items():
            found += _mappings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _mappings(item, f"{path}[{index}]")
    return found


@pytest.mark.parametrize("document", [FULL_BROADCAST, FULL_SEQUENCE], ids=["broadcast", "sequence"])
def test_an_unknown_key_at_any_level_is_refused_with_the_valid_keys(
    tmp_path: Path, document: dict[str, object]
) -> None:
    import copy

    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(document))
    load_campaign(path, VARIANTS)  # the document itself is valid
    places = _mappings(document)
    assert len(places) >= 4
    for where, _ in places:
        broken = copy.deepcopy(document)
        target = dict(_mappings(broken))[where]
        target["bogus"] = 1
        path.write_text(yaml.safe_dump(broken))
        with pytest.raises(CampaignFileError) as caught:
            load_campaign(path, VARIANTS)
        expected = f"{where}.bogus" if where else "bogus"
        assert caught.value.field == expected, where
        assert caught.value.fix.startswith("remove it, or use one of:")


@pytest.mark.parametrize(
    ("zone", "day", "expected_utc"),
    [
        # Europe/London springs forward on 2026-03-29 and falls back on 2026-10-25.
        ("Europe/London", date(2026, 3, 28), datetime(2026, 3, 28, 9, 0, tzinfo=UTC)),
        ("Europe/London", date(2026, 3, 29), datetime(2026, 3, 29, 8, 0, tzinfo=UTC)),
        ("Europe/London", date(2026, 10, 25), datetime(2026, 10, 25, 9, 0, tzinfo=UTC)),
        # America/New_York: 2026-03-08 and 2026-11-01.
        ("America/New_York", date(2026, 3, 7), datetime(2026, 3, 7, 14, 0, tzinfo=UTC)),
        ("America/New_York", date(2026, 3, 8), datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),
        ("America/New_York", date(2026, 11, 1), datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
        # Australia/Sydney ends DST on 2026-04-05 and starts it on 2026-10-04 (southern hemisphere).
        ("Australia/Sydney", date(2026, 4, 4), datetime(2026, 4, 3, 22, 0, tzinfo=UTC)),
        ("Australia/Sydney", date(2026, 4, 5), datetime(2026, 4, 4, 23, 0, tzinfo=UTC)),
        ("Australia/Sydney", date(2026, 10, 4), datetime(2026, 10, 3, 22, 0, tzinfo=UTC)),
    ],
)
def test_nine_am_local_across_dst_changes(zone: str, day: date, expected_utc: datetime) -> None:
    assert local_moment(day, time(9, 0), zone) == expected_utc


def test_wall_time_in_a_spring_forward_gap_moves_forward() -> None:
    # 01:30 does not exist in London on 2026-03-29; it is read as 02:30 BST = 01:30 UTC.
    assert local_moment(date(2026, 3, 29), time(1, 30), "Europe/London") == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_quiet_hours_hold_an_email_until_the_morning_in_the_recipients_zone() -> None:
    quiet = parse_quiet_hours("21:00-08:00")
    late = datetime(2026, 11, 24, 22, 30, tzinfo=UTC)  # 22:30 in London, 09:30 next day in Sydney
    assert after_quiet_hours(late, "Europe/London", quiet) == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert after_quiet_hours(late, "Australia/Sydney", quiet) == late
    early = datetime(2026, 7, 1, 5, 0, tzinfo=UTC)  # 06:00 BST
    assert after_quiet_hours(early, "Europe/London", quiet) == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    assert after_quiet_hours(late, "Europe/London", parse_quiet_hours("off")) == late


def _emails(*dues: datetime) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "contact_id": [1] * len(dues),
            "due_at": pd.to_datetime(list(dues), utc=True),
            "status": "queued",
            "reason": "",
        }
    )


def test_frequency_cap_skips_a_broadcast_and_defers_a_sequence_step() -> None:
    schedule = ScheduleSettings(max_per_day=1, max_per_week=3)
    history = pd.DataFrame(
        {"contact_id": [1], "at": pd.to_datetime([datetime(2026, 11, 24, 10, tzinfo=UTC)], utc=True)}
    )
    excluded: Counter[str] = Counter()
    deferred: Counter[str] = Counter()
    broadcast = apply_cap(
        _emails(datetime(2026, 11, 24, 15, tzinfo=UTC)),
        history,
        schedule,
        defer=False,
        excluded=excluded,
        deferred=deferred,
    )
    assert broadcast.loc[0, "status"] == "skipped" and excluded["frequency cap"] == 1
    step = apply_cap(
        _emails(datetime(2026, 11, 24, 15, tzinfo=UTC)),
        history,
        schedule,
        defer=True,
        excluded=excluded,
        deferred=deferred,
    )
    assert step.loc[0, "due_at"] == pd.Timestamp("2026-11-25 10:00", tz="UTC") and deferred["deferred by frequency cap"]
    weekly = pd.DataFrame(
        {
            "contact_id": [1, 1, 1],
            "at": pd.to_datetime([datetime(2026, 11, d, 10, tzinfo=UTC) for d in (18, 20, 22)], utc=True),
        }
    )
    capped = apply_cap(
        _emails(datetime(2026, 11, 24, 15, tzinfo=UTC)),
        weekly,
        schedule,
        defer=False,
        excluded=Counter(),
        deferred=Counter(),
    )
    assert capped.loc[0, "status"] == "skipped"  # a fourth email within 7 days
    free = apply_cap(
        _emails(datetime(2026, 11, 30, 15, tzinfo=UTC)),
        history,
        schedule,
        defer=False,
        excluded=Counter(),
        deferred=Counter(),
    )
    assert free.loc[0, "status"] == "queued"


def test_ab_arms_are_stable_and_follow_the_split(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    template: emails/broadcast",
        "    template: emails/broadcast\n    ab: {split: [20, 80], subjects: [one, two]}",
    )
    step = load_campaign(_write(tmp_path, text), VARIANTS).steps[0]
    arms = [arm_for("winter", step, c) for c in range(5000)]
    assert arms == [arm_for("winter", step, c) for c in range(5000)]
    share = arms.count("A") / len(arms)
    assert 0.17 < share < 0.23
