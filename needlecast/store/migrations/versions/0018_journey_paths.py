"""The path each journey entry took: `journey_positions.path`, the choices made on the way (a branch's, a
split's, a wait-until's: event or timeout), as `node>target;` tokens in order. The journey's page and its
report read it to count who passed through each node and the conversion per path (`store/journey_figures.py`).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journey_positions") as batch:
        batch.add_column(sa.Column("path", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("journey_positions") as batch:
        batch.drop_column("path")
