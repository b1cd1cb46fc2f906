"""evaluation: study blinding, metric runs per metric (issue 15)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # the class of each study image (0 normal, 1 tumour; None when unknown), for results by
    # class, and a study's per-class counts when it mixes classes of a conditional generator
    with op.batch_alter_table("study_images") as batch:
        batch.add_column(sa.Column("label", sa.Integer(), nullable=True))
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("class_mix", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("class_mix")
    with op.batch_alter_table("study_images") as batch:
        batch.drop_column("label")
