"""Send-time optimisation: which rule chose each email's moment.

- `deliveries.timing`: "own history", "audience's best hour", "campaign's time" or "holdout" for an email of
  an optimised send, "" otherwise. The report compares the optimised emails against the holdout by it.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("timing", sa.String(24), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("timing")
