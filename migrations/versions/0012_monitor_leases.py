"""monitor leases: which app instance runs the job monitor's passes (issue 20)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 04:40:00.000000

Two app instances on one database (a second web node, or a restart overlapping the old
process) must not both start or follow the same jobs: the one whose owner is on the row, with
expires_at in the future, holds the lease; it renews it each pass by compare-and-set.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monitor_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=160), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("monitor_leases")
