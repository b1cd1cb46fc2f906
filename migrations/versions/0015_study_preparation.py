"""study preparation: a study's images are made in the background (issue 22 §5)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 05:35:00.000000

Creating a study returns at once in state "preparing"; the monitor's thread generates its
images and counts them in `prepared`; a failure leaves state "failed" and the reason in
`prepare_error`, so the page can say it and the admin can retry or delete.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("prepared", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("prepare_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("prepare_error")
        batch.drop_column("prepared")
