"""The read models the web faces and the command line share: one segment summary (the same figures and the same
order on every face, with or without the web app's frame cache)."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from needlecast.accounts.roles import cli_actor
from needlecast.actions.audience import import_audience
from needlecast.config import Workspace
from needlecast.readmodels.segments import FrameCache, segment_summaries
from needlecast.store.schema import contacts


def test_the_segment_summary_counts_each_member_once_and_sorts_variants_and_reasons_by_name(
    engine: Engine, workspace: Workspace
) -> None:
    import_audience(engine, workspace, cli_actor(), workspace.audiences_dir / "sample.csv")
    summary = segment_summaries(engine, workspace)
    with engine.connect() as conn:
        assert summary.contacts == conn.execute(select(func.count()).select_from(contacts)).scalar_one() > 0
    assert summary.segments and any(row.excluded for row in summary.segments)
    for row in summary.segments:
        assert sum(row.variants.values()) == row.members
        assert list(row.variants) == sorted(row.variants) and list(row.excluded) == sorted(row.excluded)
    assert segment_summaries(engine, workspace, FrameCache(engine)) == summary  # the web app's cached path
