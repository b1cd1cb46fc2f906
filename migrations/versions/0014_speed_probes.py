"""speed probes: this machine's measured sec/kimg per network and device (issue 22 §4)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 04:30:00.000000

A job's duration estimate comes from a few real training steps of its network on this
machine (`trainer info speed`), measured once per network and device and kept here, instead
of a constant that was several times off on a new machine.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "speed_probes",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("device", sa.String(length=16), nullable=False),
        sa.Column("sec_per_kimg", sa.Float(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("measured_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("speed_probes")
