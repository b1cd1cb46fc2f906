"""utility runs: downstream segmentation/classification experiments on a snapshot (issue 13)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("state IN ('queued', 'running')")


def upgrade() -> None:
    op.create_table(
        "utility_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("train_dataset_id", sa.Integer(), nullable=False),
        sa.Column("test_dataset_id", sa.Integer(), nullable=False),
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("request_key", sa.String(length=64), nullable=False),
        sa.Column("run_dir", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("cancel_requested_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["snapshot_id"], ["snapshots.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["train_dataset_id"], ["dataset_versions.id"]),
        sa.ForeignKeyConstraint(["test_dataset_id"], ["dataset_versions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("utility_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_utility_runs_snapshot_id"), ["snapshot_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_utility_runs_state"), ["state"], unique=False)
        batch_op.create_index(
            "ux_utility_runs_active_request",
            ["snapshot_id", "request_key"],
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table("utility_runs", schema=None) as batch_op:
        batch_op.drop_index("ux_utility_runs_active_request")
        batch_op.drop_index(batch_op.f("ix_utility_runs_state"))
        batch_op.drop_index(batch_op.f("ix_utility_runs_snapshot_id"))
    op.drop_table("utility_runs")
