"""A/B winner tests: the decision taken for a step, once.

- `ab_decisions`: per (campaign, step), the winning arm, the rule that applied (significant, or which
  fallback), the metric, the figures it was decided on (JSON text: per arm, delivered and successes; the p
  value) and when. Written once: a second decision for the same step is refused by the key, so a crash or a
  second scheduler around the decision time can never pick another winner.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from needlecast.store.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ab_decisions",
        sa.Column("campaign_id", sa.String(64), primary_key=True),
        sa.Column("step_id", sa.String(64), primary_key=True),
        sa.Column("winner", sa.String(8), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("figures", sa.Text, nullable=False),
        sa.Column("decided_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ab_decisions")
