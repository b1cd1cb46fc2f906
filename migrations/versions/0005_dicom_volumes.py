"""DICOM series: de-identified provenance columns on volumes (issue 12)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COLUMNS = (
    # salted hashes (HMAC-SHA256) of PatientID, StudyInstanceUID, SeriesInstanceUID; NULL for NIfTI
    ("patient_key", sa.String(length=64)),
    ("study_key", sa.String(length=64)),
    ("series_key", sa.String(length=64)),
    # SHA-256 of the canonical int16 RAS cache + shape + affine: the same data, however packed
    ("content_sha256", sa.String(length=64)),
    ("source_format", sa.String(length=16)),  # "nifti" | "dicom" | "dicom-enhanced"
    ("series_description", sa.String(length=64)),  # scrubbed of identifiers, or NULL
    ("modality", sa.String(length=16)),
    ("kvp", sa.Float()),
    ("kernel", sa.String(length=64)),
    ("contrast_phase", sa.String(length=32)),
    ("dicom_origin", sa.JSON()),  # ImagePositionPatient (LPS mm) of the first slice
)
INDEXED = ("patient_key", "series_key", "content_sha256")


def upgrade() -> None:
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
        for name in INDEXED:
            batch_op.create_index(f"ix_volumes_{name}", [name], unique=False)
    op.execute("UPDATE volumes SET source_format = 'nifti'")


def downgrade() -> None:
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        for name in INDEXED:
            batch_op.drop_index(f"ix_volumes_{name}")
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
