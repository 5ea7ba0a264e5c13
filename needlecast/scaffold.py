"""`needlecast init DIR`: a fresh workspace with the sample content, templates and audience, and the sample
campaigns as drafts.

The sample files ship inside the wheel (`needlecast/_workspace/`, see pyproject.toml); an editable install
or a source checkout reads them from the repository, which is itself a workspace. The sample campaigns
carry the demo's sign-off; a new workspace gets them as examples only: marked `draft: true` (never
scheduled or sent) and without any sign-off, which only the user's own reviewer can give.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import fields
from pathlib import Path

from needlecast.config import CONFIG_FILE, ClinicSettings, TrackingSettings
from needlecast.errors import ConfigurationError

SAMPLE_FOLDERS = ("content", "templates", "audiences", "campaigns")


def sample_workspace_root() -> Path:
    """Where the sample workspace files are: inside the installed package, else the source checkout."""
    packaged = Path(__file__).parent / "_workspace"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "content").is_dir() and (checkout / "templates").is_dir():
        return checkout
    raise ConfigurationError("the sample workspace files are missing from this installation; reinstall needlecast")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_text() -> str:
    """needlecast.toml for a new workspace: every clinic value a placeholder that `needlecast lint` flags."""
    clinic = ClinicSettings()
    lines = [
        "# needlecast workspace settings. Fill in every 'CHANGE ME' value: `needlecast lint` flags them.",
        "# Secrets come from the environment only: SENDGRID_API_KEY, NEEDLECAST_SECRET, NEEDLECAST_DATABASE_URL.",
        "",
        "[clinic]",
    ]
    lines += [f"{f.name} = {_toml_value(getattr(clinic, f.name))}" for f in fields(clinic)]
    lines += [
        "",
        "[delivery]",
        'backend = "outbox"            # "outbox" writes what would be sent to outbox/; "sendgrid" sends',
        "",
        "[tracking]",
        f"public_base_url = {_toml_value(TrackingSettings().public_base_url)}",
        "",
    ]
    return "\n".join(lines)


_SIGNOFF_BLOCK = re.compile(r"^signoff:.*?(?=^\S|\Z)", re.MULTILINE | re.DOTALL)
_SIGNOFF_COMMENT = re.compile(
    r"^#[^\n]*(?:sign-?off|review|rewrites? those|lint`)[^\n]*\n", re.MULTILINE | re.IGNORECASE
)
_KIND_LINE = re.compile(r"^(kind:.*\n)", re.MULTILINE)
DRAFT_LINE = (
    "# An example: nothing is scheduled or sent while it is a draft. Make it yours, then delete this line.\n"
    "draft: true\n"
)


def as_example(text: str) -> str:
    """A sample campaign file made an example: `draft: true`, and no sign-off (nor the comments about it)."""
    text = _SIGNOFF_BLOCK.sub("", text)
    text = _SIGNOFF_COMMENT.sub("", text)
    return _KIND_LINE.sub(lambda m: m.group(1) + DRAFT_LINE, text, count=1).rstrip() + "\n"


def init_workspace(target: Path, *, force: bool = False) -> list[Path]:
    """Create a workspace in `target`; return the paths created. Refuses to overwrite one unless `force`."""
    target = target.expanduser()
    if (target / CONFIG_FILE).exists() and not force:
        raise ConfigurationError(f"{target} is already a workspace ({CONFIG_FILE} exists); use --force to overwrite")
    source = sample_workspace_root()
    target.mkdir(parents=True, exist_ok=True)
    created: list[Path] = []
    for folder in SAMPLE_FOLDERS:
        src = source / folder
        if src.is_dir():
            shutil.copytree(
                src, target / folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.rejects.csv")
            )
            created.append(target / folder)
    for campaign in sorted((target / "campaigns").glob("*.y*ml")):
        campaign.write_text(as_example(campaign.read_text(encoding="utf-8")), encoding="utf-8")
    (target / CONFIG_FILE).write_text(default_config_text(), encoding="utf-8")
    created.append(target / CONFIG_FILE)
    (target / ".gitignore").write_text(".needlecast/\noutbox/\npreviews/\n*.rejects.csv\n", encoding="utf-8")
    return created
