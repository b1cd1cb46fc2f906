"""Request and response models of /api/volumes... (the shapes /docs shows)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Progress(BaseModel):
    approved: int
    rejected: int
    unreviewed: int
    total: int


class ReaderAgreement(BaseModel):
    """Chance-corrected agreement of the reviewers' latest approve/reject decisions."""

    readers: list[str]
    method: str | None = Field(description="cohen (two readers) | fleiss (more) | null")
    kappa: float | None = Field(description="null when undefined or no common slice")
    observed: float | None = Field(description="share of common slices all readers agree on")
    slices: int = Field(description="slices decided by every reader: the kappa rests on these")
    why: str | None = None


class VolumeOut(BaseModel):
    # ingest may add provenance fields (DICOM series); they pass through
    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    shape: list[int] = Field(description="[x, y, z] after reorientation to RAS")
    spacing: list[float] = Field(description="mm, [x, y, z]")
    num_slices: int
    hu_min: float
    hu_max: float
    has_mask: bool
    is_demo: bool
    archived: bool
    orientation: str
    affine: list[list[float]]
    source_sha256: str
    liver_slices: int
    tumour_slices: int
    created_at: str
    progress: Progress | None = None
    reviewers: list[str] = Field(default_factory=list, description="assigned reviewers")
    agreement: ReaderAgreement | None = None


class SkippedFile(BaseModel):
    """A file or series a DICOM upload left out, and why."""

    model_config = ConfigDict(extra="allow")

    file: str
    reason: str
    existing_volume_id: int | None = Field(None, description="the same series, already here")


class DicomUploadOut(BaseModel):
    """POST /api/volumes with a DICOM zip: one volume per usable series."""

    volumes: list[VolumeOut]
    skipped: list[SkippedFile]
    non_dicom_skipped: int = Field(description="members that were not DICOM files")


class SliceOut(BaseModel):
    index: int
    liver_pixels: int
    tumour_pixels: int
    decision: str | None = Field(description="latest decision (any reviewer), or null")
    label: str | None
    reviewers: int = Field(0, description="reviewers with a decision on this slice")
    approvals: int = Field(0, description="of those, how many approve")


class ReviewIn(BaseModel):
    decision: str = Field(description="approved | rejected")
    label: str | None = Field(None, description="normal | tumour; default from the mask")
    note: str = ""
    expected: str | None = Field(
        None,
        description="approved | rejected | none: your own decision on the slice as your "
        "screen showed it; if another is stored by then: 409, nothing stored. Optional.",
    )


class ReviewOut(BaseModel):
    id: int
    volume_id: int
    slice_index: int
    decision: str
    label: str
    note: str
    user: str | None
    created_at: str
    progress: Progress | None = None
    created: bool = Field(True, description="false: the same decision was already yours")


class Agreement(BaseModel):
    reviewers: int
    approved: int
    rejected: int
    labels: dict[str, int]
    unanimous: bool
    votes: list[tuple[str, str, str]] = Field(description="(reviewer, decision, label)")


class ProbeOut(BaseModel):
    """The voxel under the cursor: display row/col, voxel [i, j, k], RAS mm, HU, mask label."""

    row: int
    col: int
    voxel: list[int]
    position_mm: list[float] = Field(description="RAS (x, y, z) in mm, from the affine")
    hu: int
    label: str | None = Field(description="background | liver | tumour; null without a mask")


class AssignIn(BaseModel):
    reviewers: list[str] = Field(description="usernames; replaces the current assignment")


class AssignOut(BaseModel):
    volume_id: int
    reviewers: list[str]


class Preset(BaseModel):
    name: str = Field(min_length=1, max_length=32)
    width: float = Field(gt=0, le=100_000)
    level: float = Field(ge=-10_000, le=10_000)


class ViewerSettingsIO(BaseModel):
    default_window: str | None = Field(None, description="a preset name (yours or built-in)")
    presets: list[Preset] = Field(default_factory=list, max_length=20)
