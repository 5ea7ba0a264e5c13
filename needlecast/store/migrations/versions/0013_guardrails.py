"""Deliverability guardrails: why the guard paused a campaign, with its figures, and where its window starts.

- `campaign_state.guard_threshold`: the threshold that paused the campaign by itself (`hard_bounces`,
  `complaints` or `provider_errors`; '' when the guard has not paused it).
- `campaign_state.guard_figures`: the figures it paused on (JSON: the rate, the count, the window, the limit).
- `campaign_state.guard_floor`: the highest delivery id handed over when a person last resumed it; the
  rolling window counts only later emails, so the emails the pause was about do not pause it again.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_state") as batch:
        batch.add_column(sa.Column("guard_threshold", sa.String(32), nullable=False, server_default=""))
        batch.add_column(sa.Column("guard_figures", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column(
                "guard_floor", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False, server_default="0"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("campaign_state") as batch:
        batch.drop_column("guard_floor")
        batch.drop_column("guard_figures")
        batch.drop_column("guard_threshold")
