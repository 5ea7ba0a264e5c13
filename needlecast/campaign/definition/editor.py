"""Writing campaign files from the console: through the same loader that reads them.

Contract:
- `save_document(ctx, document, replacing)` dumps a campaign mapping to YAML, validates the text with
  `load_campaign` as `campaigns/ID.yaml` (templates and segments checked, another file's id refused) and
  only then writes it, atomically; the error names the file, the field and the fix like any campaign file's.
  `replacing` is the file being edited (its id may change: the old file is then removed).
- `record_signoff(ctx, campaign, reviewer, note, on)` writes `signoff: {reviewer, date, note, covers}` (the
  digests of what was reviewed: `campaign.signoff.covered_files`) into the campaign's file, replacing an
  earlier one and keeping the rest of the text (and its comments) as it was.
- `release_draft(ctx, campaign)` removes `draft: true` from the campaign's file (keeping the rest of its text
  and comments): what pressing Schedule (or Send now) in the console does to a draft, before scheduling it.
- `document_of(campaign)` is the campaign's file as a mapping, for the console's form.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from needlecast.atomicfile import write_text_atomically
from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.loader import load_campaign
from needlecast.campaign.definition.model import Campaign
from needlecast.campaign.definition.signoff import covered_files
from needlecast.errors import CampaignFileError
from needlecast.templating.context import variant_concerns
from needlecast.templating.environment import campaign_templates
from needlecast.yamlfile import parse_yaml

_SIGNOFF_BLOCK = re.compile(r"^signoff:.*?(?=^\S|\Z)", re.MULTILINE | re.DOTALL)
_DRAFT_LINE = re.compile(r"^draft:[^\n]*(?:\n|\Z)", re.MULTILINE)


def _validate(ctx: CampaignContext, path: Path, text: str, replacing: Path | None) -> Campaign:
    campaign = load_campaign(
        path,
        variant_concerns(ctx.vocabulary),
        templates=campaign_templates(ctx.workspace.templates_dir),
        segments=ctx.segments,
        articles=ctx.article_ids,
        source=text.encode("utf-8"),
    )
    other = ctx.campaigns.get(campaign.id)
    if other is not None and other.path.resolve() != (replacing or path).resolve():
        raise CampaignFileError(
            str(path), "id", f"'{campaign.id}' is already the id of {other.path.name}", "give the campaign its own id"
        )
    return campaign


def document_of(campaign: Campaign) -> dict[str, Any]:
    loaded = parse_yaml(campaign.path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def save_document(
    ctx: CampaignContext,
    document: dict[str, Any],
    replacing: Path | None = None,
    comment: str = "",
    check: Callable[[Campaign], None] | None = None,
) -> Campaign:
    """Validate and write a campaign (see the module contract), `comment` (YAML comment lines) on top;
    returns it as loaded. `check` may refuse the loaded campaign (raising) before anything is written."""
    campaign_id = str(document.get("id") or "")
    path = ctx.workspace.campaigns_dir / f"{campaign_id or 'new-campaign'}.yaml"
    text = comment + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110)
    campaign = _validate(ctx, path, text, replacing)
    if check is not None:
        check(campaign)
    write_text_atomically(path, text)
    if replacing is not None and replacing.resolve() != path.resolve():
        replacing.unlink(missing_ok=True)
    return campaign


def release_draft(ctx: CampaignContext, campaign: Campaign) -> Campaign:
    """The campaign's file without `draft: true` (see the module contract); returns it as loaded."""
    if not campaign.draft:
        return campaign
    text = _DRAFT_LINE.sub("", campaign.path.read_text(encoding="utf-8"))
    saved = _validate(ctx, campaign.path, text, campaign.path)
    write_text_atomically(campaign.path, text)
    return saved


def record_signoff(ctx: CampaignContext, campaign: Campaign, reviewer: str, note: str, on: date) -> Campaign:
    """Write the sign-off into the campaign's file (see the module contract)."""
    if not reviewer.strip() or not note.strip():
        raise CampaignFileError(str(campaign.path), "signoff.note", "is missing", "say what was reviewed and accepted")
    signoff = {
        "reviewer": reviewer.strip(),
        "date": on.isoformat(),
        "note": note.strip(),
        "covers": covered_files(ctx, campaign),
    }
    block = yaml.safe_dump(
        {"signoff": signoff},
        sort_keys=False,
        allow_unicode=True,
        width=110,
    )
    text = campaign.path.read_text(encoding="utf-8")
    if _SIGNOFF_BLOCK.search(text):
        text = _SIGNOFF_BLOCK.sub(lambda _m: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n" + block
    saved = _validate(ctx, campaign.path, text, campaign.path)
    write_text_atomically(campaign.path, text)
    return saved
