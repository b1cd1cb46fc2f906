"""cluster executor: the scheduler's job id and state on every row that runs a trainer command,
and a training job's segments (issue 20)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08 04:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("jobs", "metric_runs", "utility_runs")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            # "slurm:12345" while a scheduler runs it; NULL for a local process (pid).
            batch_op.add_column(sa.Column("scheduler_id", sa.String(length=64), nullable=True))
            # What the scheduler says, in the user's words ("queued on the cluster: ...").
            batch_op.add_column(sa.Column("scheduler_state", sa.Text(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        # One entry per launch on a cluster: id, start, end, state, kimg reached.
        batch_op.add_column(sa.Column("segments", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("segments")
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("scheduler_state")
            batch_op.drop_column("scheduler_id")
