"""Request and response models of /api/snapshots: a snapshot's facts and generation requests."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SnapshotOut(BaseModel):
    """One snapshot; `path` and `download_url` are admin-only (null for reviewers)."""

    id: int
    job_id: int
    kimg: float = Field(description="thousands of images shown (exact, not rounded)")
    name: str
    path: str | None = None
    size_bytes: int
    created_at: datetime | None
    samples_url: str | None
    download_url: str | None = None
    resolution: int | None = None
    job_state: str | None = None
    kept_because: list[str] = Field(
        default_factory=list, description="why retention keeps it: newest, best FID, in use"
    )


class GenerateIn(BaseModel):
    """Images from a snapshot, as a zip. An empty class on a conditional snapshot means the
    training data's label mix."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    seeds: str = Field("0-15", max_length=200, description="e.g. 0-15 or 1,5,7")
    trunc: float = Field(1.0, ge=-2.0, le=2.0, description="truncation ψ (1 = none)")
    class_idx: int | None = Field(None, alias="class", ge=0, le=1, description="0 normal, 1 tumour")
    format: Literal["png", "png16", "nifti"] = "png"


class PklImportOut(BaseModel):
    """A published checkpoint imported as a snapshot that jobs can fine-tune from."""

    snapshot: SnapshotOut
    resolution: int
    c_dim: int
