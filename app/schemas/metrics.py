"""Request and response models of the metric-run routes under /api (the shapes /docs shows)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MetricRunIn(BaseModel):
    """A start request; everything optional. The service checks values and refuses unknown
    fields with one message naming them (numbers may come as form strings)."""

    model_config = ConfigDict(extra="allow")

    metrics: list[str] | str | None = Field(
        None, description="fid, kid, pr, ppl, memorization, c2st (default: all six)"
    )
    num: float | str | None = Field(
        None, description="generated samples, a whole number (default: what fits the device)"
    )
    device: str | None = Field(None, description="auto | cpu | cuda (cuda only with a GPU)")
    seed: float | str | None = None
    trunc: float | str | None = None
    kid_subsets: float | str | None = None
    c2st_epochs: float | str | None = None
    ppl_num: float | str | None = None

    def raw(self) -> dict[str, Any]:
        """The fields the client sent, unknown ones included (for the service's checks)."""
        return {**self.model_dump(exclude_unset=True), **(self.model_extra or {})}


class MetricRunOut(BaseModel):
    """One run: state, options, progress, and the CLI's result once it has one."""

    id: int
    snapshot_id: int
    state: str
    cancelling: bool
    metrics: list[str]
    options: dict[str, Any]
    pid: int | None = Field(description="the metrics process (admins only)")
    progress: dict[str, Any] | None
    error: str | None
    exit_code: int | None
    created_by: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    cancel_requested_at: str | None
    run_dir: str | None = Field(description="the run's folder on the server (admins only)")
    estimate_s: float | None
    skipped: dict[str, str] = Field(default_factory=dict, description="metric → why not run")
    errors: dict[str, str] = Field(default_factory=dict, description="metric → why it failed")
    headline: dict[str, Any] | None
    result: dict[str, Any] | None


class SnapshotMetricsOut(BaseModel):
    snapshot_id: int
    runs: list[MetricRunOut]
    latest: dict[str, Any] | None


class MetricPlanOut(BaseModel):
    """What a run can do on this machine, before it starts."""

    device: str
    cuda_available: bool
    suggested_num: int
    estimate_s: float | None = Field(description="the suggested run, calibrated on history")
    calibrated_from: int
    metrics: dict[str, dict[str, Any]]
    error: str | None
