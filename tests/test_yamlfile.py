"""`parse_yaml` (libyaml's parser where PyYAML has it) reads every YAML file of the sample workspace exactly as
`yaml.safe_load` does, and bad YAML still raises PyYAML's own message, which quotes the line with a caret."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from needlecast.errors import ConfigurationError
from needlecast.yamlfile import parse_yaml, read_yaml

REPO = Path(__file__).resolve().parent.parent


def test_every_yaml_file_of_the_workspace_parses_as_safe_load_does() -> None:
    files = [
        *REPO.glob("content/*.yaml"),
        *REPO.glob("campaigns/*.yaml"),
        *REPO.glob("needlecast/_workspace/**/*.yaml"),
    ]
    assert files
    for path in files:
        assert parse_yaml(path.read_bytes()) == yaml.safe_load(path.read_bytes()), path
        assert parse_yaml(path.read_text(encoding="utf-8")) == yaml.safe_load(path.read_text(encoding="utf-8"))


def test_bad_yaml_raises_the_message_that_points_at_the_line(tmp_path: Path) -> None:
    with pytest.raises(yaml.YAMLError) as raised:
        parse_yaml("subject: [one, two\nbody: three\n")
    assert "expected ',' or ']'" in str(raised.value) and "    subject: [one, two" in str(raised.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: b: c\n")
    with pytest.raises(ConfigurationError, match=r"bad\.yaml: not valid YAML: mapping values are not allowed here"):
        read_yaml(bad, "a test file")
