"""Content actions: a person's corrections of the concern tags of an article's sections.

See `needlecast.actions` for the contract every action keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

from needlecast.accounts import audit
from needlecast.accounts.roles import Actor, require
from needlecast.campaign.context import CampaignContext
from needlecast.config import Workspace
from needlecast.content.library import write_override
from needlecast.errors import InvalidRequest

if TYPE_CHECKING:
    pass


def correct_section_tags(
    engine: Engine, workspace: Workspace, actor: Actor, article_id: str, slug: str, concerns: tuple[str, ...] | None
) -> None:
    """Set a section's concerns by hand (None: back to the tagger's), written into `content/tags.yaml` and
    audited. The article, the section and every concern must exist (`NotFound`, `InvalidRequest` otherwise)."""
    require(actor, "content.tag")
    ctx = CampaignContext.load(workspace)
    article = ctx.library.article(article_id)
    article.section(slug)  # NotFound naming the sections there are
    known = {*ctx.vocabulary.names, "general"}
    if concerns is not None and (not concerns or any(c not in known for c in concerns)):
        raise InvalidRequest(f"concerns must be one or more of {', '.join(sorted(known))}")
    path = workspace.path(workspace.settings.content.overrides)
    write_override(path, ctx.library.default_id, article_id, slug, concerns)
    with engine.begin() as conn:
        audit.record(
            conn, actor, "content.tagged", f"section:{article_id}/{slug}", concerns=",".join(concerns or ("auto",))
        )
