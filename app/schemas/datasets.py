"""Request and response models of /api/datasets... (the shapes /docs shows)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.volumes import ReaderAgreement


class SplitIn(BaseModel):
    val: float = Field(0.0, description="fraction of patients for validation")
    test: float = Field(0.0, description="fraction of patients for test")
    seed: int = 0


class Composition(BaseModel):
    """Which approved slices go in: chosen volumes and filters (all optional)."""

    volume_ids: list[int] | None = Field(
        None, description="only these volumes; default: every unarchived volume"
    )
    label: str | None = Field(None, description="normal | tumour")
    reviewer: str | None = Field(None, description="only slices this reviewer approved")
    min_reviewers: int = Field(1, description="approved by at least k reviewers")


class FreezeIn(Composition):
    name: str
    resolution: int = 256
    window: str = "liver"
    bit_depth: int = 8
    masks: bool = Field(False, description="write each image's label map into the zip")
    split: SplitIn | None = Field(None, description="patient-level train / val / test split")


class DatasetSummary(BaseModel):
    id: int
    name: str
    resolution: int
    window: str
    window_width: float
    window_level: float
    bit_depth: int
    masks: bool
    split: str | None = Field(description="train | val | test when part of a split")
    split_group: str | None
    content_hash: str
    num_images: int
    num_tumour: int
    volume_ids: list[int]
    created_at: str
    created_by_id: int | None
    zip_url: str


class DatasetItemOut(BaseModel):
    position: int
    file: str
    volume_id: int
    slice_index: int
    label: str
    review_id: int


class DatasetDetail(DatasetSummary):
    composition: dict | None
    items: list[DatasetItemOut]
    agreement: ReaderAgreement | None = Field(
        None, description="reviewers' kappa on the source volumes' slices, as at the freeze"
    )


class SplitOut(BaseModel):
    versions: dict[str, DatasetDetail | None]


class VolumeCountOut(BaseModel):
    id: int
    name: str
    is_demo: bool
    approved: int
    tumour: int


class PreviewOut(BaseModel):
    total: int
    tumour: int
    volumes: list[VolumeCountOut]
