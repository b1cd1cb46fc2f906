"""Request and response models of the utility-run API (issue 13).

The request's fields are checked in app/services/utility/runs.py (one place for the API and
the snapshot page's form); the model names them for /docs and refuses unknown ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class UtilityStart(BaseModel):
    """POST /api/snapshots/{id}/utility."""

    model_config = ConfigDict(extra="forbid")

    test_dataset_id: int = Field(description="a held-out version: no patient of the training one")
    task: Literal["segmentation", "classification"] = "segmentation"
    arms: str | list[str] | None = Field(None, examples=["real,real+aug,real+syn:1,syn"])
    fractions: str | list[float] | None = Field(None, examples=["0.25,0.5,1"])
    seeds: int | None = Field(None, ge=1, le=20)
    steps: int | None = Field(None, ge=1, le=100_000)
    res: int | None = None
    device: Literal["auto", "cpu", "cuda"] | None = None

    def raw(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class UtilityRunOut(BaseModel):
    id: int
    snapshot_id: int
    train_dataset_id: int
    test_dataset_id: int
    task: str
    state: str
    cancelling: bool
    options: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    verdict: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class UtilityArmResult(BaseModel):
    """One arm at one fraction of the real training data, over its seeds."""

    model_config = ConfigDict(extra="allow")

    arm: str = Field(examples=["real+syn:1"])
    fraction: float
    n_real: int | None = None
    n_synthetic: int | None = None
    seeds: int | list[int] | None = None
    mean: float | None = Field(None, description="the task's metric (Dice or ROC AUC)")
    ci95: list[float | None] | None = None
    diff_vs_real: dict[str, Any] | None = Field(None, description="mean, ci95, p")


class UtilityResultsOut(BaseModel):
    """GET /api/utility-runs/{id}/results.json: what `python -m trainer utility` printed."""

    model_config = ConfigDict(extra="allow")

    task: str
    metric: str
    results: list[UtilityArmResult]
