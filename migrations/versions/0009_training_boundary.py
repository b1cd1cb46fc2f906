"""training: exact snapshot positions (names that cannot collide below 1 kimg), retention

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000

snapshots.nimg: images shown at the snapshot (from its file name); the unique key becomes
(job_id, nimg), so two snapshots within one kimg are two rows. Retention settings live in
jobs.options (keep_snapshots, keep_best_fid), so jobs needs no column.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _snapshots(*extra: sa.schema.SchemaItem) -> sa.Table:
    """The snapshots table as 0002 created it, without its unnamed unique key."""
    return sa.Table(
        "snapshots",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("kimg", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("samples_path", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        *extra,
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_snapshots_job_id", "job_id"),
    )


@contextmanager
def _foreign_keys_off() -> Iterator[None]:
    """Recreating `snapshots` drops the old table: with foreign keys on, SQLite would run the
    ON DELETE actions of jobs, studies and metric runs (SET NULL, CASCADE) on every row. The
    pragma only works outside a transaction, so the pending one is committed first."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    raw = bind.connection.dbapi_connection
    raw.commit()
    raw.execute("PRAGMA foreign_keys=OFF")
    before = raw.execute("SELECT COUNT(*), COALESCE(SUM(id), 0) FROM snapshots").fetchone()
    try:
        yield
        raw.commit()
        after = raw.execute("SELECT COUNT(*), COALESCE(SUM(id), 0) FROM snapshots").fetchone()
        if after[1] != before[1] and after[0] == before[0]:
            raise RuntimeError("0009 changed snapshot ids; references would point elsewhere")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    with _foreign_keys_off():
        _upgrade()


def _recreate() -> str:
    """SQLite cannot drop an unnamed unique key: the table is copied without it. Elsewhere the
    key has a name and plain ALTERs do it (PostgreSQL would refuse to drop a referenced table)."""
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def _old_key_name() -> str | None:
    """The (job_id, kimg) unique key's name as the database reports it (None on SQLite)."""
    for uq in sa.inspect(op.get_bind()).get_unique_constraints("snapshots"):
        if uq["column_names"] == ["job_id", "kimg"]:
            return uq["name"]
    return None


def _upgrade() -> None:
    old_key = _old_key_name()
    with op.batch_alter_table("snapshots", copy_from=_snapshots(), recreate=_recreate()) as b:
        b.add_column(sa.Column("nimg", sa.Integer(), nullable=False, server_default="0"))
        if old_key:
            b.drop_constraint(old_key, type_="unique")
    op.execute("UPDATE snapshots SET nimg = kimg * 1000")
    with op.batch_alter_table("snapshots") as b:
        b.create_unique_constraint("uq_snapshots_job_nimg", ["job_id", "nimg"])


def downgrade() -> None:
    with _foreign_keys_off():
        _downgrade()


def _downgrade() -> None:
    nimg = sa.Column("nimg", sa.Integer(), nullable=False, server_default="0")
    table = _snapshots(nimg, sa.UniqueConstraint("job_id", "nimg", name="uq_snapshots_job_nimg"))
    # Two snapshots within one kimg cannot both stay under the old (job_id, kimg) key.
    op.execute(
        "DELETE FROM snapshots WHERE id NOT IN "
        "(SELECT MAX(id) FROM snapshots GROUP BY job_id, kimg)"
    )
    with op.batch_alter_table("snapshots", copy_from=table, recreate=_recreate()) as b:
        b.drop_constraint("uq_snapshots_job_nimg", type_="unique")
        b.drop_column("nimg")
        b.create_unique_constraint("uq_snapshots_job_kimg", ["job_id", "kimg"])
