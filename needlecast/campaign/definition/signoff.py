"""What a claims sign-off covers, and whether it still does.

Contract: `covered_files(ctx, campaign)` are the digests of what a reviewer reviews for a campaign: the
articles its steps draw on (every article for a library-wide step) and the tag corrections of those that have
any (`content/tags.yaml`: a correction moves a section to another concern's emails), every template its steps
use (both parts) and the layouts they extend, and the campaign's own steps (their subjects, preheaders and A/B
subjects). `stale_files(ctx, campaign)` lists those that changed since the sign-off recorded them (empty for
a sign-off written by hand, without `covers`: it cannot tell).
A stale sign-off no longer lets a campaign with lint errors through the gate.
"""

from __future__ import annotations

import hashlib
import json

from needlecast.campaign.context import CampaignContext
from needlecast.campaign.definition.model import Campaign
from needlecast.content.library import overrides_of

STEPS = "campaign steps"  # the key under which the campaign's own texts are covered
TAGS_OF = "tag corrections of "  # + article id: the key under which an article's tag corrections are covered


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def covered_files(ctx: CampaignContext, campaign: Campaign) -> dict[str, str]:
    workspace = ctx.workspace
    paths = {ctx.library.paths[i] for i in ctx.article_ids_of(campaign) if i in ctx.library.paths}
    for step in campaign.steps:
        for suffix in (".html", ".txt"):
            paths.add(workspace.templates_dir / f"{step.template}{suffix}")
    paths.update(sorted((workspace.templates_dir / "layouts").glob("*.*")))
    covered = {}
    for path in sorted(paths):
        try:
            key = str(path.resolve().relative_to(workspace.root.resolve()))
        except ValueError:
            key = str(path)
        covered[key] = _digest(path.read_bytes()) if path.is_file() else "missing"
    overrides = overrides_of(workspace, ctx.library)
    for article_id in ctx.article_ids_of(campaign):
        if overrides.get(article_id):  # only corrected articles: a sign-off from before corrections stays valid
            tags = {slug: list(concerns) for slug, concerns in sorted(overrides[article_id].items())}
            covered[f"{TAGS_OF}{article_id}"] = _digest(json.dumps(tags, sort_keys=True).encode())
    texts = [[s.id, s.subject, s.preheader, [a.subject for a in s.arms]] for s in campaign.steps]
    covered[STEPS] = _digest(json.dumps(texts, sort_keys=True).encode())
    return covered


def stale_files(ctx: CampaignContext, campaign: Campaign) -> list[str]:
    if campaign.signoff is None or not campaign.signoff.covers:
        return []
    recorded = dict(campaign.signoff.covers)
    now = covered_files(ctx, campaign)
    return sorted(key for key in set(recorded) | set(now) if recorded.get(key) != now.get(key))
