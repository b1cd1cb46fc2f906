"""reader studies: studies, blinded images, readers and trials (issue 6)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 15:55:37.613337
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("real_dataset_id", sa.Integer(), nullable=False),
        sa.Column("reals_held_out", sa.Boolean(), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("n_real", sa.Integer(), nullable=False),
        sa.Column("n_fake", sa.Integer(), nullable=False),
        sa.Column("truncation", sa.Double(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=True),
        sa.Column("rate_usable", sa.Boolean(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset_versions.id"],
        ),
        sa.ForeignKeyConstraint(
            ["real_dataset_id"],
            ["dataset_versions.id"],
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_studies_snapshot_id"), ["snapshot_id"], unique=False)

    op.create_table(
        "study_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("synthetic", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("held_out", sa.Boolean(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("study_images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_images_study_id"), ["study_id"], unique=False)

    op.create_table(
        "study_readers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("order_seed", sa.Integer(), nullable=False),
        sa.Column("removed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "user_id"),
    )
    with op.batch_alter_table("study_readers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_study_readers_user_id"), ["user_id"], unique=False)

    op.create_table(
        "study_trials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=True),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("usable", sa.Boolean(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("server_ms", sa.Integer(), nullable=True),
        sa.Column("client_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["study_images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reader_id"], ["study_readers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reader_id", "image_id"),
        sa.UniqueConstraint("reader_id", "position"),
        sa.UniqueConstraint("token"),
    )


def downgrade() -> None:
    op.drop_table("study_trials")
    with op.batch_alter_table("study_readers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_readers_user_id"))

    op.drop_table("study_readers")
    with op.batch_alter_table("study_images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_study_images_study_id"))

    op.drop_table("study_images")
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_snapshot_id"))

    op.drop_table("studies")
