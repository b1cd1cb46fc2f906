"""curation: archived/demo volumes, content hashes, splits, assignments, presets (issue 14)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_demo", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("archived_at", sa.DateTime(), nullable=True))
    # Volumes the demo command wrote before this revision live under uploads/demo/.
    # a boolean literal that each dialect renders itself (PostgreSQL refuses `= 1`)
    volumes = sa.table("volumes", sa.column("is_demo", sa.Boolean), sa.column("source_path"))
    op.execute(
        volumes.update()
        .where(volumes.c.source_path.like("%demo/phantom-%"))
        .values(is_demo=sa.true())
    )
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("masks", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("split", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("split_group", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("composition", sa.JSON(), nullable=True))
        batch_op.create_index("ix_dataset_versions_split_group", ["split_group"], unique=False)
    op.create_table(
        "volume_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("volume_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("assigned_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["volume_id"], ["volumes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["assigned_by_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("volume_id", "user_id"),
    )
    op.create_table(
        "viewer_settings",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("default_window", sa.String(length=32), nullable=True),
        sa.Column("presets", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("viewer_settings")
    op.drop_table("volume_assignments")
    with op.batch_alter_table("dataset_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_dataset_versions_split_group")
        batch_op.drop_column("composition")
        batch_op.drop_column("split_group")
        batch_op.drop_column("split")
        batch_op.drop_column("masks")
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.drop_column("archived_at")
        batch_op.drop_column("is_demo")
