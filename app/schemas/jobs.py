"""Request and response models of /api/jobs: the job form as a model, jobs as the API shows them.

Every number is bounded by what the trainer can run (`python -m trainer info defaults` reports
the same limits; a test keeps the two equal). Server paths (run dir, dataset zip, the trainer's
command line) are admin-only: a reviewer's JobOut has them as null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.schemas.snapshots import SnapshotOut

AUGPIPES = ("blit", "geom", "color", "filter", "noise", "cutout", "bg", "bgc", "bgcf", "bgcfn",
            "bgcfnc")  # fmt: skip
PRESETS = ("auto", "cpu")
PRECISIONS = ("fp32", "bf16")

# field -> (low, high, low is exclusive): the trainer's limits (trainer/info.py LIMITS)
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "resolution": (8, 4096, False),
    "kimg": (0, 1_000_000, True),
    "batch": (1, 4096, False),
    "gamma": (0, 10_000, False),
    "target": (0, 1, True),
    "snap": (1, 100_000, False),
    "seed": (0, 2**31 - 1, False),
    "tick": (0, 10_000, True),
    "cbase": (8, 65536, False),
    "cmax": (1, 2048, False),
    "zdim": (1, 2048, False),
    "gpus": (0, 64, False),
    "nodes": (1, 64, False),
    "time_limit_min": (1, 60 * 24 * 365, False),
    "metrics_every": (0, 100_000, False),
    "keep_snapshots": (1, 10_000, False),
}
_INTS = {"resolution", "batch", "snap", "seed", "cbase", "cmax", "zdim", "gpus", "metrics_every",
         "keep_snapshots", "dataset_id", "resume_from", "nodes", "time_limit_min"}  # fmt: skip


_BOOLS = ("cond", "mirror", "keep_best_fid", "confirm_long")
KIMG_REQUIRED = "say how long: the length in kimg (thousands of real images shown), e.g. 12"


def _b(name: str, **kw: Any) -> Any:
    lo, hi, open_lo = BOUNDS[name]
    top = {"lt": hi} if name == "target" else {"le": hi}
    return Field(default=None, **top, **({"gt": lo} if open_lo else {"ge": lo}), **kw)


class JobOptionsIn(BaseModel):
    """The "new training job" form (HTML strings or JSON values); empty means the default."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: int | None = None
    resolution: int | None = _b("resolution", description="must equal the dataset's")
    kimg: float | None = _b("kimg", description="required: length in thousands of real images "
                            "shown (an empty field is an error, not a default)")  # fmt: skip
    batch: int | None = _b("batch", description="default: the trainer's auto batch")
    gamma: float | None = _b("gamma", description="R1 weight; default 0.0002 · res² / batch")
    aug: Literal["ada", "noaug"] | None = None
    augpipe: Literal[AUGPIPES] | None = Field(None, description="augmentations (default bgc)")  # type: ignore[valid-type]
    target: float | None = _b("target", description="ADA target, 0 < t < 1")
    cond: bool = False
    mirror: bool = False
    snap: int | None = _b("snap", description="snapshot every N ticks (default: about every "
                            "2 minutes at the estimated speed)")  # fmt: skip
    seed: int | None = _b("seed")
    tick: float | None = _b("tick", description="kimg per tick (default: a tick within about "
                            "a minute at the estimated speed, at most 4)")  # fmt: skip
    cbase: int | None = _b("cbase", description="channel base")
    cmax: int | None = _b("cmax", description="channel maximum")
    zdim: int | None = _b("zdim", description="latent size")
    gpus: int | None = _b("gpus", description="0 = CPU; on a cluster: GPUs per node")
    nodes: int | None = _b("nodes", description="cluster only: nodes (one torchrun each)")
    time_limit_min: int | None = _b(
        "time_limit_min",
        description="cluster only: minutes per segment; the job is requeued until done",
    )
    resume_from: int | None = Field(None, description="snapshot to fine-tune from")
    metrics_every: int | None = _b("metrics_every", description="FID/KID every N snapshots")
    keep_snapshots: int | None = _b("keep_snapshots", description="newest N kept (+ best FID)")
    keep_best_fid: bool = True
    confirm_long: bool = Field(False, description="start even though the estimate exceeds a day")
    preset: Literal[PRESETS] | None = Field(None, description="cpu: small channels")  # type: ignore[valid-type]
    precision: Literal[PRECISIONS] | None = Field(  # type: ignore[valid-type]
        None,
        description="bf16: the 4 highest resolutions in bf16, as the reference's fp16; "
        "default bf16 on a GPU, fp32 on a CPU",
    )

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_default(cls, v: Any, info: Any) -> Any:
        """A form's empty field means "the default"; booleans are never numbers."""
        if isinstance(v, str) and v.strip() == "":
            return False if info.field_name in ("cond", "mirror", "confirm_long") else None
        if isinstance(v, bool) and info.field_name not in _BOOLS:
            raise ValueError("must be a number, not true/false")
        return v.strip() if isinstance(v, str) else v


def _message(name: str, err: dict) -> str:
    """One error in the form's words (the bounds, not Pydantic's phrasing)."""
    kind, value = err.get("type", ""), err.get("input")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("int_from_float", "int_parsing"):
        return f"{value!r} is not a whole number"
    if kind in ("float_parsing", "finite_number", "float_type", "int_type"):
        return (
            "must be a finite number" if kind == "finite_number" else f"{value!r} is not a number"
        )
    if kind == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        return f"must be one of {allowed}, not {value!r}"
    if kind.startswith("bool"):
        return f"must be true or false, not {value!r}"
    if name in BOUNDS and kind in (
        "greater_than",
        "greater_than_equal",
        "less_than_equal",
        "less_than",
    ):
        lo, hi, open_lo = BOUNDS[name]
        if name == "target":
            return "the ADA target must be between 0 and 1 (exclusive)"
        if open_lo:
            return f"must be > {lo:g} and at most {hi:g}"
        if name in _INTS:
            return f"must be between {lo:g} and {hi:g}"
        return f"must be ≥ {lo:g} and at most {hi:g}"
    return str(err.get("msg", "invalid"))


def parse_job_options(raw: dict[str, Any]) -> tuple[JobOptionsIn | None, dict[str, str]]:
    """The model, or every problem by field (unknown fields under "form")."""
    raw = {k: v for k, v in raw.items() if k != "csrf_token"}
    try:
        return JobOptionsIn.model_validate(raw), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        unknown = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err.get("loc") else "form"
            if err.get("type") == "extra_forbidden":
                unknown.append(name)
            elif name not in errors:
                errors[name] = _message(name, err)
        if unknown:
            errors["form"] = f"unknown field(s): {', '.join(sorted(unknown))}"
        return None, errors


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kimg: float | None = Field(None, gt=0, le=BOUNDS["kimg"][1], description="a new total")


class JobOut(BaseModel):
    """A job as the API shows it; run_dir, options.data, pid and the logs' command lines are
    admin-only (null for reviewers)."""

    id: int
    state: str
    dataset_id: int
    pid: int | None
    kimg: float
    total_kimg: float
    progress: float
    resolution: int
    run_dir: str | None
    device: str
    sec_per_kimg: float | None
    eta_s: float | None
    estimate_s: float | None = None
    disk_bytes: int | None = None
    exit_code: int | None
    error: str | None
    attempts: int
    resume_from: int | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested_at: datetime | None
    waiting_for: str | None = None
    step: dict[str, Any] | None = None
    # On a cluster: the scheduler's id, its state in words ("queued on the cluster: waiting for
    # resources"), and one entry per launch (a run cut by time limits has several).
    scheduler_id: str | None = None
    scheduler_state: str | None = None
    segments: list[dict[str, Any]] | None = None
    snapshots: list[SnapshotOut]
    options: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    log_tail: str | None = None
    worker_log_tail: str | None = None


class RetentionIn(BaseModel):
    """How many of a job's newest snapshots to keep, and whether the best by FID stays too."""

    model_config = ConfigDict(extra="forbid")

    keep_snapshots: int = Field(
        ge=BOUNDS["keep_snapshots"][0], le=BOUNDS["keep_snapshots"][1], description="newest N"
    )
    keep_best_fid: bool = True


class RetentionOut(BaseModel):
    deleted: int
    disk_bytes: int


class EstimateOut(BaseModel):
    """The up-front duration of the chosen settings on this machine (ok: false with the form's
    errors when the settings are not valid)."""

    ok: bool
    seconds: float | None = None
    sec_per_kimg: float | None = None
    first_progress_s: float | None = None
    device: str | None = None
    errors: dict[str, str] | None = None
    measured: bool = Field(False, description="sec_per_kimg measured here (`trainer info speed`)")
    over_a_day: bool = Field(False, description="starting it needs confirm_long")
    measure_error: str | None = None
    measure_s: float | None = Field(None, description="about how long measuring would take")
