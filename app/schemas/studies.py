"""Request and response models of /api/studies... (the shapes /docs shows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class StudyIn(BaseModel):
    snapshot_id: int
    dataset_id: int = Field(description="the dataset version the snapshot was trained on")
    n_real: int = Field(ge=1)
    n_fake: int = Field(ge=1)
    readers: list[str | int] = Field(description="usernames or ids of reviewer accounts")
    truncation: float = Field(1.0, description="truncation psi, 1 = none")
    rate_usable: bool = False
    name: str = ""
    holdout_dataset_id: int | None = Field(
        None,
        description="where the real images come from; default: a version of other patients "
        "than the training data (patient-level split), else the training version",
    )
    label: int | None = Field(None, description="one class only: 0 normal, 1 tumour")
    mix_classes: bool | None = Field(
        None, description="conditional snapshots: both classes in the training data's ratio "
        "(the default)",
    )  # fmt: skip


class AnswerIn(BaseModel):
    trial: str
    rating: int = Field(ge=1, le=5, description="1 definitely real … 3 unsure … 5 synthetic")
    usable: bool | None = None
    comment: str = ""
    client_ms: int | None = None


class ReaderState(BaseModel):
    username: str
    answered: int
    total: int
    removed: bool
    active: bool
    reviewed_real_images: int = Field(
        description="real images of this study the reader reviewed during curation"
    )


class StudyOut(BaseModel):
    """The admin's view of a study: its design, never the per-image key."""

    id: int
    name: str
    state: str
    snapshot_id: int
    dataset_id: int
    real_dataset_id: int
    reals_held_out: bool
    resolution: int
    n_real: int
    n_fake: int
    truncation: float
    label: int | None
    class_mix: dict[str, dict[str, int]] | None
    rate_usable: bool
    prepared: int = 0  # images made so far while state is "preparing" (of n_real + n_fake)
    prepare_error: str | None = None  # why state is "failed", in words
    created_at: str
    readers: list[ReaderState]


class ReaderStudyOut(BaseModel):
    """A reader's view of a study they read: name, state and their own progress only."""

    id: int
    name: str
    state: str
    answered: int
    total: int
    finished: bool


class NextOut(BaseModel):
    trial: str
    image: str
    answered: int
    total: int


class AnswerOut(BaseModel):
    trial: str
    recorded: bool


class TrialOut(BaseModel):
    reader: str
    position: int
    image_id: int
    image: str | None
    truth: str
    label: str | None
    source: str
    held_out: bool
    rating: int
    category: str = Field(description="called real (1-2), unsure (3) or called synthetic (4-5)")
    called_synthetic: bool
    correct: bool
    usable: bool | None
    comment: str
    issued_at: str | None
    answered_at: str
    server_ms: int | None
    client_ms: int | None
    fast: bool = Field(description="answered faster than a plausible read")


class ResultsOut(BaseModel):
    """Statistics and trials; admins also get the study's design."""

    model_config = {"extra": "allow"}

    id: int
    name: str
    state: str
    statistics: dict[str, Any]
    verdict: str | None
    trials: list[TrialOut]
    metrics: dict[str, Any] | None
