"""independent reads: whether a review was made without sight of another reviewer's decision
on the slice (issue 22); "approved by >= k reviewers" counts only those

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 04:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reviews") as b:
        b.add_column(
            sa.Column("independent", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    # Before this revision every reviewer saw every decision: a review was independent only
    # when no other reviewer had decided the slice before it.
    reviews = sa.table(
        "reviews",
        sa.column("id", sa.Integer),
        sa.column("volume_id", sa.Integer),
        sa.column("slice_index", sa.Integer),
        sa.column("user_id", sa.Integer),
        sa.column("independent", sa.Boolean),
    )
    earlier = reviews.alias("earlier")
    seen = (
        sa.select(earlier.c.id)
        .where(
            earlier.c.volume_id == reviews.c.volume_id,
            earlier.c.slice_index == reviews.c.slice_index,
            earlier.c.user_id != reviews.c.user_id,
            earlier.c.id < reviews.c.id,
        )
        .exists()
    )
    op.execute(reviews.update().where(seen).values(independent=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("reviews") as b:
        b.drop_column("independent")
